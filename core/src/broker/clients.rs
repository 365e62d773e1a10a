//! The clients a broker knows (`ConsumerManager`, `ProducerManager`): which connections
//! belong to which producer and consumer groups, what each consumer group subscribes to,
//! and when the members of a group must be told that it changed.
//!
//! Inputs: heartbeats (HEART_BEAT every 30 s from each client), UNREGISTER_CLIENT, closed
//! connections, the passing of time. Actions: notify a group's connections that its member
//! list changed (NOTIFY_CONSUMER_IDS_CHANGED, so they rebalance at once instead of within
//! 20 s), and close a connection that stopped sending heartbeats for `channel_expired_ms`.
//!
//! Bounded (RocketMQ bounds none of these): a heartbeat names at most [`HEARTBEAT_GROUPS_MAX`]
//! groups and each consumer group at most [`GROUP_SUBSCRIPTIONS_MAX`] subscriptions, and a
//! connection belongs to at most [`CONNECTION_GROUPS_MAX`] groups; [`ClientRegistry::admit`]
//! says why a heartbeat over them is refused, before anything of it is recorded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::filter::SubscriptionData;
use super::loose;
use crate::route::ConnId;
use crate::Millis;

/// RocketMQ's `channelExpiredTimeout`: a client silent this long is dropped.
pub const CHANNEL_EXPIRED_DEFAULT_MS: Millis = 120_000;

/// Producer and consumer groups named in one heartbeat. A client process sends one heartbeat
/// for all its producers and consumers: a few groups, rarely dozens.
pub const HEARTBEAT_GROUPS_MAX: usize = 256;
/// Topics one consumer group subscribes to in one heartbeat.
pub const GROUP_SUBSCRIPTIONS_MAX: usize = 1024;
/// Groups one connection belongs to, over all its heartbeats.
pub const CONNECTION_GROUPS_MAX: usize = 256;

/// The body of HEART_BEAT (`HeartbeatData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID", deserialize_with = "loose::string")]
    pub client_id: String,
    pub consumer_data_set: Vec<ConsumerData>,
    pub producer_data_set: Vec<ProducerData>,
}

/// A producer group a client belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    #[serde(deserialize_with = "loose::string")]
    pub group_name: String,
}

/// A consumer group a client belongs to, and what it subscribes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    #[serde(deserialize_with = "loose::string")]
    pub consume_from_where: String,
    #[serde(deserialize_with = "loose::string")]
    pub consume_type: String,
    #[serde(deserialize_with = "loose::string")]
    pub group_name: String,
    #[serde(deserialize_with = "loose::string")]
    pub message_model: String,
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "loose::flag")]
    pub unit_mode: bool,
}

/// One member connection of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub client_id: String,
    pub language: String,
    pub version: i32,
    pub last_update: Millis,
}

/// A consumer group as its members describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    pub members: BTreeMap<ConnId, Member>,
    /// Whether members are told of changes (the group's `notifyConsumerIdsChangedEnable`).
    pub notify: bool,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Send NOTIFY_CONSUMER_IDS_CHANGED for `group` to each of these connections (oneway).
    NotifyIdsChanged { group: String, conns: Vec<ConnId> },
    /// The client behind this connection went silent: close it.
    Close(ConnId),
    /// The last member of this consumer group left (its SQL92 filters die).
    GroupGone(String),
}

/// Who a connection says it is, from the request that carried the heartbeat.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub conn: ConnId,
    pub language: &'a str,
    pub version: i32,
}

/// The registry. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    consumers: BTreeMap<String, ConsumerGroup>,
    producers: BTreeMap<String, BTreeMap<ConnId, Member>>,
    /// How many groups (producer and consumer) each connection belongs to.
    held: BTreeMap<ConnId, usize>,
    expired_ms: Millis,
    actions: VecDeque<ClientAction>,
}

impl ClientRegistry {
    pub fn new(expired_ms: Millis) -> ClientRegistry {
        ClientRegistry {
            consumers: BTreeMap::new(),
            producers: BTreeMap::new(),
            held: BTreeMap::new(),
            expired_ms,
            actions: VecDeque::new(),
        }
    }

