//! The broker's queue locks for ordered consumers (RocketMQ's `RebalanceLockManager`):
//! LOCK_BATCH_MQ and UNLOCK_BATCH_MQ. A member of a clustering group that consumes in order
//! locks a queue before it takes it, renews the lock every 20 s and unlocks the queue when
//! it lets it go; a lock not renewed for [`LOCK_MAX_LIVE_MS`] lapses, and another member may
//! take the queue.
//!
//! Pure: the requests and the clock in, the queues locked out. Locks live in memory only, as
//! RocketMQ's: after a broker restart every queue is free, and members lock again within
//! their next 20 s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::loose;
use crate::client::MessageQueue;
use crate::Millis;

/// RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`: a lock lapses this long after it
/// was taken or last renewed.
pub const LOCK_MAX_LIVE_MS: Millis = 60_000;

/// A queue as the lock bodies name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueName {
    #[serde(deserialize_with = "loose::string")]
    pub broker_name: String,
    pub queue_id: i32,
    #[serde(deserialize_with = "loose::string")]
    pub topic: String,
}

impl From<&QueueName> for MessageQueue {
    fn from(queue: &QueueName) -> MessageQueue {
        MessageQueue::new(&queue.topic, &queue.broker_name, queue.queue_id)
    }
}

impl From<&MessageQueue> for QueueName {
    fn from(queue: &MessageQueue) -> QueueName {
        QueueName {
            broker_name: queue.broker_name.clone(),
            queue_id: queue.queue_id,
            topic: queue.topic.clone(),
        }
    }
}

/// The body of LOCK_BATCH_MQ and UNLOCK_BATCH_MQ (`LockBatchRequestBody`,
/// `UnlockBatchRequestBody`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchBody {
    #[serde(deserialize_with = "loose::string")]
    pub client_id: String,
    #[serde(deserialize_with = "loose::string")]
    pub consumer_group: String,
    pub mq_set: Vec<QueueName>,
    #[serde(deserialize_with = "loose::flag")]
    pub only_this_broker: bool,
}

/// The answer to LOCK_BATCH_MQ (`LockBatchResponseBody`): the queues the client holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedQueues {
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: Vec<QueueName>,
}

/// Who holds a queue, and when the lock was taken or last renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    client_id: String,
    renewed_at: Millis,
}

/// Every group's queue locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLocks {
    groups: BTreeMap<String, BTreeMap<MessageQueue, Holder>>,
    live_ms: Millis,
}

impl Default for QueueLocks {
    fn default() -> Self {
        QueueLocks::new(LOCK_MAX_LIVE_MS)
    }
}

impl QueueLocks {
    pub fn new(live_ms: Millis) -> QueueLocks {
        QueueLocks { groups: BTreeMap::new(), live_ms }
    }

    /// LOCK_BATCH_MQ: locks for `client` each queue of `queues` that is free, lapsed or its
    /// own (renewing it), and answers the queues it holds now. A queue another client holds
    /// with a live lock is left out.
    pub fn lock(
        &mut self,
        group: &str,
        client: &str,
        queues: &[MessageQueue],
        now: Millis,
    ) -> Vec<MessageQueue> {
        let live_ms = self.live_ms;
        let locks = self.groups.entry(group.to_owned()).or_default();
        let mut held = Vec::with_capacity(queues.len());
        for queue in queues {
            let free = locks.get(queue).is_none_or(|holder| {
                holder.client_id == client || now.saturating_sub(holder.renewed_at) > live_ms
            });
            if free {
                let holder = Holder { client_id: client.to_owned(), renewed_at: now };
                locks.insert(queue.clone(), holder);
                held.push(queue.clone());
            }
        }
        if locks.is_empty() {
            self.groups.remove(group);
        }
        held
    }

    /// UNLOCK_BATCH_MQ: releases each queue of `queues` that `client` holds (lapsed or not);
    /// a queue another client holds keeps its lock. How many were released.
    pub fn unlock(&mut self, group: &str, client: &str, queues: &[MessageQueue]) -> usize {
        let Some(locks) = self.groups.get_mut(group) else { return 0 };
        let before = locks.len();
        for queue in queues {
            if locks.get(queue).is_some_and(|holder| holder.client_id == client) {
                locks.remove(queue);
            }
        }
        let released = before - locks.len();
        if locks.is_empty() {
            self.groups.remove(group);
        }
        released
    }

    /// The client whose live lock holds `queue` for `group`, if one.
    pub fn holder(&self, group: &str, queue: &MessageQueue, now: Millis) -> Option<&str> {
        let holder = self.groups.get(group)?.get(queue)?;
        let live = now.saturating_sub(holder.renewed_at) <= self.live_ms;
        live.then_some(holder.client_id.as_str())
    }

    /// Forgets lapsed locks, so that the table holds only what a live client may renew.
    pub fn forget_lapsed(&mut self, now: Millis) {
        let live_ms = self.live_ms;
        for locks in self.groups.values_mut() {
            locks.retain(|_, holder| now.saturating_sub(holder.renewed_at) <= live_ms);
        }
        self.groups.retain(|_, locks| !locks.is_empty());
    }

