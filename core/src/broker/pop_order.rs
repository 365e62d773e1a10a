//! Orderly POP's state per queue and group (RocketMQ's `ConsumerOrderInfoManager`; docs/pop.md):
//! an orderly pop writes no checkpoint. It reads a queue from the group's committed offset and
//! records what it handed out; until each of those messages is acknowledged or its invisible
//! time ran out, the queue is blocked to every other pop of the group (a pop with the same
//! `attemptId`, a client's retry of a pop whose answer it lost, gets them again). An ack
//! commits the group's offset up to the first message not acknowledged; when the invisible
//! time runs out first, the next pop reads the queue again from the committed offset: the same
//! messages, each with its count of earlier hand-outs (`orderCountInfo`, the reconsume times a
//! client gives it).
//!
//! Pure: pops, acks, changes and the clock in; what is blocked and what to commit out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pop::TopicKind;

/// RocketMQ's `CLEAN_SPAN_FROM_LAST`: a queue's state is forgotten a day after its last pop.
pub const ORDER_INFO_KEPT_MS: i64 = 24 * 3600 * 1000;

/// Messages one orderly pop of a queue may hand out (one bit each in the acked set).
pub const ORDER_MAX_OFFSETS: usize = 64;

/// A queue of a topic, for a group.
pub type OrderKey = (String, String, i32);

/// What one orderly pop of a queue handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfo {
    pub attempt_id: Option<String>,
    pub pop_time: i64,
    pub invisible_time: i64,
    /// The queue offsets handed out, ascending.
    pub offsets: Vec<i64>,
    /// An offset whose invisible time was changed: when it shows again.
    pub next_visible: BTreeMap<i64, i64>,
    /// How many times each offset was handed out before this pop.
    pub consumed: BTreeMap<i64, i32>,
    /// Bit `i`: `offsets[i]` is acknowledged.
    pub acked: u64,
}

/// What an ack of an orderly pop's message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAck {
    /// Commit the group's offset to this (the first offset not acknowledged, or past the last).
    Commit(i64),
    /// The ack names an earlier pop of the queue: nothing to do (RocketMQ's -2).
    Stale,
    /// The pop it names did not hand out that offset (RocketMQ's -1: MESSAGE_ILLEGAL).
    NotHandedOut,
    /// Nothing is known of the queue (forgotten, or lost with a restart): RocketMQ commits past
    /// the offset; commit past it only if it is the group's committed offset, so that an ack
    /// never moves the offset over a message not acknowledged.
    Unknown,
}

impl OrderInfo {
    fn acked(&self, i: usize) -> bool {
        self.acked & (1 << i) != 0
    }

    /// When offset `i` shows again.
    fn visible_at(&self, i: usize) -> i64 {
        let offset = self.offsets[i];
        let at = self.pop_time.saturating_add(self.invisible_time);
        self.next_visible.get(&offset).copied().unwrap_or(at)
    }

    /// The first offset not acknowledged, or the one past the last.
    fn next_offset(&self) -> i64 {
        let first = (0..self.offsets.len()).find(|i| !self.acked(*i));
        first.map_or_else(|| self.offsets.last().map_or(0, |o| o + 1), |i| self.offsets[i])
    }
}

/// Every queue's orderly pop state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderInfos {
    infos: BTreeMap<OrderKey, OrderInfo>,
}

impl OrderInfos {
    /// Whether a pop (`attempt_id`) must pass over the queue at `now`: messages of the last pop
    /// are neither acknowledged nor visible again, and the pop is not a retry of that one.
    pub fn blocked(&self, key: &OrderKey, attempt_id: Option<&str>, now: i64) -> bool {
        let Some(info) = self.infos.get(key) else { return false };
        if attempt_id.is_some() && info.attempt_id.as_deref() == attempt_id {
            return false;
        }
        (0..info.offsets.len()).any(|i| !info.acked(i) && now < info.visible_at(i))
    }

