//! The NameServer's route table: which brokers are alive, which topics they serve, and the route
//! a client gets for a topic (RocketMQ `RouteInfoManager`).
//!
//! Inputs: broker registrations and unregistrations, closed connections, the passing of time.
//! Outputs: routes and cluster views on request, and actions for the shell: close the connection
//! of a broker that went silent, and report each broker that left. No I/O; `now` is passed in.
//!
//! A broker stays in the table while it re-registers within its heartbeat timeout (120 s unless
//! it asks for another); one that falls silent, or whose connection closes, leaves every route.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::model::{
    perm, BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfig, TopicConfigWrapper,
    TopicList, TopicRouteData, MASTER_ID,
};
use crate::Millis;

/// How long a broker may stay silent before it leaves the table, unless it asks for another
/// timeout when it registers (RocketMQ `BROKER_CHANNEL_EXPIRED_TIME`).
pub const BROKER_TIMEOUT_DEFAULT_MS: Millis = 120_000;

/// How often the table looks for silent brokers (RocketMQ `scanNotActiveBrokerInterval`).
pub const SCAN_INTERVAL_DEFAULT_MS: Millis = 5_000;

/// Identifies a connection in the shell that owns the sockets.
pub type ConnId = u64;

/// Settings of the route table.
#[derive(Debug, Clone)]
pub struct RouteTableConfig {
    /// Silence after which a broker that did not ask for its own timeout leaves the table.
    pub broker_timeout_ms: Millis,
    /// Period of the scan for silent brokers.
    pub scan_interval_ms: Millis,
    /// A registration replaces the broker's topic set: topics it no longer lists lose its
    /// queues (RocketMQ `deleteTopicWithBrokerRegistration`, off by default).
    pub delete_topic_with_broker_registration: bool,
    /// Show the lowest-id slave of a group without a master as its read-only acting master
    /// (RocketMQ `supportActingMaster`, off by default).
    pub support_acting_master: bool,
}

impl Default for RouteTableConfig {
    fn default() -> Self {
        RouteTableConfig {
            broker_timeout_ms: BROKER_TIMEOUT_DEFAULT_MS,
            scan_interval_ms: SCAN_INTERVAL_DEFAULT_MS,
            delete_topic_with_broker_registration: false,
            support_acting_master: false,
        }
    }
}

/// A REGISTER_BROKER request, decoded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub cluster_name: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    pub zone_name: Option<String>,
    /// The broker's own silence limit; `None` takes the table's default.
    pub heartbeat_timeout_ms: Option<Millis>,
    /// `None` from brokers older than RocketMQ 5, which know nothing of acting masters.
    pub enable_acting_master: Option<bool>,
    /// The broker's topics; `None` for a heartbeat that carries none.
    pub topics: Option<TopicConfigWrapper>,
    pub filter_server_list: Vec<String>,
}

/// What a registering broker is told (`RegisterBrokerResult`): where its master and the
/// master's HA port are, when it is a slave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

/// A registration the table refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// A broker's first registration carried exactly one topic, which RocketMQ reserves for
    /// single-topic updates of an already registered broker.
    SingleTopicBeforeFirstRegistration,
}

/// Why a broker left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// Silent for longer than its heartbeat timeout.
    Expired,
    /// Its connection to the NameServer closed.
    ConnectionClosed,
    /// It unregistered itself.
    Unregistered,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Close this connection: the broker behind it expired.
    CloseConnection(ConnId),
    /// A broker left every route.
    BrokerRemoved {
        cluster: String,
        broker_name: String,
        broker_addr: String,
        reason: RemovalReason,
    },
}

/// Liveness of one broker address, keyed by (cluster, address) as RocketMQ does.
#[derive(Debug, Clone)]
struct BrokerLive {
    last_update: Millis,
    timeout_ms: Millis,
    data_version: DataVersion,
    conn: ConnId,
    ha_server_addr: String,
}

