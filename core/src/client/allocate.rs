//! Rebalance: which of a topic's queues each member of a consumer group consumes
//! (`AllocateMessageQueueStrategy`). Every member computes the same answer from the same sorted
//! lists of queues and member ids, so together they cover every queue exactly once.

use super::MessageQueue;

/// How queues are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Contiguous blocks; the first `queues % members` members take one more
    /// (`AllocateMessageQueueAveragely`, RocketMQ's default).
    Averagely,
    /// Member i takes queues i, i + n, i + 2n, ... (`AllocateMessageQueueAveragelyByCircle`).
    AveragelyByCircle,
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
    }
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
        for strategy in [Strategy::Averagely, Strategy::AveragelyByCircle] {
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
}
