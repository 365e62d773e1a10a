//! The broker service: binds the store and the broker's cores (topics, subscription groups,
//! consumer offsets, clients, the send planner, the delay service) to a socket, a clock and
//! the store's disk.
//!
//! One file per request code, each with the same shape: a doc comment with the semantics,
//! then `handle`, with one signature ([`Handle`]) and one way to refuse (a [`Refusal`], which
//! becomes RocketMQ's code and remark). Requests are answered on the connection's reader task;
//! a send that waits for the group commit and a pull that is held for new messages answer
//! later, from their own task.

mod ack_message;
mod call_consumer;
mod check_client_config;
mod clone_group_offset;
pub mod config;
mod consume_message_directly;
mod consumer_send_msg_back;
mod controller;
mod delete_expired_commitlog;
mod delete_subscriptiongroup;
mod delete_topic_in_broker;
mod end_transaction;
mod get_all_consumer_offset;
mod get_all_delay_offset;
mod get_all_subscriptiongroup_config;
mod get_all_topic_config;
mod get_broker_config;
mod get_broker_epoch_cache;
mod get_broker_runtime_info;
mod get_consume_stats;
mod get_consumer_connection_list;
mod get_consumer_list_by_group;
mod get_consumer_running_info;
mod get_earliest_msg_storetime;
mod get_max_offset;
mod get_min_offset;
mod get_producer_connection_list;
mod get_system_topic_list_from_broker;
mod get_timer_check_point;
mod get_timer_metrics;
mod get_topic_config;
mod get_topic_stats_info;
mod ha;
mod ha_slave;
mod heart_beat;
mod invoke_broker_to_reset_offset;
mod lock_batch_mq;
mod metrics;
mod notify_broker_role_changed;
mod notify_consumer_ids_changed;
mod persist;
mod pop;
mod pop_info;
mod pop_order;
mod pull_message;
mod query_consume_queue;
mod query_consumer_offset;
mod query_message;
mod query_topic_consume_by_who;
mod register;
mod revive;
mod schedule;
mod search_offset_by_timestamp;
mod send_message;
mod send_reply_message;
mod slave_sync;
mod stats;
mod timer;
mod transaction_check;
mod transactions;
mod unregister_client;
mod update_and_create_subscriptiongroup;
mod update_and_create_topic;
mod update_broker_config;
mod update_consumer_offset;
mod view_broker_stats_data;
mod view_message_by_id;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use petrel_core::broker::clients::{ClientAction, ClientRegistry};
use petrel_core::broker::consumer_filters::ConsumerFilters;
use petrel_core::broker::offsets::ConsumerOffsets;
use petrel_core::broker::replica_read::ReadPolicy;
use petrel_core::broker::replicas::{Replicas, ReplicasAction, Role};
use petrel_core::broker::schedule::DelayOffsets;
use petrel_core::broker::send_plan::{BrokerView, SendConfig, SendPlan};
use petrel_core::broker::subscriptions::SubscriptionGroups;
use petrel_core::broker::timer::TIMER_TOPIC;
use petrel_core::broker::topics::{topic_config, TopicTable};
use petrel_core::broker::transaction;
use petrel_core::broker::{Refusal, AUTO_CREATE_TOPIC, SCHEDULE_TOPIC};
use petrel_core::model::{perm, TopicConfig};
use petrel_net::codec::codes::{request, request_name, response};
use petrel_net::codec::header::{CommandHeader, HeaderError};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::OffsetResponseHeader;
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{
    not_supported, ClientConfig, Connection, Handled, RemotingClient, RequestHandler, Server,
    ServerHandle,
};
use petrel_storage::disk::Disk;
use petrel_storage::{Store, StoreService};
use tokio::sync::Notify;

pub use self::config::BrokerConfig;
use self::config::BrokerRole;
use crate::clock::now_millis;

/// What every request handler returns: the answer (now, or later from its own task), or a
/// refusal.
type Outcome = Result<Handled, Refusal>;

/// Every request handler's signature.
type Handle = fn(&Arc<Broker>, &Connection, &RemotingCommand) -> Outcome;

/// The request's header, or the refusal of a request whose header lacks a required field or
/// has one that does not parse (SYSTEM_ERROR naming the field, as RocketMQ answers).
fn decode<H: CommandHeader>(request: &RemotingCommand) -> Result<H, Refusal> {
    request.header().map_err(|error: HeaderError| {
        let name = request_name(request.code);
        let why = format!("{name} ({}) request rejected: {error}", request.code);
        Refusal::new(response::SYSTEM_ERROR, why)
    })
}

/// A record the broker writes itself (an op message, a POP checkpoint or ack): born and
/// stored here, now.
fn broker_record<'a>(
    broker: &Broker,
    (topic, queue_id): (&'a str, i32),
    body: &'a [u8],
    properties: &'a [u8],
    now: i64,
) -> petrel_core::record::RecordInput<'a> {
    let host = broker.config.store.store_host;
    petrel_core::record::RecordInput {
        topic,
        queue_id,
        flag: 0,
        sys_flag: 0,
        born_timestamp: now,
        born_host: host,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties,
    }
}

/// `reply`, answered now.
fn answered(reply: RemotingCommand) -> Outcome {
    Ok(Handled::Now(reply))
}

/// A SUCCESS response with nothing in it yet.
fn success() -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None)
}

/// A SUCCESS response naming a queue offset.
fn offset_answer(offset: i64) -> Outcome {
    answered(success().with_header(&OffsetResponseHeader { offset }))
}

