//! Consumer offsets (`ConsumerOffsetManager`): the next offset each consumer group will read
//! from each queue, as committed by its members. Kept as `config/consumerOffset.json`:
//! `{"offsetTable":{"topic@group":{0:123,1:456}}}` (fastjson's bare integer keys).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Separates topic and group in the table's keys.
pub const KEY_SEPARATOR: char = '@';

/// The offset table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsets {
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}{KEY_SEPARATOR}{group}")
}

impl ConsumerOffsets {
    /// Records a committed offset. Returns true when the table changed.
    pub fn commit(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) -> bool {
        let queues = self.offset_table.entry(key(topic, group)).or_default();
        queues.insert(queue_id, offset) != Some(offset)
    }

    /// The committed offset, if the group ever committed one for this queue.
    pub fn query(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.offset_table.get(&key(topic, group))?.get(&queue_id).copied()
    }

    /// Forgets every group's offsets of `topic`.
    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let before = self.offset_table.len();
        self.offset_table
            .retain(|k, _| k.rsplit_once(KEY_SEPARATOR).is_none_or(|(t, _)| t != topic));
        self.offset_table.len() != before
    }

    /// The groups that committed offsets for `topic`.
    pub fn groups_of(&self, topic: &str) -> Vec<String> {
        self.offset_table
            .keys()
            .filter_map(|k| k.split_once(KEY_SEPARATOR))
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_query() {
        let mut offsets = ConsumerOffsets::default();
        assert!(offsets.commit("T", "G", 0, 5));
        assert!(!offsets.commit("T", "G", 0, 5));
        assert!(offsets.commit("T", "G", 0, 3), "a client may move its offset back");
        assert_eq!(offsets.query("T", "G", 0), Some(3));
        assert_eq!(offsets.query("T", "G", 1), None);
        assert_eq!(offsets.groups_of("T"), vec!["G".to_owned()]);
        assert!(offsets.remove_topic("T"));
        assert_eq!(offsets.query("T", "G", 0), None);
    }

    #[test]
    fn json_matches_rocketmq() {
        let mut offsets = ConsumerOffsets::default();
        offsets.commit("TopicTest", "please_rename_unique_group_name", 0, 250);
        let json = serde_json::to_string(&offsets).unwrap();
        assert_eq!(
            json,
            r#"{"offsetTable":{"TopicTest@please_rename_unique_group_name":{"0":250}}}"#
        );
    }
}
