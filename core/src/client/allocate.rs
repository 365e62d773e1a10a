//! Rebalance: which of a topic's queues each member of a consumer group consumes
//! (`AllocateMessageQueueStrategy`). Every member computes the same answer from the same sorted
//! lists of queues and member ids, so together they cover every queue exactly once.

use std::collections::BTreeMap;

use md5::Digest;

use super::MessageQueue;

/// How queues are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Contiguous blocks; the first `queues % members` members take one more
    /// (`AllocateMessageQueueAveragely`, RocketMQ's default).
    Averagely,
    /// Member i takes queues i, i + n, i + 2n, ... (`AllocateMessageQueueAveragelyByCircle`).
    AveragelyByCircle,
    /// Each member is placed on a hash ring `virtual_nodes` times (MD5 of `"{id}-{i}"`); a queue
    /// goes to the first point at or after the MD5 of its `Display` form
    /// (`AllocateMessageQueueConsistentHash`, 10 virtual nodes by default). A member joining
    /// or leaving moves only the queues next to its points.
    ConsistentHash { virtual_nodes: u32 },
}

impl Strategy {
    /// RocketMQ's consistent hashing with its default 10 virtual nodes per member.
    pub const CONSISTENT_HASH: Strategy = Strategy::ConsistentHash { virtual_nodes: 10 };

    /// The name RocketMQ's strategy reports (`getName()`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Averagely => "AVG",
            Strategy::AveragelyByCircle => "AVG_BY_CIRCLE",
            Strategy::ConsistentHash { .. } => "CONSISTENT_HASH",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    /// Accepts RocketMQ's names (`AVG`, `AVG_BY_CIRCLE`, `CONSISTENT_HASH`) in any case.
    fn from_str(name: &str) -> Result<Strategy, String> {
        match name.to_ascii_uppercase().as_str() {
            "AVG" => Ok(Strategy::Averagely),
            "AVG_BY_CIRCLE" => Ok(Strategy::AveragelyByCircle),
            "CONSISTENT_HASH" => Ok(Strategy::CONSISTENT_HASH),
            _ => Err(format!(
                "unknown allocation strategy {name:?}: use AVG, AVG_BY_CIRCLE or CONSISTENT_HASH"
            )),
        }
    }
}

/// The queues `member` takes. `queues` and `members` are sorted here, as RocketMQ's rebalance
/// sorts them first; a member not in `members` (not yet seen by the broker) takes none.
pub fn allocate(
    strategy: Strategy,
    member: &str,
    queues: &[MessageQueue],
    members: &[String],
) -> Vec<MessageQueue> {
    let mut queues = queues.to_vec();
    queues.sort();
    queues.dedup();
    let mut members = members.to_vec();
    members.sort();
    members.dedup();
    let Some(index) = members.iter().position(|m| m == member) else { return Vec::new() };
    if queues.is_empty() {
        return Vec::new();
    }
    match strategy {
        Strategy::Averagely => averagely(index, members.len(), &queues),
        Strategy::AveragelyByCircle => {
            queues.iter().skip(index).step_by(members.len()).cloned().collect()
        }
        Strategy::ConsistentHash { virtual_nodes } => {
            let ring = ring(&members, virtual_nodes);
            queues.into_iter().filter(|q| route(&ring, &q.to_string()) == Some(index)).collect()
        }
    }
}

/// The first four bytes of the key's MD5, big-endian: RocketMQ's ring position.
fn ring_hash(key: &str) -> u32 {
    let digest = md5::Md5::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Ring position → index of the member placed there. Members are placed in sorted order and a
/// later point replaces an earlier one at the same position, as RocketMQ's `TreeMap.put` does.
fn ring(members: &[String], virtual_nodes: u32) -> BTreeMap<u32, usize> {
    let mut ring = BTreeMap::new();
    for (index, member) in members.iter().enumerate() {
        for replica in 0..virtual_nodes {
            ring.insert(ring_hash(&format!("{member}-{replica}")), index);
        }
    }
    ring
}

/// The member at the first ring point at or after the key's hash, wrapping to the first point.
fn route(ring: &BTreeMap<u32, usize>, key: &str) -> Option<usize> {
    let hash = ring_hash(key);
    ring.range(hash..).next().or_else(|| ring.iter().next()).map(|(_, index)| *index)
}

fn averagely(index: usize, members: usize, queues: &[MessageQueue]) -> Vec<MessageQueue> {
    let total = queues.len();
    let extra = total % members;
    let size = if total <= members {
        1
    } else if extra > 0 && index < extra {
        total / members + 1
    } else {
        total / members
    };
    let start = if extra > 0 && index < extra { index * size } else { index * size + extra };
    let range = size.min(total.saturating_sub(start));
    (0..range).map(|i| queues[(start + i) % total].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|q| MessageQueue::new("T", "b", q)).collect()
    }

    fn ids(q: &[MessageQueue]) -> Vec<i32> {
        q.iter().map(|m| m.queue_id).collect()
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn every_queue_goes_to_exactly_one_member() {
        for strategy in
            [Strategy::Averagely, Strategy::AveragelyByCircle, Strategy::CONSISTENT_HASH]
        {
            for q in 0..20 {
                for m in 1..8 {
                    let all = members(m);
                    let mut taken: Vec<i32> = all
                        .iter()
                        .flat_map(|c| ids(&allocate(strategy, c, &queues(q), &all)))
                        .collect();
                    taken.sort();
                    assert_eq!(
                        taken,
                        (0..q).collect::<Vec<_>>(),
                        "{strategy:?} {q} queues {m} members"
                    );
                }
            }
        }
    }

    #[test]
    fn averagely_gives_contiguous_blocks() {
        let all = members(3);
        let got: Vec<Vec<i32>> =
            all.iter().map(|c| ids(&allocate(Strategy::Averagely, c, &queues(8), &all))).collect();
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
        let got: Vec<Vec<i32>> = all
            .iter()
            .map(|c| ids(&allocate(Strategy::AveragelyByCircle, c, &queues(8), &all)))
            .collect();
        assert_eq!(got, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        assert!(allocate(Strategy::Averagely, "stranger", &queues(8), &all).is_empty());
    }

    #[test]
    fn consistent_hash_moves_only_the_leavers_queues() {
        let all = members(4);
        let before: Vec<Vec<i32>> = all
            .iter()
            .map(|c| ids(&allocate(Strategy::CONSISTENT_HASH, c, &queues(64), &all)))
            .collect();
        let remaining = all[..3].to_vec();
        for (i, member) in remaining.iter().enumerate() {
            let after = ids(&allocate(Strategy::CONSISTENT_HASH, member, &queues(64), &remaining));
            assert!(before[i].iter().all(|q| after.contains(q)), "{member} kept its queues");
        }
        let zero = Strategy::ConsistentHash { virtual_nodes: 0 };
        assert!(allocate(zero, "c0", &queues(8), &all).is_empty(), "an empty ring routes nothing");
    }

    #[test]
    fn strategies_parse_from_rocketmq_names() {
        for strategy in
            [Strategy::Averagely, Strategy::AveragelyByCircle, Strategy::CONSISTENT_HASH]
        {
            assert_eq!(strategy.name().parse::<Strategy>(), Ok(strategy));
        }
        assert!("ROUND".parse::<Strategy>().is_err_and(|e| e.contains("CONSISTENT_HASH")));
    }
}