/// Message counters for GET_BROKER_RUNTIME_INFO.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_put: AtomicU64,
    pub messages_got: AtomicU64,
    /// When a write refused for want of space was last logged (ms): once in ten seconds.
    pub no_space_logged_ms: AtomicU64,
    unique_keys: AtomicU64,
    /// Samples of the totals for the runtime info's rates.
    rates: Mutex<petrel_core::broker::rates::Rates>,
    /// Messages and bytes in per topic (while metrics are on) and out per topic and group
    /// (always: the stats tables read it).
    traffic: Mutex<petrel_core::metrics::Traffic>,
    /// How long sends took to be answered (metrics).
    send_latency: petrel_core::metrics::Histogram,
    /// Messages put per topic, and pulled per `topic@group`, over the last minute, hour and
    /// day (VIEW_BROKER_STATS_DATA, consume TPS), sampled by `stats.rs`.
    topics: Mutex<petrel_core::broker::stats::StatsTable>,
    groups: Mutex<petrel_core::broker::stats::StatsTable>,
}

impl Stats {
    /// Messages put and got since the broker started.
    pub fn totals(&self) -> (u64, u64) {
        (self.messages_put.load(Ordering::Relaxed), self.messages_got.load(Ordering::Relaxed))
    }
}

/// The broker's state, shared by the request handler and its tasks.
pub struct Broker {
    /// The configuration the broker started with: what its tasks and stores were built from.
    config: BrokerConfig,
    /// The configuration as UPDATE_BROKER_CONFIG last left it, with the number of updates
    /// (GET_BROKER_CONFIG answers it; `update_broker_config.rs` says what takes effect when).
    updated: Mutex<(BrokerConfig, i64)>,
    /// What the send planner reads of the configuration (and of the role, which a controller
    /// may change).
    send_config: RwLock<SendConfig>,
    /// Whether this broker serves pulls and which broker it suggests for the next.
    read_policy: Mutex<ReadPolicy>,
    /// Controller mode: the role and the sync-state set, once the controller gave this
    /// broker its id (`controller.rs`).
    replicas: Mutex<Option<Replicas>>,
    /// Set when the role changes: the tasks of a role (a slave's link to its master, a
    /// master's links to its slaves, delay delivery) end with it.
    term: Mutex<Flag>,
    /// See [`Broker::role_write`].
    role_writes: RwLock<()>,
    /// Controller mode: the commit log's end when this broker last became master, with that
    /// term's flag, until `controller::adopt_inherited` has served the topics held below it.
    inherited: Mutex<Option<(u64, Flag)>>,
    /// Wakes `controller::adopt_inherited`: `inherited` was set.
    promoted: Notify,
    /// Controller mode: requests the role core asks to send to the controller.
    to_controller: tokio::sync::mpsc::UnboundedSender<ReplicasAction>,
    from_core: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ReplicasAction>>>,
    /// `brokerIP1:listenPort`, the address in routes and in message ids.
    addr: String,
    /// `brokerIP1:haListenPort`, the address slaves connect to (told to the NameServer).
    ha_addr: String,
    /// A slave's master's HA address, as the NameServer last answered its registration.
    learned_master: Mutex<Option<String>>,
    /// A slave's master's client address, from the same answer.
    learned_master_addr: Mutex<Option<String>>,
    /// Ordered consumers' queue locks (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).
    queue_locks: Mutex<petrel_core::broker::queue_locks::QueueLocks>,
    /// POP consumers' state (`pop.rs`).
    pop: pop::PopState,
    /// The timer checkpoints this broker wrote while delivering, oldest first, each with the
    /// commit log's flushed end when it was written (GET_TIMER_CHECK_POINT).
    timer_checkpoints:
        Mutex<std::collections::VecDeque<(petrel_storage::timer::TimerCheckpoint, u64)>>,
    /// The timer wheel's count per pending slot, kept only while `timerCongestNumEachSlot` is
    /// set (`timer.rs`), for sends to check.
    timer_slots: Mutex<SlotCounts>,
    /// `config/timermetrics` as the timer service last wrote it (GET_TIMER_METRICS); `None`
    /// until the service has recovered its wheel, and with `timerWheelEnable=false`.
    timer_metrics: Mutex<Option<petrel_core::broker::timer_metrics::TimerMetrics>>,
    /// Wall time (ms) before which the timer wheel has put every timer message due (its read
    /// time, or the last time its enqueue was caught up if earlier; 0 until the wheel runs),
    /// with the commit log's end then: once dispatch passes that end, the puts are readable.
    /// The revive service takes an idle revive queue as read no further (`revive.rs`).
    timer_done: Mutex<(i64, u64)>,
    store: StoreService,
    disk: Arc<dyn Disk>,
    topics: Mutex<TopicTable>,
    groups: Mutex<SubscriptionGroups>,
    offsets: Mutex<ConsumerOffsets>,
    offsets_dirty: AtomicBool,
    /// The topic table or the groups changed and are not written yet.
    topics_dirty: AtomicBool,
    groups_dirty: AtomicBool,
    /// Held while a config file is snapshotted and written (see `Broker::write_if_dirty`).
    persisting: Mutex<()>,
    clients: Mutex<ClientRegistry>,
    /// The consumer groups' SQL92 filters, registered by heartbeats.
    filters: Mutex<ConsumerFilters>,
    filters_dirty: AtomicBool,
    delays: Mutex<DelayOffsets>,
    /// The delay cursors moved since they were last written.
    delays_dirty: AtomicBool,
    /// Which half messages were committed or rolled back (`transactions.rs`).
    transactions: Mutex<transactions::Transactions>,
    /// Transaction checks sent: the round robin over a group's producers.
    checks_sent: AtomicUsize,
    /// Where this run's recovery began reading the commit log: a crash may have torn the
    /// appends after it.
    recovered_from: u64,
    server: ServerHandle,
    held_pulls: AtomicUsize,
    /// Wakes the registration task: the topic table changed.
    register_now: Notify,
    namesrv: RemotingClient,
    stats: Stats,
    boot_millis: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Broker {
    /// A slave's master's HA address: `haMasterAddress`, or what the NameServer answered (in
    /// controller mode always the latter: the master moves).
    fn ha_master(&self) -> Option<String> {
        let configured = self.config.ha_master_address.clone();
        let configured = configured.filter(|_| self.config.controller.is_none());
        configured.or_else(|| lock(&self.learned_master).clone())
    }

    /// Whether this broker takes writes in its role (in controller mode: the controller made
    /// it master).
    fn is_master(&self) -> bool {
        self.role() != BrokerRole::Slave
    }

    /// How pulls are served now.
    fn read_policy(&self) -> ReadPolicy {
        *lock(&self.read_policy)
    }

    /// The current role's flag: set when the role changes.
    fn term(&self) -> Flag {
        lock(&self.term).clone()
    }

    /// Ends the current role's tasks and starts a new term. It waits for any write the old
    /// role is making (`role_writes`): none lands once the new role begins.
    fn new_term(&self) {
        let _writes = self.role_writes.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *lock(&self.term), Flag::new());
        old.set();
    }