    /// A pop (`attempt_id`, at `pop_time`) handed out `offsets` of the queue, hidden for
    /// `invisible_time`: the times each was handed out before (0 for a new one; a retry of the
    /// same attempt keeps the counts).
    pub fn popped(
        &mut self,
        key: OrderKey,
        attempt_id: Option<&str>,
        (pop_time, invisible_time): (i64, i64),
        offsets: &[i64],
    ) -> Vec<i32> {
        let offsets: Vec<i64> = offsets.iter().take(ORDER_MAX_OFFSETS).copied().collect();
        let old = self.infos.remove(&key);
        let same_attempt = attempt_id.is_some()
            && old.as_ref().is_some_and(|o| o.attempt_id.as_deref() == attempt_id);
        let consumed: BTreeMap<i64, i32> = match &old {
            Some(old) if same_attempt => old.consumed.clone(),
            Some(old) => offsets
                .iter()
                .filter(|o| old.offsets.contains(o))
                .map(|o| (*o, old.consumed.get(o).map_or(1, |c| c.saturating_add(1))))
                .collect(),
            None => BTreeMap::new(),
        };
        let counts = offsets.iter().map(|o| consumed.get(o).copied().unwrap_or(0)).collect();
        let info = OrderInfo {
            attempt_id: attempt_id.map(str::to_owned),
            pop_time,
            invisible_time,
            offsets,
            next_visible: BTreeMap::new(),
            consumed,
            acked: 0,
        };
        self.infos.insert(key, info);
        counts
    }

    /// Offset `offset` of the pop at `pop_time` was acknowledged.
    pub fn ack(&mut self, key: &OrderKey, offset: i64, pop_time: i64) -> OrderAck {
        let Some(info) = self.infos.get_mut(key) else { return OrderAck::Unknown };
        if info.pop_time != pop_time {
            return OrderAck::Stale;
        }
        let Some(i) = info.offsets.iter().position(|o| *o == offset) else {
            return OrderAck::NotHandedOut;
        };
        info.acked |= 1 << i;
        OrderAck::Commit(info.next_offset())
    }

    /// Offset `offset` of the pop at `pop_time` shows again at `next_visible`; whether that
    /// pop is the queue's last.
    pub fn change_invisible(
        &mut self,
        key: &OrderKey,
        (offset, pop_time): (i64, i64),
        next_visible: i64,
    ) -> bool {
        match self.infos.get_mut(key) {
            Some(info) if info.pop_time == pop_time => {
                info.next_visible.insert(offset, next_visible);
                true
            }
            _ => false,
        }
    }

    /// The state of a queue, if a pop handed some of it out.
    pub fn get(&self, key: &OrderKey) -> Option<&OrderInfo> {
        self.infos.get(key)
    }

    /// Forgets queues last popped [`ORDER_INFO_KEPT_MS`] before `now` or earlier.
    pub fn forget_old(&mut self, now: i64) {
        self.infos.retain(|_, info| now.saturating_sub(info.pop_time) < ORDER_INFO_KEPT_MS);
    }

    /// As `config/consumerOrderInfo.json` holds it.
    pub fn to_table(&self) -> OrderInfoTable {
        let mut table: BTreeMap<String, BTreeMap<i32, OrderInfoJson>> = BTreeMap::new();
        for ((topic, group, queue_id), info) in &self.infos {
            let first = info.offsets.first().copied().unwrap_or(0);
            let rest = info.offsets.iter().skip(1).map(|o| o - first);
            let json = OrderInfoJson {
                pop_time: info.pop_time,
                invisible_time: Some(info.invisible_time),
                offset_list: info.offsets.first().into_iter().copied().chain(rest).collect(),
                offset_next_visible_time: Some(info.next_visible.clone()),
                offset_consumed_count: Some(info.consumed.clone()),
                last_consume_timestamp: info.pop_time,
                commit_offset_bit: info.acked as i64,
                attempt_id: info.attempt_id.clone(),
            };
            table.entry(format!("{topic}@{group}")).or_default().insert(*queue_id, json);
        }
        OrderInfoTable { table }
    }

    /// From `config/consumerOrderInfo.json`; a queue whose state does not hold together (no
    /// `topic@group` key, more offsets than [`ORDER_MAX_OFFSETS`], offsets not ascending, counts
    /// or times for offsets not handed out) is left out: it is not blocked.
    pub fn from_table(table: OrderInfoTable) -> OrderInfos {
        let mut infos = BTreeMap::new();
        for (key, queues) in table.table {
            let Some((topic, group)) = key.split_once('@') else { continue };
            for (queue_id, json) in queues {
                let Some(info) = json.into_info() else { continue };
                infos.insert((topic.to_owned(), group.to_owned(), queue_id), info);
            }
        }
        OrderInfos { infos }
    }

    pub fn check_invariants(&self) {
        for (key, info) in &self.infos {
            assert!(info.offsets.len() <= ORDER_MAX_OFFSETS, "{key:?}: too many offsets");
            assert!(info.offsets.windows(2).all(|w| w[0] < w[1]), "{key:?}: offsets not ascending");
            let width = info.offsets.len();
            assert!(width == 64 || info.acked >> width == 0, "{key:?}: ack bits past the offsets");
            for offset in info.consumed.keys().chain(info.next_visible.keys()) {
                assert!(info.offsets.contains(offset), "{key:?}: {offset} not handed out");
            }
        }
    }
}

