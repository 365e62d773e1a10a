//! The broker's topic table (`TopicConfigManager`): which topics it serves, with how many
//! queues and what permissions, and the data version the NameServer compares.
//!
//! Topics appear four ways: system topics at startup, UPDATE_AND_CREATE_TOPIC from an admin,
//! a send to an unknown topic that names a default topic to copy (`TBW102`, when
//! `autoCreateTopicEnable`), and the retry and dead-letter topics a consumer group needs.
//! Every change moves the data version on; the shell persists `config/topics.json` and
//! re-registers with the NameServers when it does.

use std::collections::BTreeMap;

use crate::model::{perm, DataVersion, TopicConfig, TopicConfigWrapper};
use crate::Millis;

/// The topic table and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicConfig>,
    version: DataVersion,
}

/// The topics RocketMQ's `TopicValidator` counts as system topics whatever the broker.
const FIXED_SYSTEM_TOPICS: [&str; 10] = [
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
];

/// What GET_SYSTEM_TOPIC_LIST_FROM_BROKER answers, sorted: RocketMQ's fixed system topics
/// and those its broker adds for its cluster `cluster` and name `broker` (the cluster's and
/// the broker's own topics, the reply and revive topics, the broker-member sync topic, and the
/// timer wheel's when it runs). Names, not topics the broker holds: a dashboard uses them to
/// tell system topics from the others.
pub fn system_topic_names(cluster: &str, broker: &str, timer_wheel: bool) -> Vec<String> {
    let mut names: std::collections::BTreeSet<String> =
        FIXED_SYSTEM_TOPICS.iter().map(|t| (*t).to_owned()).collect();
    names.extend([
        cluster.to_owned(),
        broker.to_owned(),
        format!("{cluster}_REPLY_TOPIC"),
        format!("{}{cluster}", super::pop::REVIVE_TOPIC_PREFIX),
        format!("rmq_sys_SYNC_BROKER_MEMBER_{broker}"),
    ]);
    if timer_wheel {
        names.insert(super::timer::TIMER_TOPIC.to_owned());
    }
    names.into_iter().collect()
}

/// A topic with `queues` read and write queues and permission `perm`.
pub fn topic_config(name: &str, queues: i32, perm: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_owned(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        ..TopicConfig::default()
    }
}

impl TopicTable {
    /// A table read back from `topics.json`.
    pub fn from_wrapper(wrapper: TopicConfigWrapper) -> TopicTable {
        TopicTable { topics: wrapper.topic_config_table, version: wrapper.data_version }
    }

    /// What `topics.json` and REGISTER_BROKER carry.
    pub fn wrapper(&self) -> TopicConfigWrapper {
        TopicConfigWrapper {
            data_version: self.version.clone(),
            topic_config_table: self.topics.clone(),
        }
    }

    pub fn version(&self) -> &DataVersion {
        &self.version
    }

    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.topics.get(topic)
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Moves the version on with no topic changed: the broker's permission, which every
    /// registered topic carries, changed (RocketMQ does the same), so the NameServer takes
    /// the next registration's queues.
    pub fn touch(&mut self, now: Millis) {
        self.bump(now);
    }

    fn bump(&mut self, now: Millis) {
        self.version.counter += 1;
        self.version.timestamp = now as i64;
    }

    /// Adds the topics not yet in the table (the system topics a broker always has, a topic
    /// a send creates), keeping any already there. Returns true when one was added.
    pub fn ensure(&mut self, configs: impl IntoIterator<Item = TopicConfig>, now: Millis) -> bool {
        let mut added = false;
        for config in configs {
            if !self.topics.contains_key(&config.topic_name) {
                self.topics.insert(config.topic_name.clone(), config);
                added = true;
            }
        }
        if added {
            self.bump(now);
        }
        added
    }

    /// The topics whose messages a store holds (`queues`: each consume queue's topic and
    /// id) but this table lacks, each with queues up to the highest id held, readable and
    /// writable. A broker that becomes master adds them: a slave copies its master's table
    /// only every few seconds, and a topic created since would be lost with the switch
    /// (RocketMQ #9804) though its messages were replicated.
    pub fn missing_from<'a>(
        &self,
        queues: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Vec<TopicConfig> {
        let mut held: BTreeMap<&str, i32> = BTreeMap::new();
        for (topic, queue_id) in queues {
            if !self.topics.contains_key(topic) && queue_id >= 0 {
                let count = held.entry(topic).or_insert(0);
                *count = (*count).max(queue_id.saturating_add(1));
            }
        }
        let read_write = perm::READ | perm::WRITE;
        held.into_iter().map(|(topic, queues)| topic_config(topic, queues, read_write)).collect()
    }