    /// Held across a write that only the current role may make (a master's append, a slave's
    /// replicated append or truncation); a role change waits for it.
    fn role_write(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.role_writes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The role now: `brokerRole` outside controller mode; in it, what the controller said
    /// (a master is SYNC_MASTER, as RocketMQ's `changeToMaster` makes it; a broker not yet
    /// told is a slave: it takes no writes).
    pub fn role(&self) -> BrokerRole {
        if self.config.controller.is_none() {
            return self.config.role;
        }
        match lock(&self.replicas).as_ref().map(Replicas::role) {
            Some(Role::Master) => BrokerRole::SyncMaster,
            _ => BrokerRole::Slave,
        }
    }

    /// The id this broker registers with the NameServers: `brokerId` outside controller mode;
    /// in it 0 as master and its controller id as slave; `None` while fenced (a fenced broker
    /// does not register, as RocketMQ's isolated broker does not).
    fn registered_id(&self) -> Option<i64> {
        if self.config.controller.is_none() {
            return Some(self.config.broker_id);
        }
        match lock(&self.replicas).as_ref().map(|r| (r.role().clone(), r.me())) {
            Some((Role::Master, _)) => Some(0),
            Some((Role::Slave { .. }, me)) => Some(me),
            _ => None,
        }
    }

    /// Controller mode: why a send is refused now (not the master, or too few in sync).
    fn write_refusal(&self) -> Option<Refusal> {
        self.config.controller.as_ref()?;
        let replicas = lock(&self.replicas);
        let why = match replicas.as_ref() {
            None => "the broker waits for its controller to give it an id".to_owned(),
            Some(replicas) => replicas.write_refusal()?,
        };
        let code = match replicas.as_ref().map(Replicas::role) {
            // RocketMQ answers IN_SYNC_REPLICAS_NOT_ENOUGH with SYSTEM_ERROR.
            Some(Role::Master) => response::SYSTEM_ERROR,
            _ => response::SERVICE_NOT_AVAILABLE,
        };
        Some(Refusal::new(code, format!("[{}] {why}", self.addr)))
    }

    /// Runs `change` on the role core (controller mode, once it has an id) and carries out
    /// what it asks, under its lock so that two callers' actions never interleave.
    fn change_replicas<T>(&self, change: impl FnOnce(&mut Replicas) -> T) -> Option<T> {
        let mut guard = lock(&self.replicas);
        let replicas = guard.as_mut()?;
        let result = change(replicas);
        #[cfg(madsim)]
        replicas.check_invariants();
        while let Some(action) = replicas.poll_action() {
            self.carry_out(replicas, action);
        }
        Some(result)
    }

    fn carry_out(&self, replicas: &Replicas, action: ReplicasAction) {
        match action {
            ReplicasAction::BecomeMaster { epoch } => {
                tracing::info!(epoch, "the controller made this broker master");
                self.new_term();
                if let Err(error) = self.store.begin_epoch(epoch.max(0) as u32) {
                    tracing::error!(%error, epoch, "cannot write in the new epoch");
                }
                self.set_slave(false);
                self.adopt_held_topics();
                *lock(&self.inherited) = Some((self.store.store().written_offset(), self.term()));
                self.promoted.notify_one();
                let mut named = lock(&self.learned_master_addr);
                *lock(&self.learned_master) = None;
                *named = None;
                drop(named);
                self.register_now.notify_one();
            }
            ReplicasAction::BecomeSlave { master, master_addr, epoch } => {
                tracing::info!(master, %master_addr, epoch, "the controller made this broker a slave");
                self.new_term();
                self.set_slave(true);
                let mut named = lock(&self.learned_master_addr);
                *lock(&self.learned_master) = None;
                *named = Some(master_addr);
                drop(named);
                self.register_now.notify_one();
            }
            ReplicasAction::CountAcks { slave, offset } => {
                self.store.replica_acked(slave as u64, offset)
            }
            ReplicasAction::UncountAcks { slave } => self.store.replica_gone(slave as u64),
            ReplicasAction::AcksRequired { acks } => {
                let all_ack = self.config.controller.as_ref().is_some_and(|c| c.all_ack);
                let mut confirm = self.store.confirm_config();
                confirm.acks_required = acks;
                confirm.confirm_waits_for_replicas = all_ack && acks > 0;
                confirm.upstream_confirms = *replicas.role() != Role::Master;
                self.store.reconfigure(confirm);
            }
            elect_or_propose => {
                // The controller task sends these; it ends only with the broker.
                let _ = self.to_controller.send(elect_or_propose);
            }
        }
    }

    /// Whether the send planner and the pull handler treat this broker as a slave.
    fn set_slave(&self, slave: bool) {
        self.send_config.write().unwrap_or_else(|p| p.into_inner()).slave = slave;
        lock(&self.read_policy).slave = slave;
    }

    fn topics(&self) -> MutexGuard<'_, TopicTable> {
        lock(&self.topics)
    }