    /// Why this heartbeat from `conn` must be refused, if it must: it names too many groups,
    /// a group subscribes to too many topics, or the connection would belong to too many
    /// groups.
    pub fn admit(&self, conn: ConnId, data: &HeartbeatData) -> Result<(), String> {
        let (producers, consumers) = (&data.producer_data_set, &data.consumer_data_set);
        let named = producers.len() + consumers.len();
        if named > HEARTBEAT_GROUPS_MAX {
            return Err(format!(
                "the heartbeat names {named} producer and consumer groups; at most \
                 {HEARTBEAT_GROUPS_MAX} are taken in one"
            ));
        }
        if let Some(big) =
            consumers.iter().find(|c| c.subscription_data_set.len() > GROUP_SUBSCRIPTIONS_MAX)
        {
            return Err(format!(
                "consumer group {} subscribes to {} topics in the heartbeat; at most \
                 {GROUP_SUBSCRIPTIONS_MAX} are taken",
                big.group_name,
                big.subscription_data_set.len()
            ));
        }
        let producing =
            |group: &str| self.producers.get(group).is_some_and(|m| m.contains_key(&conn));
        let consuming =
            |group: &str| self.consumers.get(group).is_some_and(|g| g.members.contains_key(&conn));
        let joining: BTreeSet<(bool, &str)> = producers
            .iter()
            .filter(|p| !producing(&p.group_name))
            .map(|p| (true, p.group_name.as_str()))
            .chain(
                consumers
                    .iter()
                    .filter(|c| !consuming(&c.group_name))
                    .map(|c| (false, c.group_name.as_str())),
            )
            .collect();
        let held = self.held.get(&conn).copied().unwrap_or(0);
        if held + joining.len() > CONNECTION_GROUPS_MAX {
            return Err(format!(
                "the connection belongs to {held} groups and the heartbeat would add {}; a \
                 connection belongs to at most {CONNECTION_GROUPS_MAX}",
                joining.len()
            ));
        }
        Ok(())
    }