    /// Locks held, lapsed ones included.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// No group without locks is kept, and every lock names its client.
    pub fn check_invariants(&self) {
        for (group, locks) in &self.groups {
            assert!(!locks.is_empty(), "group {group} kept with no lock");
            for (queue, holder) in locks {
                assert!(!holder.client_id.is_empty(), "{queue} of {group} locked by nobody");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn queue(id: i32) -> MessageQueue {
        MessageQueue::new("Orders", "broker-a", id)
    }

    #[test]
    fn a_queue_is_held_by_one_client_until_released_or_lapsed() {
        let mut locks = QueueLocks::default();
        assert_eq!(locks.lock("G", "c1", &[queue(0), queue(1)], 0), [queue(0), queue(1)]);
        assert_eq!(locks.lock("G", "c2", &[queue(1), queue(2)], 1_000), [queue(2)]);
        assert_eq!(locks.holder("G", &queue(1), 1_000), Some("c1"));
        assert_eq!(locks.lock("Other", "c2", &[queue(1)], 1_000), [queue(1)], "per group");
        // Renewed at 50 s, c1's lock on queue 0 lives to 110 s; queue 1's lapsed at 60 s.
        assert_eq!(locks.lock("G", "c1", &[queue(0)], 50_000), [queue(0)]);
        assert_eq!(locks.lock("G", "c2", &[queue(0), queue(1)], 60_001), [queue(1)]);
        assert_eq!(locks.holder("G", &queue(0), 110_000), Some("c1"));
        assert_eq!(locks.holder("G", &queue(0), 110_001), None);
        assert_eq!(locks.unlock("G", "c1", &[queue(1), queue(0)]), 1, "only its own");
        assert_eq!(locks.lock("G", "c2", &[queue(0)], 70_000), [queue(0)]);
        locks.check_invariants();
    }

    #[test]
    fn lapsed_locks_are_forgotten_and_empty_groups_go() {
        let mut locks = QueueLocks::new(10);
        locks.lock("G", "c1", &[queue(0)], 0);
        locks.lock("H", "c1", &[queue(0)], 5);
        locks.forget_lapsed(11);
        assert_eq!(locks.len(), 1);
        assert_eq!(locks.unlock("H", "c1", &[queue(0)]), 1);
        assert!(locks.is_empty());
        locks.check_invariants();
    }

    /// The bodies as RocketMQ's clients write them (fastjson), and the answer as they read it.
    #[test]
    fn bodies_read_and_write_as_rocketmqs() {
        let sent = r#"{"clientId":"10.0.0.7@1234","consumerGroup":"G","mqSet":[{"brokerName":"broker-a","queueId":3,"topic":"Orders"}],"onlyThisBroker":false}"#;
        let body: LockBatchBody = serde_json::from_str(sent).unwrap();
        assert_eq!(MessageQueue::from(&body.mq_set[0]), MessageQueue::new("Orders", "broker-a", 3));
        assert_eq!(body.client_id, "10.0.0.7@1234");
        let answer = LockedQueues { lock_ok_mq_set: body.mq_set.clone() };
        let expected =
            r#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":3,"topic":"Orders"}]}"#;
        assert_eq!(serde_json::to_string(&answer).unwrap(), expected);
    }

    proptest! {
        /// Whatever clients ask, in whatever order: a live lock has one holder, a client gets a
        /// queue only if it was free, lapsed or its own, and unlocking never frees another's.
        #[test]
        fn one_live_holder_per_queue(steps in proptest::collection::vec(
            (0..3u8, 0..2u8, proptest::collection::vec(0..4i32, 1..4), 0..40_000u64, any::<bool>()),
            1..60,
        )) {
            let mut locks = QueueLocks::new(30_000);
            let mut now = 0;
            for (client, group, ids, pause, unlock) in steps {
                now += pause;
                let (client, group) = (format!("c{client}"), format!("G{group}"));
                let queues: Vec<MessageQueue> = ids.iter().map(|id| queue(*id)).collect();
                let before: Vec<Option<String>> = queues
                    .iter()
                    .map(|q| locks.holder(&group, q, now).map(str::to_owned))
                    .collect();
                if unlock {
                    locks.unlock(&group, &client, &queues);
                    for (q, was) in queues.iter().zip(&before) {
                        if was.as_deref().is_some_and(|holder| holder != client) {
                            prop_assert_eq!(locks.holder(&group, q, now), was.as_deref());
                        }
                    }
                } else {
                    let held = locks.lock(&group, &client, &queues, now);
                    for (q, was) in queues.iter().zip(&before) {
                        let free = was.as_deref().is_none_or(|holder| holder == client);
                        prop_assert_eq!(held.contains(q), free);
                        let expected = if free { Some(client.as_str()) } else { was.as_deref() };
                        prop_assert_eq!(locks.holder(&group, q, now), expected);
                    }
                }
                locks.check_invariants();
            }
        }
    }
}
