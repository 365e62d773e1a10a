//! Consumer offsets (`ConsumerOffsetManager`): the next offset each consumer group will read
//! from each queue, as committed by its members. Kept as `config/consumerOffset.json`:
//! `{"offsetTable":{"topic@group":{0:123,1:456}}}` (fastjson's bare integer keys).
//!
//! An operator's reset (INVOKE_BROKER_TO_RESET_OFFSET, RocketMQ 5's server-side reset) sets
//! the committed offset and leaves a pending reset per queue, in memory only as in RocketMQ:
//! the group's next pull of the queue takes it (and is told to move there), and until then
//! the members' own commits of the queue are ignored, so that their older positions do not
//! undo it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Separates topic and group in the table's keys.
pub const KEY_SEPARATOR: char = '@';

/// The offset table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsets {
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Resets no pull has taken yet, keyed as `offset_table`.
    #[serde(skip)]
    resets: BTreeMap<String, BTreeMap<i32, i64>>,
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

    /// Records a member's commit, unless an operator's reset of the queue is pending (then
    /// it is ignored, as RocketMQ ignores it). Returns true when the table changed.
    pub fn commit_unless_reset(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
    ) -> bool {
        !self.has_reset(topic, group, queue_id) && self.commit(topic, group, queue_id, offset)
    }

    /// An operator's reset: the committed offset becomes `offset`, and stays pending until
    /// the group's next pull of the queue takes it. A negative offset or queue is ignored.
    pub fn reset(&mut self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        if queue_id < 0 || offset < 0 {
            return;
        }
        self.resets.entry(key(topic, group)).or_default().insert(queue_id, offset);
        self.commit(topic, group, queue_id, offset);
    }

    /// Whether a reset of the queue waits for the group's next pull.
    pub fn has_reset(&self, topic: &str, group: &str, queue_id: i32) -> bool {
        self.resets.get(&key(topic, group)).is_some_and(|q| q.contains_key(&queue_id))
    }

    /// The pending reset of the queue, taken by a pull (which answers the member with it).
    pub fn take_reset(&mut self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        let k = key(topic, group);
        let queues = self.resets.get_mut(&k)?;
        let offset = queues.remove(&queue_id);
        if queues.is_empty() {
            self.resets.remove(&k);
        }
        offset
    }

    /// Forgets every group's offsets of `topic`.
    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let keep = |k: &String| k.rsplit_once(KEY_SEPARATOR).is_none_or(|(t, _)| t != topic);
        self.resets.retain(|k, _| keep(k));
        let before = self.offset_table.len();
        self.offset_table.retain(|k, _| keep(k));
        self.offset_table.len() != before
    }

    /// Forgets `group`'s offsets of every topic.
    pub fn remove_group(&mut self, group: &str) -> bool {
        let keep = |k: &String| k.rsplit_once(KEY_SEPARATOR).is_none_or(|(_, g)| g != group);
        self.resets.retain(|k, _| keep(k));
        let before = self.offset_table.len();
        self.offset_table.retain(|k, _| keep(k));
        self.offset_table.len() != before
    }

    /// A pending reset is a committed offset too, and no queue's map is left empty.
    pub fn check_invariants(&self) {
        for (k, queues) in &self.resets {
            assert!(!queues.is_empty(), "an empty reset map for {k}");
            for (queue, offset) in queues {
                assert!(*offset >= 0 && *queue >= 0, "reset {k}:{queue} to {offset}");
                let committed = self.offset_table.get(k).and_then(|q| q.get(queue));
                assert!(committed.is_some(), "reset {k}:{queue} has no committed offset");
            }
        }
    }

    /// The topics `group` committed offsets for, and each one's offsets by queue.
    pub fn of_group<'a>(
        &'a self,
        group: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeMap<i32, i64>)> + 'a {
        self.offset_table.iter().filter_map(move |(k, queues)| {
            let (topic, g) = k.rsplit_once(KEY_SEPARATOR)?;
            (g == group).then_some((topic, queues))
        })
    }

    /// Gives `dest` the offsets `src` committed for `topic`; whether it had any.
    /// A reset of `dest` waiting for its next pull is dropped: the copy replaces it.
    pub fn clone_group(&mut self, src: &str, dest: &str, topic: &str) -> bool {
        let Some(queues) = self.offset_table.get(&key(topic, src)).cloned() else { return false };
        self.resets.remove(&key(topic, dest));
        self.offset_table.insert(key(topic, dest), queues);
        true
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
    fn a_reset_holds_off_commits_until_a_pull_takes_it() {
        let mut offsets = ConsumerOffsets::default();
        offsets.commit("T", "G", 0, 50);
        offsets.reset("T", "G", 0, 10);
        offsets.reset("T", "G", -1, 10);
        offsets.check_invariants();
        assert_eq!(offsets.query("T", "G", 0), Some(10));
        assert!(!offsets.commit_unless_reset("T", "G", 0, 50), "a member's older position");
        assert_eq!(offsets.query("T", "G", 0), Some(10));
        assert!(offsets.commit_unless_reset("T", "G", 1, 7), "other queues commit as before");
        assert_eq!(offsets.take_reset("T", "G", 0), Some(10));
        assert_eq!(offsets.take_reset("T", "G", 0), None, "taken once");
        assert!(offsets.commit_unless_reset("T", "G", 0, 12));
        offsets.reset("T", "G", 2, 3);
        assert!(offsets.remove_group("G"));
        assert!(!offsets.has_reset("T", "G", 2));
        offsets.check_invariants();
        let json = serde_json::to_string(&offsets).unwrap();
        assert!(!json.contains("resets"), "resets are not persisted: {json}");
    }

    #[test]
    fn a_group_is_listed_and_forgotten_across_topics() {
        let mut offsets = ConsumerOffsets::default();
        offsets.commit("T1", "G", 0, 5);
        offsets.commit("T2", "G", 1, 7);
        offsets.commit("T1", "H", 0, 9);
        let of_g: Vec<(&str, Vec<(i32, i64)>)> = offsets
            .of_group("G")
            .map(|(t, q)| (t, q.iter().map(|(k, v)| (*k, *v)).collect()))
            .collect();
        assert_eq!(of_g, vec![("T1", vec![(0, 5)]), ("T2", vec![(1, 7)])]);
        offsets.reset("T2", "C", 5, 1);
        assert!(offsets.clone_group("G", "C", "T2"));
        assert!(!offsets.has_reset("T2", "C", 5), "the copy replaces a pending reset");
        offsets.check_invariants();
        assert!(!offsets.clone_group("Nobody", "C", "T2"));
        assert_eq!(offsets.query("T2", "C", 1), Some(7));
        assert!(offsets.remove_group("G"));
        assert!(!offsets.remove_group("G"));
        assert_eq!(offsets.of_group("G").count(), 0);
        assert_eq!(offsets.query("T1", "H", 0), Some(9));
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