    /// Records a heartbeat. `notify(group)` says whether the group's members want change
    /// notices. Returns whether any consumer group's subscriptions changed.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        caller: &Caller<'_>,
        data: &HeartbeatData,
        notify: &dyn Fn(&str) -> bool,
    ) -> bool {
        let member = Member {
            client_id: data.client_id.clone(),
            language: caller.language.to_owned(),
            version: caller.version,
            last_update: now,
        };
        for producer in &data.producer_data_set {
            let group = self.producers.entry(producer.group_name.clone()).or_default();
            if group.insert(caller.conn, member.clone()).is_none() {
                *self.held.entry(caller.conn).or_insert(0) += 1;
            }
        }
        let mut subscriptions_changed = false;
        for consumer in &data.consumer_data_set {
            let group = self.consumers.entry(consumer.group_name.clone()).or_default();
            group.consume_type.clone_from(&consumer.consume_type);
            group.message_model.clone_from(&consumer.message_model);
            group.consume_from_where.clone_from(&consumer.consume_from_where);
            group.notify = notify(&consumer.group_name);
            let joined = group.members.insert(caller.conn, member.clone()).is_none();
            if joined {
                *self.held.entry(caller.conn).or_insert(0) += 1;
            }
            let subs: BTreeMap<String, SubscriptionData> = consumer
                .subscription_data_set
                .iter()
                .map(|sub| (sub.topic.clone(), sub.clone()))
                .collect();
            let changed = subs_differ(&group.subscriptions, &subs);
            if changed {
                group.subscriptions = subs;
                subscriptions_changed = true;
            }
            if (joined || changed) && group.notify {
                let conns = group.members.keys().copied().collect();
                let group = consumer.group_name.clone();
                self.actions.push_back(ClientAction::NotifyIdsChanged { group, conns });
            }
        }
        subscriptions_changed
    }

    /// UNREGISTER_CLIENT: the connection leaves the named groups.
    pub fn unregister(&mut self, conn: ConnId, producer: Option<&str>, consumer: Option<&str>) {
        if let Some(group) = producer {
            self.leave_producer(conn, group);
        }
        if let Some(group) = consumer {
            self.leave_consumer(conn, group);
        }
    }

    /// The connection closed: it leaves every group.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let producers: Vec<String> = self.producers.keys().cloned().collect();
        for group in producers {
            self.leave_producer(conn, &group);
        }
        let consumers: Vec<String> = self.consumers.keys().cloned().collect();
        for group in consumers {
            self.leave_consumer(conn, &group);
        }
    }

    fn leave_producer(&mut self, conn: ConnId, group: &str) {
        let Some(members) = self.producers.get_mut(group) else { return };
        let was_member = members.remove(&conn).is_some();
        if members.is_empty() {
            self.producers.remove(group);
        }
        if was_member {
            self.left(conn);
        }
    }

    /// `conn` left one of its groups.
    fn left(&mut self, conn: ConnId) {
        if let Some(held) = self.held.get_mut(&conn) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&conn);
            }
        }
    }

    fn leave_consumer(&mut self, conn: ConnId, group_name: &str) {
        let Some(group) = self.consumers.get_mut(group_name) else { return };
        if group.members.remove(&conn).is_none() {
            return;
        }
        self.left(conn);
        let Some(group) = self.consumers.get_mut(group_name) else { return };
        if group.members.is_empty() {
            self.consumers.remove(group_name);
            self.actions.push_back(ClientAction::GroupGone(group_name.to_owned()));
        } else if group.notify {
            let conns = group.members.keys().copied().collect();
            let group = group_name.to_owned();
            self.actions.push_back(ClientAction::NotifyIdsChanged { group, conns });
        }
    }

    /// Drops connections silent for longer than the expiry, closing them.
    pub fn tick(&mut self, now: Millis) {
        let mut silent = BTreeSet::new();
        let members = self
            .consumers
            .values()
            .flat_map(|g| g.members.iter())
            .chain(self.producers.values().flat_map(|m| m.iter()));
        for (conn, member) in members {
            if now.saturating_sub(member.last_update) > self.expired_ms {
                silent.insert(*conn);
            }
        }
        for conn in silent {
            self.connection_closed(conn);
            self.actions.push_back(ClientAction::Close(conn));
        }
    }

    /// When `tick` next has something to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let consumers = self.consumers.values().flat_map(|g| g.members.values());
        let producers = self.producers.values().flat_map(|m| m.values());
        consumers.chain(producers).map(|m| m.last_update + self.expired_ms + 1).min()
    }

    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.actions.pop_front()
    }

    pub fn consumer_group(&self, group: &str) -> Option<&ConsumerGroup> {
        self.consumers.get(group)
    }

    /// The client ids of a consumer group's members, sorted (GET_CONSUMER_LIST_BY_GROUP).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let Some(group) = self.consumers.get(group) else { return Vec::new() };
        let ids: BTreeSet<&str> = group.members.values().map(|m| m.client_id.as_str()).collect();
        ids.into_iter().map(str::to_owned).collect()
    }

    /// A group's subscription to `topic`, as its members last described it.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<&SubscriptionData> {
        self.consumers.get(group)?.subscriptions.get(topic)
    }

    /// The producer connections of a group (for transaction check-backs).
    pub fn producer_conns(&self, group: &str) -> Vec<ConnId> {
        self.producers.get(group).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// The connection of the producer client `client_id`, the one it heartbeated last when it
    /// has several (`ProducerManager.findChannel`: where a reply to its request goes).
    pub fn producer_conn_of(&self, client_id: &str) -> Option<ConnId> {
        let members = self.producers.values().flat_map(|group| group.iter());
        let mine = members.filter(|(_, member)| member.client_id == client_id);
        mine.max_by_key(|(_, member)| member.last_update).map(|(conn, _)| *conn)
    }

    /// A producer group's members by connection (GET_PRODUCER_CONNECTION_LIST).
    pub fn producer_group(&self, group: &str) -> Option<&BTreeMap<ConnId, Member>> {
        self.producers.get(group)
    }

    /// The consumer groups whose members subscribe to `topic`.
    pub fn groups_subscribing<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> {
        self.consumers
            .iter()
            .filter(move |(_, group)| group.subscriptions.contains_key(topic))
            .map(|(name, _)| name.as_str())
    }

    pub fn consumer_group_names(&self) -> impl Iterator<Item = &str> {
        self.consumers.keys().map(String::as_str)
    }

    pub fn producer_group_count(&self) -> usize {
        self.producers.len()
    }

    /// No group is kept without members, and each connection's count of groups is theirs.
    pub fn check_invariants(&self) {
        let mut held: BTreeMap<ConnId, usize> = BTreeMap::new();
        for (name, group) in &self.consumers {
            assert!(!group.members.is_empty(), "consumer group {name} kept without members");
            group.members.keys().for_each(|conn| *held.entry(*conn).or_insert(0) += 1);
        }
        for (name, members) in &self.producers {
            assert!(!members.is_empty(), "producer group {name} kept without members");
            members.keys().for_each(|conn| *held.entry(*conn).or_insert(0) += 1);
        }
        assert_eq!(held, self.held, "groups held per connection");
    }
}