    fn groups(&self) -> MutexGuard<'_, SubscriptionGroups> {
        lock(&self.groups)
    }

    fn offsets(&self) -> MutexGuard<'_, ConsumerOffsets> {
        lock(&self.offsets)
    }

    /// The store (for tests and the simulator's checkers to look into, too).
    pub fn store(&self) -> &Arc<Store> {
        self.store.store()
    }

    /// How far consumers may read the commit log: it moves when dispatch hands records to the
    /// consume queues, and back when a truncation cuts them (for the simulator's checkers).
    pub fn dispatched(&self) -> petrel_storage::service::Progress {
        self.store.dispatched()
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The address clients use, `ip:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address slaves connect to, `ip:haListenPort`.
    pub fn ha_addr(&self) -> &str {
        &self.ha_addr
    }

    /// A UNIQ_KEY for a message whose producer sent none.
    fn unique_key(&self) -> String {
        let ip = match self.config.store.store_host.ip() {
            std::net::IpAddr::V4(v4) => v4.octets(),
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        let counter = self.stats.unique_keys.fetch_add(1, Ordering::Relaxed);
        let since = now_millis().saturating_sub(self.boot_millis);
        let seed = (self.boot_millis as u32) ^ (counter >> 16) as u32;
        let pid = petrel_net::process::id() as u16;
        petrel_core::broker::unique_key(ip, pid, seed, since, counter as u16)
    }

    /// The topic's configuration, if the broker serves it.
    pub fn topic(&self, topic: &str) -> Option<TopicConfig> {
        self.topics().get(topic).cloned()
    }

    /// Runs a planner over the topic table and the subscription groups, as they are now.
    fn plan<T>(&self, planner: impl FnOnce(&BrokerView<'_>) -> T) -> T {
        let topics = self.topics();
        let groups = self.groups();
        let config = self.send_config.read().unwrap_or_else(|p| p.into_inner());
        planner(&BrokerView { topics: &topics, groups: &groups, config: &config })
    }

    /// Creates the topics and group a plan names (unless another request just did), and
    /// refuses when the topic table cannot be made durable: a message is stored only once its
    /// topic survives a restart.
    fn apply_plan(&self, plan: &SendPlan) -> Result<(), Refusal> {
        #[cfg(madsim)]
        plan.check_invariants();
        let now = now_millis();
        if let Some(group) = &plan.create_group {
            if self.groups().add(group.clone(), now) {
                self.groups_changed();
            }
        }
        let mut created = false;
        for topic in &plan.create_topics {
            if self.topics().ensure([topic.clone()], now) {
                tracing::info!(topic = %topic.topic_name, queues = topic.write_queue_nums, "topic created");
                created = true;
            }
        }
        if created {
            self.topics_changed();
        }
        self.topics_durable()
    }

    /// `brokerPermission` as it is now (UPDATE_BROKER_CONFIG changes it).
    fn permission(&self) -> i32 {
        self.send_config.read().unwrap_or_else(|p| p.into_inner()).broker_permission
    }

    /// `autoCreateSubscriptionGroup` as it is now (UPDATE_BROKER_CONFIG changes it).
    fn auto_create_group(&self) -> bool {
        self.send_config.read().unwrap_or_else(|p| p.into_inner()).auto_create_group
    }

    /// The number the planner picks a queue with when the producer leaves the choice: the
    /// count of messages stored, which spreads them round the queues.
    fn pick(&self) -> u64 {
        self.stats.messages_put.load(Ordering::Relaxed)
    }

    /// `timerCongestNumEachSlot`'s check of a timer message bound for `slot`, against the
    /// wheel's count there. Each check draws anew: the count of checks spread over `0..1000`
    /// (Fibonacci hashing), as arbitrary as a random number and reproducible under simulation.
    fn timer_flow_control(&self, slot: i64) -> Result<(), Refusal> {
        let settings = &self.config.timer.settings;
        if !settings.flow_controlled() {
            return Ok(());
        }
        let (waiting, draws) = {
            let mut counts = lock(&self.timer_slots);
            counts.draws += 1;
            (counts.by_slot.get(&slot).copied().unwrap_or(0), counts.draws)
        };
        let spread = draws.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        settings.flow_control(waiting, ((spread * 1_000) >> 32) as u32)
    }

    /// A new master serves the topics its store holds messages of, though its last copy of
    /// the old master's topic table (every `syncBrokerMetadataPeriod`) may predate them
    /// (`TopicTable::missing_from`, RocketMQ #9804). Called at the promotion and again once
    /// dispatch has passed the log's end at the promotion (`controller::adopt_inherited`).
    fn adopt_held_topics(&self) {
        let held = self.store.store().queue_ids();
        let missing = self.topics().missing_from(held.iter().map(|(t, q)| (t.as_str(), *q)));
        if missing.is_empty() {
            return;
        }
        let names: Vec<&str> = missing.iter().map(|t| t.topic_name.as_str()).collect();
        tracing::warn!(?names, "topics held in the store but not in the topic table: served");
        if self.topics().ensure(missing, now_millis()) {
            self.topics_changed();
        }
    }

    /// Makes `queue_id` of `topic` readable before the broker itself writes there (a due timer
    /// message's REAL_QID, chosen on the master that took it): a topic the table lacks is
    /// added, one with fewer read queues gets more, so that the message can be consumed.
    fn ensure_readable(&self, topic: &str, queue_id: i32) {
        let mut topics = self.topics();
        let widened = match topics.get(topic) {
            None => {
                let missing = topics.missing_from([(topic, queue_id)]);
                topics.ensure(missing, now_millis())
            }
            Some(config) if config.read_queue_nums <= queue_id => {
                let widened = TopicConfig { read_queue_nums: queue_id + 1, ..config.clone() };
                topics.put(widened, now_millis())
            }
            Some(_) => false,
        };
        drop(topics);
        if widened {
            tracing::warn!(topic, queue_id, "a queue written by the broker made readable");
            self.topics_changed();
        }
    }

    /// The system topics and groups a RocketMQ broker has from its start, where missing.
    fn ensure_system_entries(&self) {
        if self.topics().ensure(system_topics(&self.config), now_millis()) {
            self.topics_changed();
        }
        let groups = petrel_core::broker::subscriptions::SYSTEM_GROUPS
            .map(petrel_core::broker::subscriptions::SubscriptionGroupConfig::named);
        let mut added = false;
        for group in groups {
            added |= self.groups().add(group, now_millis());
        }
        if added {
            self.groups_changed();
        }
    }

    /// Persists the topic table and tells the NameServers, after a change.
    fn topics_changed(&self) {
        self.topics_dirty.store(true, Ordering::Release);
        self.persist_topics();
        self.register_now.notify_one();
    }

    fn groups_changed(&self) {
        self.groups_dirty.store(true, Ordering::Release);
        self.persist_groups();
    }

    /// Writes the topic table if it changed since it was last written; a failed write is
    /// tried again at the next change or housekeeping period.
    fn persist_topics(&self) {
        let writing = lock(&self.persisting);
        self.write_if_dirty(&writing, &self.topics_dirty, persist::TOPICS, || {
            self.topics().wrapper()
        });
    }

    /// Whether the topic table on disk is the one in memory, writing it if not. A message is
    /// acknowledged only once its topic's config is durable: without it the broker would not
    /// serve the message after a restart.
    fn topics_durable(&self) -> Result<(), Refusal> {
        let writing = lock(&self.persisting);
        let current = self.write_if_dirty(&writing, &self.topics_dirty, persist::TOPICS, || {
            self.topics().wrapper()
        });
        not_durable_unless(current, "the topic table")
    }

    /// Whether the subscription groups on disk are the ones in memory, writing them if not:
    /// an admin's change to a group is answered SUCCESS only once it would outlive a crash.
    fn groups_durable(&self) -> Result<(), Refusal> {
        let writing = lock(&self.persisting);
        let current = self.write_if_dirty(&writing, &self.groups_dirty, persist::GROUPS, || {
            self.groups().wrapper()
        });
        not_durable_unless(current, "the subscription groups")
    }

    /// Writes the subscription groups as [`Broker::persist_topics`] writes the topics.
    fn persist_groups(&self) {
        let writing = lock(&self.persisting);
        self.write_if_dirty(&writing, &self.groups_dirty, persist::GROUPS, || {
            self.groups().wrapper()
        });
    }

    /// Writes config file `name` from `snapshot` if `dirty` says it changed, keeping the flag
    /// set when the write fails; true when the file is current. The caller holds the broker's
    /// `persisting` lock, so one writer at a time takes a snapshot and writes it: a writer that
    /// finds the flag clear knows the file on disk is current, and two writers never share a
    /// temporary file.
    fn write_if_dirty<T: serde::Serialize>(
        &self,
        _writing: &MutexGuard<'_, ()>,
        dirty: &AtomicBool,
        name: &str,
        snapshot: impl FnOnce() -> T,
    ) -> bool {
        if !dirty.swap(false, Ordering::AcqRel) {
            return true;
        }
        let written = persist::save(self, name, &snapshot());
        if !written {
            dirty.store(true, Ordering::Release);
        }
        written
    }

    /// Runs `change` on the client registry, then carries out what it asks for.
    fn change_clients<T>(&self, change: impl FnOnce(&mut ClientRegistry) -> T) -> T {
        let (result, actions) = {
            let mut clients = lock(&self.clients);
            let result = change(&mut clients);
            let mut actions = Vec::new();
            while let Some(action) = clients.poll_action() {
                match action {
                    // Under the registry's lock (then the filters', the one order both are
                    // taken in), so that no heartbeat registers the group's filters again
                    // between the group's going and its filters' death.
                    ClientAction::GroupGone(group) => self
                        .change_filters(|filters| filters.unregister(&group, now_millis() as i64)),
                    other => actions.push(other),
                }
            }
            (result, actions)
        };
        for action in actions {
            match action {
                ClientAction::NotifyIdsChanged { group, conns } => {
                    notify_consumer_ids_changed::send(self, &group, &conns)
                }
                ClientAction::Close(conn) => {
                    tracing::info!(conn, "client silent past channelExpiredTimeout, closing");
                    self.server.close(conn);
                }
                ClientAction::GroupGone(_) => unreachable!("handled under the registry's lock"),
            }
        }
        result
    }

    /// Runs `change` on the consumer groups' SQL92 filters; marks them to be written when it
    /// says they changed. Takes the filters' lock: never call it holding that lock.
    fn change_filters(&self, change: impl FnOnce(&mut ConsumerFilters) -> bool) {
        if change(&mut lock(&self.filters)) {
            self.filters_dirty.store(true, Ordering::Release);
        }
    }

    fn dispatch(self: &Arc<Self>, conn: &Connection, request: RemotingCommand) -> Handled {
        let handle: Handle = match request.code {
            request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
                send_message::handle
            }
            request::SEND_REPLY_MESSAGE | request::SEND_REPLY_MESSAGE_V2 => {
                send_reply_message::handle
            }
            request::PULL_MESSAGE | request::LITE_PULL_MESSAGE => pull_message::handle,
            request::QUERY_CONSUMER_OFFSET => query_consumer_offset::handle,
            request::UPDATE_CONSUMER_OFFSET => update_consumer_offset::handle,
            request::GET_MAX_OFFSET => get_max_offset::handle,
            request::GET_MIN_OFFSET => get_min_offset::handle,
            request::SEARCH_OFFSET_BY_TIMESTAMP => search_offset_by_timestamp::handle,
            request::GET_EARLIEST_MSG_STORETIME => get_earliest_msg_storetime::handle,
            request::HEART_BEAT => heart_beat::handle,
            request::UNREGISTER_CLIENT => unregister_client::handle,
            request::GET_CONSUMER_LIST_BY_GROUP => get_consumer_list_by_group::handle,
            request::QUERY_MESSAGE => query_message::handle,
            request::VIEW_MESSAGE_BY_ID => view_message_by_id::handle,
            request::CONSUMER_SEND_MSG_BACK => consumer_send_msg_back::handle,
            request::END_TRANSACTION => end_transaction::handle,
            request::UPDATE_AND_CREATE_TOPIC => update_and_create_topic::handle,
            request::DELETE_TOPIC_IN_BROKER => delete_topic_in_broker::handle,
            request::GET_ALL_TOPIC_CONFIG => get_all_topic_config::handle,
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => get_all_subscriptiongroup_config::handle,
            request::GET_ALL_CONSUMER_OFFSET => get_all_consumer_offset::handle,
            request::GET_ALL_DELAY_OFFSET => get_all_delay_offset::handle,
            request::GET_TIMER_CHECK_POINT => get_timer_check_point::handle,
            request::GET_TIMER_METRICS => get_timer_metrics::handle,
            request::CHECK_CLIENT_CONFIG => check_client_config::handle,
            request::LOCK_BATCH_MQ => lock_batch_mq::handle_lock,
            request::POP_MESSAGE => pop::handle,
            request::ACK_MESSAGE => ack_message::handle_ack,
            request::BATCH_ACK_MESSAGE => ack_message::handle_batch_ack,
            request::CHANGE_MESSAGE_INVISIBLETIME => ack_message::handle_change_invisible,
            request::PEEK_MESSAGE => pop_info::handle_peek,
            request::NOTIFICATION => pop_info::handle_notification,
            request::POLLING_INFO => pop_info::handle_polling_info,
            request::UNLOCK_BATCH_MQ => lock_batch_mq::handle_unlock,
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                update_and_create_subscriptiongroup::handle
            }
            request::GET_BROKER_RUNTIME_INFO => get_broker_runtime_info::handle,
            request::NOTIFY_BROKER_ROLE_CHANGED => notify_broker_role_changed::handle,
            request::GET_BROKER_EPOCH_CACHE => get_broker_epoch_cache::handle,
            request::GET_BROKER_CONFIG => get_broker_config::handle,
            request::UPDATE_BROKER_CONFIG => update_broker_config::handle,
            request::GET_TOPIC_STATS_INFO => get_topic_stats_info::handle,
            request::GET_TOPIC_CONFIG => get_topic_config::handle,
            request::CLONE_GROUP_OFFSET => clone_group_offset::handle,
            request::VIEW_BROKER_STATS_DATA => view_broker_stats_data::handle,
            request::INVOKE_BROKER_TO_RESET_OFFSET => invoke_broker_to_reset_offset::handle,
            request::GET_CONSUMER_CONNECTION_LIST => get_consumer_connection_list::handle,
            request::GET_PRODUCER_CONNECTION_LIST => get_producer_connection_list::handle,
            request::DELETE_SUBSCRIPTIONGROUP => delete_subscriptiongroup::handle,
            request::DELETE_EXPIRED_COMMITLOG => delete_expired_commitlog::handle,
            request::GET_CONSUME_STATS => get_consume_stats::handle,
            request::QUERY_TOPIC_CONSUME_BY_WHO => query_topic_consume_by_who::handle,
            request::QUERY_CONSUME_QUEUE => query_consume_queue::handle,
            request::GET_CONSUMER_RUNNING_INFO => get_consumer_running_info::handle,
            request::CONSUME_MESSAGE_DIRECTLY => consume_message_directly::handle,
            request::GET_SYSTEM_TOPIC_LIST_FROM_BROKER => get_system_topic_list_from_broker::handle,
            other => return Handled::Now(not_supported(other)),
        };
        handle(self, conn, &request).unwrap_or_else(|refusal| Handled::Now(refusal.into()))
    }

    /// Consumer offsets go to disk every `flushConsumerOffsetInterval`, and silent clients
    /// are dropped; until shutdown.
    async fn housekeeping(self: Arc<Self>, stop: Flag) {
        let period = Duration::from_millis(self.config.flush_offsets_interval_ms.max(10));
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep(period) => {}
                _ = stop.wait() => return,
            }
            self.change_clients(|clients| clients.tick(now_millis()));
            self.change_filters(|filters| filters.clean(now_millis() as i64));
            let (put, got) = self.stats.totals();
            lock(&self.stats.rates).sample(now_millis(), put, got);
            self.persist_offsets();
            self.persist_topics();
            self.persist_groups();
        }
    }

    fn persist_offsets(&self) {
        let writing = lock(&self.persisting);
        self.write_if_dirty(&writing, &self.offsets_dirty, persist::OFFSETS, || {
            self.offsets().clone()
        });
        self.write_if_dirty(&writing, &self.pop.order_dirty, persist::ORDER_INFO, || {
            let mut order = lock(&self.pop.order);
            order.forget_old(now_millis() as i64);
            order.to_table()
        });
        self.write_if_dirty(&writing, &self.filters_dirty, persist::FILTERS, || {
            lock(&self.filters).to_table(now_millis() as i64)
        });
    }

    /// The used share of the store's disk, 0.0 to 1.0, when it can be measured.
    pub fn disk_used_ratio(&self) -> Option<f64> {
        let space = self.disk.space(&self.config.store.root).ok()?;
        let used = space.total_bytes.saturating_sub(space.free_bytes) as f64;
        Some(used / space.total_bytes.max(1) as f64)
    }

    /// Checks the cores' invariants (tests and the simulator call this).
    pub fn check_invariants(&self) {
        self.topics().check_invariants();
        self.groups().check_invariants();
        self.offsets().check_invariants();
        lock(&self.clients).check_invariants();
        lock(&self.filters).check_invariants();
        lock(&self.stats.rates).check_invariants();
        lock(&self.stats.topics).check_invariants();
        lock(&self.stats.groups).check_invariants();
        self.store.check_invariants();
    }
}

struct Handler(Arc<Broker>);

impl RequestHandler for Handler {
    fn handle(&self, conn: &Connection, request: RemotingCommand) -> Handled {
        let handled = self.0.dispatch(conn, request);
        // In simulation builds every request is a step after which the cores must hold.
        #[cfg(madsim)]
        self.0.check_invariants();
        handled
    }

    fn connection_closed(&self, conn: &Connection) {
        self.0.change_clients(|clients| clients.connection_closed(conn.id()));
        #[cfg(madsim)]
        self.0.check_invariants();
    }
}

/// The topics every broker has (`TopicConfigManager`'s constructor).
fn system_topics(config: &BrokerConfig) -> Vec<TopicConfig> {
    let rw = perm::READ | perm::WRITE;
    let mut topics = vec![
        topic_config("SELF_TEST_TOPIC", 1, rw),
        topic_config("BenchmarkTest", 1024, rw),
        topic_config(&config.cluster_name, 16, perm::INHERIT | rw),
        topic_config(&config.broker_name, 1, perm::INHERIT | rw),
        topic_config("OFFSET_MOVED_EVENT", 1, rw),
        topic_config(SCHEDULE_TOPIC, config.store.delay_levels.count(), rw),
        topic_config(TIMER_TOPIC, 1, rw),
        topic_config(transaction::HALF_TOPIC, 1, rw),
        topic_config(transaction::OP_HALF_TOPIC, 1, rw),
        topic_config(&format!("{}_REPLY_TOPIC", config.cluster_name), 1, rw),
    ];
    if config.auto_create_topic {
        let queues = config.default_topic_queue_nums;
        topics.push(topic_config(AUTO_CREATE_TOPIC, queues, perm::INHERIT | rw));
    }
    topics
}

/// How often [`BrokerHandle::failed`] looks at the store.
const FAILURE_POLL: Duration = Duration::from_millis(100);

/// A running broker.
pub struct BrokerHandle {
    pub local_addr: SocketAddr,
    /// Where metrics are served, when `metricsExporterType=PROM`.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the commit log ended once recovered (what survived the last run).
    pub recovered_end: u64,
    pub state: Arc<Broker>,
    stop: SetOnDrop,
    done: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BrokerHandle {
    /// Returns once the store has stopped after a failed disk sync (`docs/storage-format.md`
    /// §9), with the reason. From then on nothing is known about the disk and every write is
    /// refused: the process should exit, and a restart recovers from what the disk holds.
    pub async fn failed(&self) -> String {
        loop {
            if let Err(stopped) = self.state.store().check_running() {
                return stopped.to_string();
            }
            tokio::time::sleep(FAILURE_POLL).await;
        }
    }

    /// Stops cleanly: unregisters from the NameServers, stops serving, writes the offsets, the
    /// topics, the groups and the delay cursors, and shuts the store down (flush, checkpoint,
    /// remove `abort`); an error if any of them could not be written.
    pub async fn shutdown(self) -> Result<(), String> {
        let broker = self.state.clone();
        register::unregister_all(&broker).await;
        self.stop.set();
        let _ = self.done.await;
        for task in self.tasks {
            let _ = task.await;
        }
        broker.persist_offsets();
        broker.persist_topics();
        broker.persist_groups();
        schedule::persist(&broker);
        broker.namesrv.shutdown();
        broker.store.shutdown().await.map_err(|e| format!("store shutdown failed: {e}"))?;
        let unwritten: Vec<&str> = [
            (&broker.offsets_dirty, "consumer offsets"),
            (&broker.pop.order_dirty, "orderly POP state"),
            (&broker.filters_dirty, "consumer filters"),
            (&broker.topics_dirty, "topics"),
            (&broker.groups_dirty, "subscription groups"),
            (&broker.delays_dirty, "delay offsets"),
        ]
        .into_iter()
        .filter(|(dirty, _)| dirty.load(Ordering::Acquire))
        .map(|(_, what)| what)
        .collect();
        match unwritten.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the broker stopped, but its {} could not be written (see the log above)",
                unwritten.join(", ")
            )),
        }
    }
}

/// The IP clients should use when `brokerIP1` is not set: the address of the interface that
/// routes outward, or loopback on a machine with no route.
fn detect_ip() -> String {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|socket| {
        socket.connect("192.0.2.1:9")?;
        socket.local_addr()
    });
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip().to_string(),
        _ => "127.0.0.1".to_owned(),
    }
}

/// What the send planner reads of the configuration.
fn send_config(config: &BrokerConfig, addr: &str) -> SendConfig {
    SendConfig {
        broker_permission: config.broker_permission,
        broker_addr: addr.to_owned(),
        cluster_name: config.cluster_name.as_str().into(),
        message_bytes_max: config.store.message_bytes_max,
        delay_levels: config.store.delay_levels.clone(),
        timer: config.timer.settings,
        auto_create_group: config.auto_create_group,
        // In controller mode the broker starts fenced, taking no writes.
        slave: config.role == BrokerRole::Slave || config.controller.is_some(),
        reject_transaction_message: config.transactions.reject,
    }
}

/// What the pull handler reads of the configuration.
fn read_policy(config: &BrokerConfig) -> ReadPolicy {
    ReadPolicy {
        slave: config.role == BrokerRole::Slave || config.controller.is_some(),
        slave_read_enable: config.slave_read_enable,
        in_memory_ratio: config.in_memory_ratio,
        memory_bytes: config.memory_bytes,
        offset_check_in_slave: config.offset_check_in_slave,
        lite_pull_enable: config.lite_pull,
    }
}

/// The broker's tasks: housekeeping, registration, replication and, in controller mode, the
/// controller's.
fn spawn_tasks(
    state: &Arc<Broker>,
    ha_listener: Option<tokio::net::TcpListener>,
    metrics_listener: Option<tokio::net::TcpListener>,
    stopped: &Flag,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(state.clone().housekeeping(stopped.clone())),
        tokio::spawn(register::run(state.clone(), stopped.clone())),
        tokio::spawn(stats::run(state.clone(), stopped.clone())),
    ];
    if let Some(listener) = metrics_listener {
        let broker = state.clone();
        let render = Arc::new(move || broker.metrics_text());
        tasks.push(tokio::spawn(crate::metrics::serve(listener, render, stopped.clone())));
    }
    tasks.extend(ha::spawn(state, ha_listener, stopped));
    if state.config.controller.is_some() {
        tasks.extend(controller::spawn(state, stopped));
    }
    tasks
}

/// Opens and recovers the store, logging what recovery did.
fn open_store(
    disk: &Arc<dyn Disk>,
    config: &BrokerConfig,
) -> Result<(Store, petrel_storage::RecoveryReport), String> {
    let (store, report) = Store::open(disk.clone(), config.store.clone())
        .map_err(|e| format!("cannot open the store at {}: {e}", config.store.root.display()))?;
    let plan = &report.plan;
    tracing::info!(
        abnormal = plan.abnormal,
        end = plan.end,
        confirmed = plan.confirmed,
        rebuilt_queues = plan.rebuild_queues,
        units_replaced = report.units_replaced,
        "store recovered"
    );
    Ok((store, report))
}

/// A SYNC_MASTER answers a producer once a slave holds the message; in controller mode the
/// sync-state set decides. The recovery range is held until the broker has repaired what a
/// crash tore off in it (`transactions::repair`) or follows a master's log.
fn store_replication(config: &mut BrokerConfig) {
    let sync_master = config.role == BrokerRole::SyncMaster && config.controller.is_none();
    config.store.replica_acks_required = usize::from(sync_master);
    config.store.controller_mode = config.controller.is_some();
    config.store.hold_recovery_start = true;
}

/// Opens the store, loads the config files, binds and starts serving.
pub async fn start(mut config: BrokerConfig, disk: Arc<dyn Disk>) -> Result<BrokerHandle, String> {
    config.validate()?;
    let metrics_listener = config.metrics.bind(&config.bind_address).await?;
    let bind = format!("{}:{}", config.bind_address, config.listen_port);
    let server = Server::bind(&bind, config.server.clone())
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let local_addr = server.local_addr().map_err(|e| e.to_string())?;
    let ip = config.broker_ip.clone().unwrap_or_else(detect_ip);
    let addr = format!("{ip}:{}", local_addr.port());
    config.store.store_host =
        addr.parse().map_err(|e| format!("brokerIP1 {ip} is not an IP address: {e}"))?;
    store_replication(&mut config);
    let (store, report) = open_store(&disk, &config)?;
    let (ha_listener, ha_port) = ha::bind(&config).await?;
    let ha_addr = format!("{ip}:{ha_port}");
    let loaded = persist::load_all(disk.as_ref(), &config)?;
    let (to_controller, from_core) = tokio::sync::mpsc::unbounded_channel();
    let state = Arc::new(Broker {
        send_config: RwLock::new(send_config(&config, &addr)),
        read_policy: Mutex::new(read_policy(&config)),
        replicas: Mutex::new(None),
        term: Mutex::new(Flag::new()),
        role_writes: RwLock::new(()),
        inherited: Mutex::new(None),
        promoted: Notify::new(),
        to_controller,
        from_core: Mutex::new(Some(from_core)),
        addr,
        ha_addr,
        learned_master: Mutex::new(None),
        learned_master_addr: Mutex::new(None),
        timer_checkpoints: Mutex::default(),
        timer_metrics: Mutex::default(),
        timer_slots: Mutex::default(),
        timer_done: Mutex::new((0, 0)),
        queue_locks: Mutex::default(),
        pop: pop::PopState::with_order(loaded.order),
        store: StoreService::start(Arc::new(store)),
        disk,
        topics: Mutex::new(loaded.topics),
        groups: Mutex::new(loaded.groups),
        offsets: Mutex::new(loaded.offsets),
        offsets_dirty: AtomicBool::new(false),
        topics_dirty: AtomicBool::new(false),
        groups_dirty: AtomicBool::new(false),
        persisting: Mutex::new(()),
        clients: Mutex::new(ClientRegistry::new(config.channel_expired_ms)),
        filters: Mutex::new(loaded.filters),
        filters_dirty: AtomicBool::new(false),
        delays: Mutex::new(loaded.delays),
        delays_dirty: AtomicBool::new(false),
        transactions: Mutex::new(transactions::Transactions::default()),
        checks_sent: AtomicUsize::new(0),
        recovered_from: report.plan.scan_from,
        server: server.handle(),
        held_pulls: AtomicUsize::new(0),
        register_now: Notify::new(),
        namesrv: RemotingClient::new(ClientConfig::default(), None),
        stats: Stats::default(),
        boot_millis: now_millis(),
        updated: Mutex::new((config.clone(), 0)),
        config,
    });
    state.ensure_system_entries();
    let stop = SetOnDrop::new();
    let stopped = stop.flag();
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let tasks = spawn_tasks(&state, ha_listener, metrics_listener, &stopped);
    let done = serve(server, &state, stopped);
    tracing::info!(%local_addr, addr = %state.addr, "broker listening");
    let recovered_end = report.plan.end;
    Ok(BrokerHandle { local_addr, metrics_addr, recovered_end, state, stop, done, tasks })
}

/// Serves `server`'s connections with the broker's handlers until `stop` is set.
fn serve(server: Server, state: &Arc<Broker>, stop: Flag) -> tokio::task::JoinHandle<()> {
    let handler = Arc::new(Handler(state.clone()));
    tokio::spawn(async move { server.serve(handler, async move { stop.wait().await }).await })
}

/// The timer wheel's count per pending slot, as sends check it (`timerCongestNumEachSlot`),
/// and how many checks were made (each check's draw).
#[derive(Debug, Default)]
struct SlotCounts {
    by_slot: std::collections::BTreeMap<i64, i64>,
    draws: u64,
}

/// The refusal of a change whose config file (`what`) could not be written. The change stays
/// in memory and is written at the next change or housekeeping period; until then a crash
/// undoes it, so it is not answered SUCCESS.
fn not_durable_unless(current: bool, what: &str) -> Result<(), Refusal> {
    if current {
        return Ok(());
    }
    let why = format!(
        "{what} could not be written to disk (see the broker's log): the change is held in \
         memory and written again at the next change or period; nothing that needs it is \
         stored until then"
    );
    Err(Refusal::new(response::SERVICE_NOT_AVAILABLE, why))
}