/// The route table. See the module documentation.
#[derive(Debug)]
pub struct RouteTable {
    config: RouteTableConfig,
    /// topic → broker name → queues.
    topic_queues: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker name → addresses by id.
    brokers: BTreeMap<String, BrokerData>,
    /// cluster → broker names.
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// (cluster, broker address) → liveness.
    live: BTreeMap<(String, String), BrokerLive>,
    /// broker address → filter servers.
    filter_servers: BTreeMap<String, Vec<String>>,
    next_scan: Option<Millis>,
    actions: VecDeque<RouteAction>,
}

impl RouteTable {
    pub fn new(config: RouteTableConfig) -> Self {
        RouteTable {
            config,
            topic_queues: BTreeMap::new(),
            brokers: BTreeMap::new(),
            clusters: BTreeMap::new(),
            live: BTreeMap::new(),
            filter_servers: BTreeMap::new(),
            next_scan: None,
            actions: VecDeque::new(),
        }
    }

    /// Records a broker's registration, received on connection `conn` at `now`.
    ///
    /// Topic configs are read only from a master (or a RocketMQ 5 group's lowest-id slave while
    /// it may act as master), and only when this is the broker's first registration, its data
    /// version changed, or the topic does not yet list it.
    pub fn register(
        &mut self,
        now: Millis,
        conn: ConnId,
        reg: Registration,
    ) -> Result<RegisterOutcome, RegisterError> {
        debug_assert!(!reg.broker_addr.is_empty() && !reg.broker_name.is_empty());
        let key = (reg.cluster_name.clone(), reg.broker_addr.clone());
        let incoming_version = reg.topics.as_ref().map(|w| w.data_version.clone());
        let existing = self.brokers.get(&reg.broker_name);
        if let Some(other) = existing.and_then(|b| b.broker_addrs.get(&reg.broker_id)) {
            // Another address holds this id with newer state: this registration is stale.
            let other_state = self
                .live
                .get(&(reg.cluster_name.clone(), other.clone()))
                .map(|l| l.data_version.state_version);
            let incoming_state = incoming_version.as_ref().map_or(0, |v| v.state_version);
            if *other != reg.broker_addr && other_state.is_some_and(|s| s > incoming_state) {
                self.live.remove(&key);
                return Ok(RegisterOutcome::default());
            }
        }
        let id_known = existing.is_some_and(|b| b.broker_addrs.contains_key(&reg.broker_id));
        let topic_count = reg.topics.as_ref().map_or(0, |w| w.topic_config_table.len());
        if !id_known && topic_count == 1 {
            // A single-topic registration cannot introduce a broker (RocketMQ refuses it too).
            return Err(RegisterError::SingleTopicBeforeFirstRegistration);
        }

        self.clusters.entry(reg.cluster_name.clone()).or_default().insert(reg.broker_name.clone());
        let mut first_registration = existing.is_none();
        let broker = self.brokers.entry(reg.broker_name.clone()).or_insert_with(|| BrokerData {
            broker_name: reg.broker_name.clone(),
            cluster: reg.cluster_name.clone(),
            ..BrokerData::default()
        });
        broker.enable_acting_master = reg.enable_acting_master == Some(true);
        broker.zone_name.clone_from(&reg.zone_name);
        // A broker that changed role keeps its address under a new id: drop the old id.
        broker.broker_addrs.retain(|id, addr| *addr != reg.broker_addr || *id == reg.broker_id);
        let previous = broker.broker_addrs.insert(reg.broker_id, reg.broker_addr.clone());
        first_registration |= previous.is_none_or(|p| p.is_empty());
        let is_master = reg.broker_id == MASTER_ID;
        let is_prime_slave = !is_master
            && reg.enable_acting_master.is_some()
            && broker.broker_addrs.keys().next().copied() == Some(reg.broker_id);

        if let Some(wrapper) = &reg.topics {
            if is_master || is_prime_slave {
                let version_changed =
                    self.live.get(&key).is_none_or(|l| l.data_version != wrapper.data_version);
                let acting = is_prime_slave && reg.enable_acting_master == Some(true);
                self.apply_topics(
                    &reg.broker_name,
                    wrapper,
                    first_registration || version_changed,
                    acting,
                );
            }
        }
        self.live.insert(
            key,
            BrokerLive {
                last_update: now,
                timeout_ms: reg.heartbeat_timeout_ms.unwrap_or(self.config.broker_timeout_ms),
                data_version: incoming_version.unwrap_or_default(),
                conn,
                ha_server_addr: reg.ha_server_addr,
            },
        );
        if reg.filter_server_list.is_empty() {
            self.filter_servers.remove(&reg.broker_addr);
        } else {
            self.filter_servers.insert(reg.broker_addr.clone(), reg.filter_server_list);
        }
        self.arm_scan(now);
        Ok(self.outcome_for(&reg.cluster_name, &reg.broker_name, is_master))
    }