/// `config/consumerOrderInfo.json` (RocketMQ's `ConsumerOrderInfoManager`): by `topic@group`,
/// by queue id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderInfoTable {
    pub table: BTreeMap<String, BTreeMap<i32, OrderInfoJson>>,
}

/// One queue's `OrderInfo` as RocketMQ writes it: `offsetList` is the first offset, then each
/// other's distance from it; `commitOffsetBit` the acknowledged ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrderInfoJson {
    pub pop_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invisible_time: Option<i64>,
    pub offset_list: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_next_visible_time: Option<BTreeMap<i64, i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_consumed_count: Option<BTreeMap<i64, i32>>,
    pub last_consume_timestamp: i64,
    pub commit_offset_bit: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
}

impl OrderInfoJson {
    fn into_info(self) -> Option<OrderInfo> {
        let first = *self.offset_list.first()?;
        let rest = self.offset_list.iter().skip(1).map(|d| first.checked_add(*d));
        let offsets: Vec<i64> = std::iter::once(Some(first)).chain(rest).collect::<Option<_>>()?;
        let ascending = offsets.windows(2).all(|w| w[0] < w[1]);
        if offsets.len() > ORDER_MAX_OFFSETS || !ascending {
            return None;
        }
        let info = OrderInfo {
            attempt_id: self.attempt_id,
            pop_time: self.pop_time,
            invisible_time: self.invisible_time.unwrap_or(0),
            next_visible: self.offset_next_visible_time.unwrap_or_default(),
            consumed: self.offset_consumed_count.unwrap_or_default(),
            acked: self.commit_offset_bit as u64,
            offsets,
        };
        let width = info.offsets.len();
        let bits_fit = width == 64 || info.acked >> width == 0;
        let known = info.consumed.keys().chain(info.next_visible.keys());
        let handed_out = known.into_iter().all(|o| info.offsets.contains(o));
        (bits_fit && handed_out).then_some(info)
    }
}

/// One queue an orderly pop read: its topic's kind, its id, and each message's offset with its
/// count of earlier hand-outs.
pub type QueueCounts = (TopicKind, i32, Vec<(i64, i32)>);

/// `orderCountInfo` of a pop: for each queue read, each message's count of earlier hand-outs
/// (`{retry} qo{queueId}%{offset} {count}`), then the queue's least (`{retry} {queueId}
/// {count}`), all joined by `;`.
pub fn order_count_info(reads: &[QueueCounts]) -> String {
    let mut items = Vec::new();
    for (kind, queue_id, counts) in reads {
        let code = kind.code();
        for (offset, count) in counts {
            items.push(format!("{code} qo{queue_id}%{offset} {count}"));
        }
        let least = counts.iter().map(|(_, c)| *c).min().unwrap_or(0);
        items.push(format!("{code} {queue_id} {least}"));
    }
    items.join(";")
}