    /// Creates or replaces a topic. Returns true when the table changed.
    pub fn put(&mut self, config: TopicConfig, now: Millis) -> bool {
        if self.topics.get(&config.topic_name) == Some(&config) {
            return false;
        }
        self.topics.insert(config.topic_name.clone(), config);
        self.bump(now);
        true
    }

    /// Marks ordered the topics the NameServer's ORDER_TOPIC_CONFIG names
    /// (`updateOrderTopicConfig`, which never clears the mark: a topic created ordered stays
    /// so, and NameServers whose tables differ cannot flip it back and forth). Returns true
    /// when one changed.
    pub fn mark_ordered<'a>(
        &mut self,
        ordered: impl IntoIterator<Item = &'a String>,
        now: Millis,
    ) -> bool {
        let mut changed = false;
        for name in ordered {
            if let Some(config) = self.topics.get_mut(name).filter(|c| !c.order) {
                config.order = true;
                changed = true;
            }
        }
        if changed {
            self.bump(now);
        }
        changed
    }

    /// Removes a topic; returns it if it was there.
    pub fn remove(&mut self, topic: &str, now: Millis) -> Option<TopicConfig> {
        let removed = self.topics.remove(topic);
        if removed.is_some() {
            self.bump(now);
        }
        removed
    }

    /// The config for a send to an unknown `topic` naming `default_topic`
    /// (`createTopicInSendMessageMethod`): the new topic copies the default topic's settings
    /// when that topic lets itself be inherited, with `min(client_queues, default's write
    /// queues)` queues; or why there can be none. The caller adds it with [`TopicTable::ensure`].
    pub fn config_from_default(
        &self,
        topic: &str,
        default_topic: &str,
        client_queues: i32,
        topic_sys_flag: i32,
    ) -> Result<TopicConfig, String> {
        let Some(default) = self.topics.get(default_topic) else {
            return Err(format!(
                "topic[{topic}] not exist, apply first please! (default topic {default_topic} is not on this broker)"
            ));
        };
        if default.perm & perm::INHERIT == 0 {
            return Err(format!(
                "topic[{topic}] not exist, apply first please! (default topic {default_topic} may not be inherited; enable autoCreateTopicEnable or create the topic)"
            ));
        }
        let queues = client_queues.clamp(0, default.write_queue_nums);
        Ok(TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: default.perm & !perm::INHERIT,
            topic_filter_type: default.topic_filter_type.clone(),
            topic_sys_flag,
            ..TopicConfig::default()
        })
    }

    /// The topic, created with `queues` queues and `perm` when absent
    /// (`createTopicInSendMessageBackMethod`, for retry and dead-letter topics). Returns the
    /// topic and whether it was created now.
    pub fn create_if_absent(
        &mut self,
        topic: &str,
        queues: i32,
        perm: i32,
        topic_sys_flag: i32,
        now: Millis,
    ) -> (&TopicConfig, bool) {
        let created = !self.topics.contains_key(topic);
        if created {
            let config = TopicConfig { topic_sys_flag, ..topic_config(topic, queues, perm) };
            self.topics.insert(topic.to_owned(), config);
            self.bump(now);
        }
        (&self.topics[topic], created)
    }

    /// Every topic is filed under its own name with sane queue counts.
    pub fn check_invariants(&self) {
        for (name, config) in &self.topics {
            assert_eq!(name, &config.topic_name, "topic filed under another name");
            assert!(config.read_queue_nums >= 0 && config.write_queue_nums >= 0, "{config:?}");
        }
        assert!(self.version.counter >= 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topic_names_are_rocketmqs_for_the_cluster_and_broker() {
        let names = system_topic_names("C1", "broker-a", true);
        for name in [
            "TBW102",
            "SCHEDULE_TOPIC_XXXX",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "C1",
            "broker-a",
            "C1_REPLY_TOPIC",
            "rmq_sys_REVIVE_LOG_C1",
            "rmq_sys_SYNC_BROKER_MEMBER_broker-a",
            "rmq_sys_wheel_timer",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        assert_eq!(names.len(), 16);
        let without_timer = system_topic_names("C1", "broker-a", false);
        assert!(!without_timer.iter().any(|n| n == "rmq_sys_wheel_timer"));
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
    }

    #[test]
    fn order_topic_config_marks_topics_ordered_and_never_clears_a_mark() {
        let mut table = TopicTable::default();
        let rw = perm::READ | perm::WRITE;
        table.ensure([topic_config("A", 4, rw), topic_config("B", 4, rw)], 1);
        let (a, b, gone) = ("A".to_owned(), "B".to_owned(), "Gone".to_owned());
        assert!(table.mark_ordered([&a, &gone], 2));
        assert!(table.get("A").unwrap().order && !table.get("B").unwrap().order);
        assert!(!table.mark_ordered([&a], 3), "nothing new: no change, no version bump");
        assert!(table.mark_ordered([&b], 4));
        assert!(table.get("A").unwrap().order, "a table without A leaves A ordered");
        assert!(table.get("Gone").is_none(), "a named topic the broker lacks is not created");
    }

    #[test]
    fn the_topics_a_store_holds_that_the_table_lacks_are_found() {
        let mut table = TopicTable::default();
        table.ensure([topic_config("Known", 8, perm::READ | perm::WRITE)], 1);
        let queues = [("Known", 9), ("Fresh", 0), ("Fresh", 3), ("Fresh", 1), ("Other", 0)];
        let missing = table.missing_from(queues);
        let read_write = perm::READ | perm::WRITE;
        assert_eq!(
            missing,
            [topic_config("Fresh", 4, read_write), topic_config("Other", 1, read_write)],
            "a known topic is left as it is"
        );
        assert!(table.missing_from([("Known", 0)]).is_empty());
    }

    fn table_with_tbw102() -> TopicTable {
        let mut table = TopicTable::default();
        table.ensure([topic_config("TBW102", 8, perm::INHERIT | perm::READ | perm::WRITE)], 1);
        table
    }

    #[test]
    fn auto_creation_copies_the_default_topic() {
        let mut table = table_with_tbw102();
        let before = table.version().counter;
        let config = table.config_from_default("Orders", "TBW102", 4, 0).unwrap();
        assert!(table.ensure([config.clone()], 7));
        assert_eq!(table.get("Orders"), Some(&config));
        assert_eq!((config.read_queue_nums, config.write_queue_nums), (4, 4));
        assert_eq!(config.perm, perm::READ | perm::WRITE);
        assert_eq!(table.version().counter, before + 1);
        assert_eq!(table.version().timestamp, 7);
        // More queues than the default topic has are not granted.
        let config = table.config_from_default("Big", "TBW102", 64, 0).unwrap();
        assert_eq!(config.write_queue_nums, 8);
        let again = table.config_from_default("Orders", "TBW102", 4, 0).unwrap();
        assert!(!table.ensure([again], 9));
        table.check_invariants();
    }

    #[test]
    fn auto_creation_is_refused_without_an_inheritable_default() {
        let mut table = TopicTable::default();
        let err = table.config_from_default("Orders", "TBW102", 4, 0).unwrap_err();
        assert!(err.contains("not exist, apply first"), "{err}");
        table.ensure([topic_config("TBW102", 8, perm::READ | perm::WRITE)], 1);
        let err = table.config_from_default("Orders", "TBW102", 4, 0).unwrap_err();
        assert!(err.contains("autoCreateTopicEnable"), "{err}");
    }

    #[test]
    fn changes_move_the_version_and_noops_do_not() {
        let mut table = table_with_tbw102();
        let v = table.version().counter;
        assert!(!table.ensure([topic_config("TBW102", 1, 6)], 2));
        assert!(table.put(topic_config("A", 2, 6), 3));
        assert!(!table.put(topic_config("A", 2, 6), 4));
        assert!(table.remove("A", 5).is_some());
        assert!(table.remove("A", 6).is_none());
        assert_eq!(table.version().counter, v + 2);
        let (retry, created) = table.create_if_absent("%RETRY%g", 1, 6, 0, 7);
        assert_eq!(retry.read_queue_nums, 1);
        assert!(created);
        let round = TopicTable::from_wrapper(table.wrapper());
        assert_eq!(round, table);
    }
}