    fn outcome_for(&self, cluster: &str, broker_name: &str, is_master: bool) -> RegisterOutcome {
        if is_master {
            return RegisterOutcome::default();
        }
        let master_addr =
            self.brokers.get(broker_name).and_then(|b| b.broker_addrs.get(&MASTER_ID));
        match master_addr {
            Some(addr) => RegisterOutcome {
                master_addr: Some(addr.clone()),
                ha_server_addr: self
                    .live
                    .get(&(cluster.to_owned(), addr.clone()))
                    .map(|l| l.ha_server_addr.clone()),
            },
            None => RegisterOutcome::default(),
        }
    }

    /// Records this broker's queues of each topic in `wrapper`. With `changed` false only topics
    /// that do not list the broker yet are touched.
    fn apply_topics(
        &mut self,
        broker_name: &str,
        wrapper: &TopicConfigWrapper,
        changed: bool,
        acting: bool,
    ) {
        if self.config.delete_topic_with_broker_registration {
            self.topic_queues.retain(|name, queues| {
                if !wrapper.topic_config_table.contains_key(name) {
                    queues.remove(broker_name);
                }
                !queues.is_empty()
            });
        }
        for (name, topic) in &wrapper.topic_config_table {
            let name = if topic.topic_name.is_empty() { name } else { &topic.topic_name };
            let queues = self.topic_queues.entry(name.clone()).or_default();
            if changed || !queues.contains_key(broker_name) {
                queues.insert(broker_name.to_owned(), queue_data(broker_name, topic, acting));
            }
        }
    }

    /// A broker asked to leave (UNREGISTER_BROKER).
    pub fn unregister(&mut self, cluster: &str, broker_addr: &str, broker_name: &str, id: i64) {
        let known = self
            .brokers
            .get(broker_name)
            .is_some_and(|b| b.broker_addrs.get(&id).is_some_and(|a| a == broker_addr));
        if known {
            self.remove_broker(cluster, broker_addr, RemovalReason::Unregistered);
        }
    }