/// The count `orderCountInfo` gives the message at `offset` of queue `queue_id` (a topic of
/// `kind`): its own, else its queue's; `None` when it names neither, or does not parse.
pub fn order_count_of(info: &str, kind: TopicKind, queue_id: i32, offset: i64) -> Option<i32> {
    let code = kind.code();
    let (own, queue) = (format!("qo{queue_id}%{offset}"), queue_id.to_string());
    let mut queue_count = None;
    for item in info.split(';') {
        let mut fields = item.split(' ');
        let (Some(retry), Some(key), Some(count), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        if retry != code {
            continue;
        }
        let count = count.parse().ok()?;
        if key == own {
            return Some(count);
        }
        if key == queue {
            queue_count = Some(count);
        }
    }
    queue_count
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> OrderKey {
        ("T".into(), "G".into(), 1)
    }

    #[test]
    fn a_queue_is_blocked_until_acknowledged_or_visible_again() {
        let mut infos = OrderInfos::default();
        assert!(!infos.blocked(&key(), Some("a"), 0));
        assert_eq!(infos.popped(key(), Some("a"), (1_000, 5_000), &[10, 11, 12]), [0, 0, 0]);
        assert!(infos.blocked(&key(), Some("b"), 2_000), "another attempt waits");
        assert!(!infos.blocked(&key(), Some("a"), 2_000), "the same attempt pops again");
        assert!(!infos.blocked(&key(), Some("b"), 6_000), "invisible time over");
        assert_eq!(infos.ack(&key(), 11, 1_000), OrderAck::Commit(10), "10 still out");
        assert_eq!(infos.ack(&key(), 10, 1_000), OrderAck::Commit(12));
        assert_eq!(infos.ack(&key(), 10, 999), OrderAck::Stale);
        assert_eq!(infos.ack(&key(), 13, 1_000), OrderAck::NotHandedOut);
        assert_eq!(infos.ack(&key(), 12, 1_000), OrderAck::Commit(13));
        assert!(!infos.blocked(&key(), Some("b"), 2_000), "all acknowledged");
        let other = ("T".to_owned(), "G".to_owned(), 2);
        assert_eq!(infos.ack(&other, 12, 1_000), OrderAck::Unknown);
        infos.check_invariants();
    }

    #[test]
    fn messages_popped_again_count_their_earlier_hand_outs() {
        let mut infos = OrderInfos::default();
        infos.popped(key(), Some("a"), (0, 1_000), &[10, 11]);
        assert_eq!(infos.popped(key(), Some("b"), (2_000, 1_000), &[10, 11, 12]), [1, 1, 0]);
        assert_eq!(infos.popped(key(), Some("b"), (2_500, 1_000), &[10, 11, 12]), [1, 1, 0]);
        assert_eq!(infos.popped(key(), Some("c"), (4_000, 1_000), &[10, 11, 12]), [2, 2, 1]);
        assert!(infos.change_invisible(&key(), (10, 4_000), 60_000));
        assert!(!infos.change_invisible(&key(), (10, 2_000), 60_000), "an earlier pop's");
        assert!(infos.blocked(&key(), None, 30_000), "10 hidden longer");
        infos.check_invariants();
    }

    #[test]
    fn the_table_round_trips_in_rocketmqs_layout() {
        let mut infos = OrderInfos::default();
        infos.popped(key(), Some("a"), (1_000, 5_000), &[10, 11]);
        infos.popped(key(), Some("b"), (7_000, 5_000), &[10, 11, 14]);
        infos.ack(&key(), 10, 7_000);
        infos.change_invisible(&key(), (11, 7_000), 20_000);
        let table = infos.to_table();
        let json = &table.table["T@G"][&1];
        assert_eq!(json.offset_list, [10, 1, 4], "the first, then distances");
        assert_eq!(json.commit_offset_bit, 1);
        assert_eq!(OrderInfos::from_table(table.clone()), infos);
        let text = serde_json::to_string(&table).unwrap();
        assert!(text.contains(r#""offsetConsumedCount":{"10":1,"11":1}"#), "{text}");
        let mut broken = table;
        broken.table.get_mut("T@G").unwrap().get_mut(&1).unwrap().offset_list = vec![10, -1];
        assert_eq!(OrderInfos::from_table(broken), OrderInfos::default(), "not ascending");
        infos.forget_old(7_000 + ORDER_INFO_KEPT_MS);
        assert_eq!(infos, OrderInfos::default());
    }

    #[test]
    fn order_count_info_as_rocketmq_writes_it() {
        let reads = vec![(TopicKind::Normal, 1, vec![(100, 2), (101, 2)])];
        let info = order_count_info(&reads);
        assert_eq!(info, "0 qo1%100 2;0 qo1%101 2;0 1 2");
        assert_eq!(order_count_of(&info, TopicKind::Normal, 1, 101), Some(2));
        assert_eq!(order_count_of("0 1 3", TopicKind::Normal, 1, 7), Some(3), "the queue's");
        assert_eq!(order_count_of(&info, TopicKind::RetryV1, 1, 100), None);
        assert_eq!(order_count_of("0 qo1%100", TopicKind::Normal, 1, 100), None);
    }

    proptest! {
        /// Acks in any order commit exactly the prefix acknowledged so far, never past a
        /// message still out.
        #[test]
        fn commits_never_pass_a_message_not_acknowledged(
            count in 1usize..20,
            order in proptest::collection::vec(0usize..20, 0..40),
        ) {
            let offsets: Vec<i64> = (0..count as i64).map(|i| 100 + 2 * i).collect();
            let mut infos = OrderInfos::default();
            infos.popped(key(), None, (0, 1_000), &offsets);
            let mut acked = vec![false; count];
            for i in order.into_iter().filter(|i| *i < count) {
                acked[i] = true;
                let OrderAck::Commit(next) = infos.ack(&key(), offsets[i], 0) else {
                    panic!("an ack of a message handed out commits");
                };
                let prefix = acked.iter().take_while(|a| **a).count();
                let expected = offsets.get(prefix).copied().unwrap_or(offsets[count - 1] + 1);
                prop_assert_eq!(next, expected);
                infos.check_invariants();
            }
        }
    }
}
