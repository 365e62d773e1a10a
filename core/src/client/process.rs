//! A push consumer's process queue for one message queue: which pulled messages are still being
//! consumed, and so which offset may be committed. The committed offset is the lowest offset
//! still in consumption, or the offset after the last pulled message when none is: a crash or a
//! rebalance then redelivers at most what was in flight, and never skips a message.

use std::collections::BTreeMap;

/// In-flight messages of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessQueue {
    /// Offset → body bytes of each message pulled and not yet consumed.
    pending: BTreeMap<i64, usize>,
    bytes: usize,
    /// The offset after the last message pulled.
    next: i64,
}

impl ProcessQueue {
    /// A queue whose consumption starts at `offset`.
    pub fn starting_at(offset: i64) -> ProcessQueue {
        ProcessQueue { next: offset, ..ProcessQueue::default() }
    }

    /// Messages pulled: `(offset, body bytes)` each; `next` is where the next pull starts.
    pub fn pulled(&mut self, messages: impl IntoIterator<Item = (i64, usize)>, next: i64) {
        for (offset, size) in messages {
            if self.pending.insert(offset, size).is_none() {
                self.bytes += size;
            }
        }
        self.next = self.next.max(next);
    }

    /// The pull position moved without messages (filtered out, or corrected by the broker).
    pub fn skip_to(&mut self, next: i64) {
        self.next = next;
    }

    /// The broker moved the position (PULL_OFFSET_MOVED: an operator's reset, or an offset
    /// outside the queue): what was pulled before no longer decides the commit, which is
    /// `next` from now, back or forward, as RocketMQ drops the process queue. Messages still
    /// in consumption finish, but their offsets are forgotten.
    pub fn moved_to(&mut self, next: i64) {
        self.pending.clear();
        self.bytes = 0;
        self.next = next;
    }

    /// A message was consumed (or handed back for a retry).
    pub fn done(&mut self, offset: i64) {
        if let Some(size) = self.pending.remove(&offset) {
            self.bytes -= size;
        }
    }

    /// The offset that may be committed now.
    pub fn commit_offset(&self) -> i64 {
        self.pending.keys().next().copied().unwrap_or(self.next)
    }

    /// Where the next pull starts.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Whether pulling should pause (RocketMQ's `pullThresholdForQueue` and
    /// `pullThresholdSizeForQueue`).
    pub fn is_full(&self, messages_max: usize, bytes_max: usize) -> bool {
        self.pending.len() >= messages_max || self.bytes >= bytes_max
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The messages held: pulled and not yet consumed.
    pub fn cached(&self) -> Cached {
        Cached::of(self.pending.keys(), self.pending.len(), self.bytes)
    }
}

/// What a queue holds pulled and not yet consumed (RocketMQ's `ProcessQueueInfo` counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cached {
    pub count: usize,
    /// The lowest and highest offsets held, 0 when none is.
    pub min_offset: i64,
    pub max_offset: i64,
    pub bytes: usize,
}

impl Cached {
    /// From the held offsets in ascending order, their number and their body bytes.
    pub fn of<'a>(
        mut offsets: impl DoubleEndedIterator<Item = &'a i64>,
        count: usize,
        bytes: usize,
    ) -> Cached {
        let min_offset = offsets.next().copied().unwrap_or(0);
        let max_offset = offsets.next_back().copied().unwrap_or(min_offset);
        Cached { count, min_offset, max_offset, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_held_is_counted_with_its_bounds() {
        let mut queue = ProcessQueue::starting_at(5);
        assert_eq!(queue.cached(), Cached::default());
        queue.pulled([(5, 10), (6, 20), (7, 30)], 8);
        queue.done(5);
        assert_eq!(queue.cached(), Cached { count: 2, min_offset: 6, max_offset: 7, bytes: 50 });
        queue.done(7);
        assert_eq!(queue.cached(), Cached { count: 1, min_offset: 6, max_offset: 6, bytes: 20 });
    }

    #[test]
    fn commits_never_pass_a_message_in_consumption() {
        let mut queue = ProcessQueue::starting_at(10);
        assert_eq!(queue.commit_offset(), 10);
        queue.pulled([(10, 100), (11, 100), (12, 100)], 13);
        assert_eq!(queue.commit_offset(), 10);
        queue.done(11);
        assert_eq!(queue.commit_offset(), 10, "11 is done but 10 is not");
        queue.done(10);
        assert_eq!(queue.commit_offset(), 12);
        queue.done(12);
        assert_eq!(queue.commit_offset(), 13);
        assert!(!queue.is_full(1, 1));
        queue.pulled([(13, 500)], 14);
        assert!(queue.is_full(1, 10_000) && queue.is_full(10, 500));
        queue.done(13);
        queue.skip_to(20);
        assert_eq!((queue.commit_offset(), queue.next(), queue.in_flight()), (20, 20, 0));
    }

    #[test]
    fn a_move_by_the_broker_forgets_what_was_in_flight_back_or_forward() {
        let mut queue = ProcessQueue::starting_at(100);
        queue.pulled([(100, 10), (101, 10)], 102);
        queue.moved_to(0);
        assert_eq!((queue.commit_offset(), queue.next(), queue.in_flight()), (0, 0, 0));
        queue.done(100);
        queue.pulled([(0, 10)], 1);
        assert_eq!(queue.commit_offset(), 0, "the re-pulled message is in flight");
        queue.moved_to(500);
        assert_eq!((queue.commit_offset(), queue.next()), (500, 500), "not held back by 0");
        assert!(!queue.is_full(1, 1));
    }
}