    /// A connection closed: the broker that last registered on it leaves the table.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let gone: Vec<(String, String)> =
            self.live.iter().filter(|(_, l)| l.conn == conn).map(|(k, _)| k.clone()).collect();
        for (cluster, addr) in gone {
            self.remove_broker(&cluster, &addr, RemovalReason::ConnectionClosed);
        }
    }

    /// Time passed: brokers silent for longer than their timeout leave the table.
    pub fn tick(&mut self, now: Millis) {
        if self.next_scan.is_some_and(|at| now < at) {
            return;
        }
        let expired: Vec<((String, String), ConnId)> = self
            .live
            .iter()
            .filter(|(_, l)| l.last_update.saturating_add(l.timeout_ms) < now)
            .map(|(k, l)| (k.clone(), l.conn))
            .collect();
        for ((cluster, addr), conn) in expired {
            self.actions.push_back(RouteAction::CloseConnection(conn));
            self.remove_broker(&cluster, &addr, RemovalReason::Expired);
        }
        self.next_scan = None;
        self.arm_scan(now);
    }

    fn arm_scan(&mut self, now: Millis) {
        if self.next_scan.is_none() && !self.live.is_empty() {
            self.next_scan = Some(now + self.config.scan_interval_ms);
        }
    }

    /// The next action for the shell, if any.
    pub fn poll_action(&mut self) -> Option<RouteAction> {
        self.actions.pop_front()
    }

    /// When `tick` next has work to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_scan
    }

    fn remove_broker(&mut self, cluster: &str, addr: &str, reason: RemovalReason) {
        self.live.remove(&(cluster.to_owned(), addr.to_owned()));
        self.filter_servers.remove(addr);
        let mut emptied = None;
        let mut removed_name = None;
        for (name, broker) in &mut self.brokers {
            if broker.cluster != cluster {
                continue;
            }
            let before = broker.broker_addrs.len();
            broker.broker_addrs.retain(|_, a| a != addr);
            if broker.broker_addrs.len() != before {
                removed_name = Some(name.clone());
                if broker.broker_addrs.is_empty() {
                    emptied = Some(name.clone());
                }
                break;
            }
        }
        let Some(broker_name) = removed_name else { return };
        if let Some(broker) = self.brokers.get(&broker_name) {
            if broker.enable_acting_master && !broker.broker_addrs.contains_key(&MASTER_ID) {
                // The master left a group that may fail over: nobody may write until one is back.
                for queues in self.topic_queues.values_mut() {
                    if let Some(queue) = queues.get_mut(&broker_name) {
                        queue.perm &= !perm::WRITE;
                    }
                }
            }
        }
        if let Some(name) = emptied {
            self.brokers.remove(&name);
            if let Some(names) = self.clusters.get_mut(cluster) {
                names.remove(&name);
                if names.is_empty() {
                    self.clusters.remove(cluster);
                }
            }
            self.topic_queues.retain(|_, queues| {
                queues.remove(&name);
                !queues.is_empty()
            });
        }
        self.actions.push_back(RouteAction::BrokerRemoved {
            cluster: cluster.to_owned(),
            broker_name,
            broker_addr: addr.to_owned(),
            reason,
        });
    }

    /// The route of `topic`, or `None` when no live broker serves it.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queues.get(topic)?;
        let mut route = TopicRouteData::default();
        for (broker_name, queue) in queues {
            let Some(broker) = self.brokers.get(broker_name) else { continue };
            for addr in broker.broker_addrs.values() {
                if let Some(servers) = self.filter_servers.get(addr) {
                    route.filter_server_table.insert(addr.clone(), servers.clone());
                }
            }
            route.broker_datas.push(broker.clone());
            route.queue_datas.push(queue.clone());
        }
        if route.broker_datas.is_empty() {
            return None;
        }
        if self.config.support_acting_master {
            acting_master_view(&mut route);
        }
        Some(route)
    }

    /// Every cluster and broker (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table: self
                .clusters
                .iter()
                .map(|(c, names)| (c.clone(), names.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Every topic with at least one live broker.
    pub fn topics(&self) -> Vec<String> {
        self.topic_queues.keys().cloned().collect()
    }

    /// The NameServer's "system topics" (GET_SYSTEM_TOPIC_LIST_FROM_NS), as RocketMQ names
    /// them: every cluster's name and its brokers' names, with the address of one broker (the
    /// first by name, its lowest id) for the client to ask for the broker's own.
    pub fn system_topics(&self) -> TopicList {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for (cluster, brokers) in &self.clusters {
            names.insert(cluster.clone());
            names.extend(brokers.iter().cloned());
        }
        let broker_addr =
            self.brokers.values().find_map(|b| b.broker_addrs.values().next().cloned());
        TopicList { broker_addr, topic_list: names.into_iter().collect() }
    }

    /// Topics served by brokers of `cluster` (GET_TOPICS_BY_CLUSTER).
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<String> {
        let Some(names) = self.clusters.get(cluster) else { return Vec::new() };
        self.topic_queues
            .iter()
            .filter(|(_, queues)| queues.keys().any(|b| names.contains(b)))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Removes a topic from every broker, or only from the brokers of `cluster`.
    /// Returns whether anything was removed.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) -> bool {
        let Some(queues) = self.topic_queues.get_mut(topic) else { return false };
        let before = queues.len();
        match cluster.and_then(|c| self.clusters.get(c)) {
            Some(names) => queues.retain(|b, _| !names.contains(b)),
            None if cluster.is_some() => {}
            None => queues.clear(),
        }
        let removed = queues.len() != before;
        if queues.is_empty() {
            self.topic_queues.remove(topic);
        }
        removed
    }

    /// Takes the write permission from every topic of `broker_name` (WIPE_WRITE_PERM_OF_BROKER),
    /// or gives it back with read (ADD_WRITE_PERM_OF_BROKER). Returns how many topics changed.
    pub fn set_write_perm(&mut self, broker_name: &str, writeable: bool) -> usize {
        let mut count = 0;
        for queues in self.topic_queues.values_mut() {
            if let Some(queue) = queues.get_mut(broker_name) {
                queue.perm =
                    if writeable { perm::READ | perm::WRITE } else { queue.perm & !perm::WRITE };
                count += 1;
            }
        }
        count
    }

    /// The data version a broker last registered with, if it is alive.
    pub fn data_version(&self, cluster: &str, broker_addr: &str) -> Option<&DataVersion> {
        self.live.get(&(cluster.to_owned(), broker_addr.to_owned())).map(|l| &l.data_version)
    }

    /// Refreshes a live broker's heartbeat without re-reading its topics (QUERY_DATA_VERSION and
    /// BROKER_HEARTBEAT do this). Returns false for an unknown broker.
    pub fn touch(&mut self, now: Millis, cluster: &str, broker_addr: &str) -> bool {
        match self.live.get_mut(&(cluster.to_owned(), broker_addr.to_owned())) {
            Some(live) => {
                live.last_update = now;
                true
            }
            None => false,
        }
    }

    /// Checks the table's own consistency. Panics on a broken invariant.
    pub fn check_invariants(&self) {
        for (name, broker) in &self.brokers {
            assert_eq!(&broker.broker_name, name, "broker keyed under another name");
            assert!(!broker.broker_addrs.is_empty(), "broker {name} kept with no address");
            assert!(
                self.clusters.get(&broker.cluster).is_some_and(|n| n.contains(name)),
                "broker {name} missing from its cluster {}",
                broker.cluster
            );
            for addr in broker.broker_addrs.values() {
                assert!(
                    self.live.contains_key(&(broker.cluster.clone(), addr.clone())),
                    "address {addr} of {name} is routed but not alive"
                );
            }
        }
        for (cluster, names) in &self.clusters {
            assert!(!names.is_empty(), "cluster {cluster} kept with no broker");
        }
        for (topic, queues) in &self.topic_queues {
            assert!(!queues.is_empty(), "topic {topic} kept with no queue");
        }
        if !self.live.is_empty() {
            assert!(self.next_scan.is_some(), "live brokers but no expiry scan armed");
        }
    }
}

fn queue_data(broker_name: &str, topic: &TopicConfig, acting_slave: bool) -> QueueData {
    let mut perm = topic.perm;
    if acting_slave {
        perm &= !perm::WRITE;
    }
    QueueData {
        broker_name: broker_name.to_owned(),
        perm,
        read_queue_nums: topic.read_queue_nums,
        topic_sys_flag: topic.topic_sys_flag,
        write_queue_nums: topic.write_queue_nums,
    }
}

/// When a group that allows an acting master has lost its master and its queues are read-only,
/// clients are shown the slave with the lowest id in the master's place, as RocketMQ 5 does.
fn acting_master_view(route: &mut TopicRouteData) {
    for broker in &mut route.broker_datas {
        if !broker.enable_acting_master || broker.broker_addrs.contains_key(&MASTER_ID) {
            continue;
        }
        let read_only = route
            .queue_datas
            .iter()
            .any(|q| q.broker_name == broker.broker_name && !perm::is_writeable(q.perm));
        if !read_only {
            continue;
        }
        if let Some((_, addr)) = broker.broker_addrs.pop_first() {
            broker.broker_addrs.insert(MASTER_ID, addr);
        }
    }
}