/// Subscriptions differ when topics or expressions do; RocketMQ compares the topic sets and
/// each subscription's `subVersion`-independent content.
fn subs_differ(
    old: &BTreeMap<String, SubscriptionData>,
    new: &BTreeMap<String, SubscriptionData>,
) -> bool {
    old.len() != new.len()
        || old.iter().zip(new.iter()).any(|((ot, o), (nt, n))| {
            ot != nt
                || o.sub_string != n.sub_string
                || o.expression_type != n.expression_type
                || o.code_set != n.code_set
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(group: &str, topic: &str, expression: &str) -> HeartbeatData {
        HeartbeatData {
            client_id: format!("client-{group}"),
            consumer_data_set: vec![ConsumerData {
                group_name: group.to_owned(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: "CLUSTERING".into(),
                consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
                subscription_data_set: vec![SubscriptionData {
                    topic: topic.to_owned(),
                    sub_string: expression.to_owned(),
                    ..SubscriptionData::default()
                }],
                unit_mode: false,
            }],
            producer_data_set: vec![],
        }
    }

    fn caller(conn: ConnId) -> Caller<'static> {
        Caller { conn, language: "JAVA", version: 479 }
    }

    fn drain(registry: &mut ClientRegistry) -> Vec<ClientAction> {
        std::iter::from_fn(|| registry.poll_action()).collect()
    }

    #[test]
    fn joining_and_leaving_notify_the_group() {
        let mut registry = ClientRegistry::new(CHANNEL_EXPIRED_DEFAULT_MS);
        let yes = |_: &str| true;
        registry.heartbeat(1, &caller(1), &consumer("G", "T", "*"), &yes);
        assert_eq!(
            drain(&mut registry),
            vec![ClientAction::NotifyIdsChanged { group: "G".into(), conns: vec![1] }]
        );
        // A repeated heartbeat changes nothing and notifies nobody.
        registry.heartbeat(2, &caller(1), &consumer("G", "T", "*"), &yes);
        assert!(drain(&mut registry).is_empty());
        let mut second = consumer("G", "T", "*");
        second.client_id = "other".into();
        registry.heartbeat(3, &caller(2), &second, &yes);
        assert_eq!(
            drain(&mut registry),
            vec![ClientAction::NotifyIdsChanged { group: "G".into(), conns: vec![1, 2] }]
        );
        assert_eq!(registry.consumer_ids("G"), vec!["client-G".to_owned(), "other".to_owned()]);
        registry.connection_closed(1);
        assert_eq!(
            drain(&mut registry),
            vec![ClientAction::NotifyIdsChanged { group: "G".into(), conns: vec![2] }]
        );
        registry.unregister(2, None, Some("G"));
        assert_eq!(
            drain(&mut registry),
            vec![ClientAction::GroupGone("G".into())],
            "nobody is left to tell; the group's filters die"
        );
        assert!(registry.consumer_group("G").is_none());
        registry.check_invariants();
    }

    #[test]
    fn a_changed_subscription_is_kept_and_announced() {
        let mut registry = ClientRegistry::new(CHANNEL_EXPIRED_DEFAULT_MS);
        let no = |_: &str| false;
        registry.heartbeat(1, &caller(1), &consumer("G", "T", "*"), &no);
        assert!(registry.heartbeat(2, &caller(1), &consumer("G", "T", "a || b"), &no));
        assert_eq!(registry.subscription("G", "T").unwrap().sub_string, "a || b");
        assert!(drain(&mut registry).is_empty(), "the group asked not to be told");
    }

    #[test]
    fn heartbeats_of_other_languages_parse() {
        let cpp = r#"{"clientID":"12177-127.0.0.1@resume1","consumerDataSet":[{"consumeFromWhere":0,
            "consumeType":1,"groupName":"G","messageModel":1,"subscriptionDataSet":[{"subString":"*",
            "subVersion":"1795","topic":"T"}]}],"producerDataSet":[{"groupName":"P"}]}"#;
        let data: HeartbeatData = serde_json::from_str(cpp).unwrap();
        assert_eq!(data.consumer_data_set[0].consume_type, "1");
        assert_eq!(data.consumer_data_set[0].subscription_data_set[0].sub_version, 1795);
        let pull_only = r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","consumeType":0}]}"#;
        let data: HeartbeatData = serde_json::from_str(pull_only).unwrap();
        assert!(data.consumer_data_set[0].subscription_data_set.is_empty());
    }

    #[test]
    fn silent_clients_expire() {
        let mut registry = ClientRegistry::new(100);
        let yes = |_: &str| true;
        let mut data = consumer("G", "T", "*");
        data.producer_data_set.push(ProducerData { group_name: "P".into() });
        registry.heartbeat(1_000, &caller(7), &data, &yes);
        drain(&mut registry);
        assert_eq!(registry.poll_timeout(), Some(1_101));
        registry.tick(1_100);
        assert!(drain(&mut registry).is_empty());
        registry.tick(1_101);
        assert_eq!(
            drain(&mut registry),
            vec![ClientAction::GroupGone("G".into()), ClientAction::Close(7)]
        );
        assert!(registry.producer_conns("P").is_empty());
        assert_eq!(registry.poll_timeout(), None);
        registry.check_invariants();
    }

    #[test]
    fn a_reply_finds_the_connection_its_requester_heartbeated_last() {
        let mut registry = ClientRegistry::new(CHANNEL_EXPIRED_DEFAULT_MS);
        let producer = |client: &str| HeartbeatData {
            client_id: client.into(),
            producer_data_set: vec![ProducerData { group_name: "P".into() }],
            ..HeartbeatData::default()
        };
        let yes = |_: &str| true;
        registry.heartbeat(1_000, &caller(1), &producer("requester"), &yes);
        registry.heartbeat(1_000, &caller(2), &producer("other"), &yes);
        assert_eq!(registry.producer_conn_of("requester"), Some(1));
        // The requester reconnected: its newer connection is the one to reach it on.
        registry.heartbeat(2_000, &caller(3), &producer("requester"), &yes);
        assert_eq!(registry.producer_conn_of("requester"), Some(3));
        registry.connection_closed(3);
        assert_eq!(registry.producer_conn_of("requester"), Some(1));
        assert_eq!(registry.producer_conn_of("nobody"), None);
        registry.check_invariants();
    }

    /// A heartbeat with `producers` producer groups and `consumers` consumer groups named
    /// from `first` on, each consumer subscribing to `topics` topics.
    fn groups(first: usize, producers: usize, consumers: usize, topics: usize) -> HeartbeatData {
        let mut data = HeartbeatData { client_id: "c".into(), ..HeartbeatData::default() };
        for n in first..first + producers {
            data.producer_data_set.push(ProducerData { group_name: format!("P{n}") });
        }
        for n in first..first + consumers {
            let mut one = consumer(&format!("G{n}"), "T0", "*").consumer_data_set.remove(0);
            one.subscription_data_set = (0..topics)
                .map(|t| SubscriptionData { topic: format!("T{t}"), ..SubscriptionData::default() })
                .collect();
            data.consumer_data_set.push(one);
        }
        data
    }

    #[test]
    fn heartbeats_are_bounded_in_groups_subscriptions_and_groups_per_connection() {
        let mut registry = ClientRegistry::new(CHANNEL_EXPIRED_DEFAULT_MS);
        let yes = |_: &str| true;
        let flood = groups(0, 0, 20_000, 1);
        let why = registry.admit(1, &flood).unwrap_err();
        assert!(why.contains("20000") && why.contains("256"), "{why}");
        let wide = groups(0, 0, 1, GROUP_SUBSCRIPTIONS_MAX + 1);
        assert!(registry.admit(1, &wide).unwrap_err().contains("G0 subscribes to 1025"));

        // Up to the bound in one heartbeat, and again the same groups: nothing new is held.
        let full = groups(0, 128, 128, 2);
        assert_eq!(registry.admit(1, &full), Ok(()));
        registry.heartbeat(1, &caller(1), &full, &yes);
        assert_eq!(registry.admit(1, &full), Ok(()));
        // One more group on that connection is refused; on another connection it is taken.
        let more = groups(500, 1, 0, 0);
        let why = registry.admit(1, &more).unwrap_err();
        assert!(why.contains("belongs to 256 groups"), "{why}");
        assert_eq!(registry.admit(2, &more), Ok(()));
        registry.check_invariants();
        // Leaving frees the room.
        registry.unregister(1, Some("P0"), None);
        assert_eq!(registry.admit(1, &more), Ok(()));
        registry.connection_closed(1);
        registry.check_invariants();
        assert_eq!(registry.admit(1, &full), Ok(()));
    }
}
