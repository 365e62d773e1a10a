//! Latency fault tolerance (`MQFaultStrategy`, `LatencyFaultToleranceImpl`): a broker that
//! answered slowly, or not at all, is avoided for a while that grows with its latency, and
//! queue selection prefers the brokers not being avoided.
//!
//! The tables are RocketMQ 5.3.3's: a send that took at least `LATENCY_MAX[i]` ms makes its
//! broker unavailable for `NOT_AVAILABLE_MS[i]` ms; a send that failed counts as
//! `ISOLATION_LATENCY`. RocketMQ's Java producer has this off unless `sendLatencyFaultEnable`;
//! Petrel's producer has it on by default.

use std::collections::BTreeMap;

use super::MessageQueue;
use crate::Millis;

/// Latency thresholds, ms.
pub const LATENCY_MAX: [Millis; 7] = [50, 100, 550, 1_800, 3_000, 5_000, 15_000];
/// How long a broker is avoided after a send at or above the matching threshold, ms.
pub const NOT_AVAILABLE_MS: [Millis; 7] = [0, 0, 2_000, 5_000, 6_000, 10_000, 30_000];
/// The latency a failed send counts as.
pub const ISOLATION_LATENCY: Millis = 10_000;

/// How long a send that took `latency` ms makes its broker unavailable.
pub fn not_available_for(latency: Millis) -> Millis {
    LATENCY_MAX
        .iter()
        .zip(NOT_AVAILABLE_MS)
        .rev()
        .find(|(max, _)| latency >= **max)
        .map_or(0, |(_, duration)| duration)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fault {
    latency: Millis,
    available_at: Millis,
}

/// The brokers being avoided, and a round-robin position over a topic's queues.
#[derive(Debug, Clone, Default)]
pub struct FaultTable {
    faults: BTreeMap<String, Fault>,
    next: u64,
}

impl FaultTable {
    /// Records how a send to `broker` went: its latency, or a failure (`isolated`). As in
    /// RocketMQ, a period of unavailability is only ever extended by a later send, never cut
    /// short: a fast answer right after a failure does not clear the failure.
    pub fn update(&mut self, broker: &str, latency: Millis, isolated: bool, now: Millis) {
        let duration = not_available_for(if isolated { ISOLATION_LATENCY } else { latency });
        let fault =
            self.faults.entry(broker.to_owned()).or_insert(Fault { latency, available_at: 0 });
        fault.latency = latency;
        if duration > 0 {
            fault.available_at = fault.available_at.max(now + duration);
        }
    }

    /// Whether sends may go to `broker` now.
    pub fn is_available(&self, broker: &str, now: Millis) -> bool {
        self.faults.get(broker).is_none_or(|f| now >= f.available_at)
    }

    /// The next queue, round robin: the first from the current position whose broker is
    /// available and is not `avoid` (the broker a failed attempt just went to); failing that,
    /// the first whose broker is not `avoid`; failing that, the next one.
    pub fn select(
        &mut self,
        queues: &[MessageQueue],
        avoid: Option<&str>,
        now: Millis,
    ) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        let n = queues.len() as u64;
        let at = |i: u64| &queues[((start + i) % n) as usize];
        let not_avoided = |q: &MessageQueue| avoid != Some(q.broker_name.as_str());
        (0..n)
            .map(at)
            .find(|q| not_avoided(q) && self.is_available(&q.broker_name, now))
            .or_else(|| (0..n).map(at).find(|q| not_avoided(q)))
            .or_else(|| Some(at(0)))
            .cloned()
    }

    /// The queue for `key`: the same key always goes to the same queue while the queue list
    /// stays the same (ordered messages of one sharding key).
    pub fn select_by_key(queues: &[MessageQueue], key: &str) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        let hash = i64::from(crate::record::java_hash(key)).unsigned_abs();
        queues.get((hash % queues.len() as u64) as usize).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> Vec<MessageQueue> {
        ["a", "b"].iter().flat_map(|b| (0..2).map(move |q| MessageQueue::new("T", b, q))).collect()
    }

    #[test]
    fn durations_follow_the_table() {
        assert_eq!(not_available_for(0), 0);
        assert_eq!(not_available_for(99), 0);
        assert_eq!(not_available_for(550), 2_000);
        assert_eq!(not_available_for(1_799), 2_000);
        assert_eq!(not_available_for(ISOLATION_LATENCY), 10_000);
        assert_eq!(not_available_for(u64::MAX), 30_000);
    }

    #[test]
    fn a_failed_broker_is_avoided_until_its_time_is_up() {
        let mut table = FaultTable::default();
        table.update("a", 0, true, 1_000);
        table.update("a", 3, false, 1_001);
        assert!(!table.is_available("a", 10_999), "a fast send does not end the isolation");
        assert!(table.is_available("a", 11_000));
        let picks: Vec<String> =
            (0..6).map(|_| table.select(&queues(), None, 5_000).unwrap().broker_name).collect();
        assert!(picks.iter().all(|b| b == "b"), "{picks:?}");
        // Every broker avoided: still a queue, round robin.
        table.update("b", 20_000, false, 1_000);
        assert!(table.select(&queues(), None, 5_000).is_some());
        // A retry avoids the broker that just failed even when it is nominally available.
        let mut fresh = FaultTable::default();
        for _ in 0..4 {
            assert_eq!(fresh.select(&queues(), Some("a"), 0).unwrap().broker_name, "b");
        }
    }

    #[test]
    fn round_robin_covers_every_queue() {
        let mut table = FaultTable::default();
        let mut seen: Vec<i32> = (0..4)
            .map(|_| table.select(&queues(), None, 0).unwrap())
            .map(|q| q.queue_id + if q.broker_name == "b" { 10 } else { 0 })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 10, 11]);
        let key_queue = FaultTable::select_by_key(&queues(), "order-42").unwrap();
        assert_eq!(FaultTable::select_by_key(&queues(), "order-42").unwrap(), key_queue);
    }
}
