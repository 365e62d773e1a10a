//! An orderly push consumer's state for one message queue (RocketMQ's
//! `ConsumeMessageOrderlyService` with its `ProcessQueue`): the messages pulled and not yet
//! consumed, in offset order; the broker's lock on the queue, as far as this member knows it;
//! and the one message being consumed. A queue is consumed by one task at a time, one message
//! after the other, and only while its lock is valid; a message the listener suspends is
//! offered again after [`SUSPEND_MS`] and never skipped, until it has been suspended
//! `max_reconsumes` times and goes to the dead-letter queue.
//!
//! Pure: the pulls, lock answers, outcomes and the clock in; what to consume (or how long to
//! wait) and what may be committed out. The shell pulls, locks and calls the listener.

use std::collections::BTreeMap;

use crate::Millis;

/// RocketMQ's `rocketmq.client.rebalance.lockMaxLiveTime`: a member trusts a lock this long
/// after it asked for it, half of the broker's
/// [`LOCK_MAX_LIVE_MS`](crate::broker::queue_locks::LOCK_MAX_LIVE_MS), so that it stops
/// consuming well before the broker may hand the queue to another member.
pub const LOCK_VALID_MS: Millis = 30_000;

/// RocketMQ's `rocketmq.client.rebalance.lockInterval`: members renew their locks this often.
pub const LOCK_RENEW_MS: Millis = 20_000;

/// RocketMQ's `suspendCurrentQueueTimeMillis`: a suspended message is offered again after this.
pub const SUSPEND_MS: Millis = 1_000;

/// What the listener, or the send back to the dead-letter queue, made of the message taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Consumed (or handed to the dead-letter queue): the next message may be taken.
    Consumed,
    /// `SUSPEND_CURRENT_QUEUE_A_MOMENT`: offer it again later.
    Suspended,
    /// The dead-letter send failed: offer it again later, as a suspension.
    SendBackFailed,
}

/// What the shell does after an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Take the next message.
    Next,
    /// Offer the same message again at this time.
    RetryAt(Millis),
    /// Suspended too often: send it to the dead-letter queue, then report the send's outcome.
    SendBack(i64),
}

/// What may be consumed now.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<'a, M> {
    /// Consume this message (offset, message, times it was suspended before); report its
    /// outcome with [`OrderlyQueue::finished`].
    Consume(i64, &'a M, u32),
    /// Nothing until this time (a suspended message's retry, or the lock's end).
    Until(Millis),
    /// Nothing until a pull, a lock answer or an outcome changes something.
    Idle,
}

/// One queue of an orderly consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderlyQueue<M> {
    /// Offset → (body bytes, message), pulled and not consumed.
    waiting: BTreeMap<i64, (usize, M)>,
    bytes: usize,
    /// The offset after the last message pulled.
    next: i64,
    /// When the lock this member holds was asked for; `None`: not held. A queue of a
    /// broadcasting member needs no lock (`locked_from` is then 0 and never lapses).
    locked_from: Option<Millis>,
    /// When the broker's grant of the lock asked for at `locked_from` reached this member:
    /// the broker granted it between the two.
    lock_answered_at: Millis,
    needs_lock: bool,
    /// The message in consumption, if any (always the lowest waiting offset).
    taken: Option<i64>,
    /// Suspensions of the lowest waiting message, and when it may be offered again.
    suspensions: u32,
    retry_at: Millis,
}

impl<M> OrderlyQueue<M> {
    /// A queue consumed from `offset`; `needs_lock`: a clustering member's, consumed only
    /// while the broker's lock is held.
    pub fn starting_at(offset: i64, needs_lock: bool) -> OrderlyQueue<M> {
        OrderlyQueue {
            waiting: BTreeMap::new(),
            bytes: 0,
            next: offset,
            locked_from: (!needs_lock).then_some(0),
            lock_answered_at: 0,
            needs_lock,
            taken: None,
            suspensions: 0,
            retry_at: 0,
        }
    }

    /// The broker's answer, come at `now`, to a lock asked for at `asked_at`: held or not. An
    /// answer that comes after a newer one was applied does not move the lock back.
    pub fn lock_answered(&mut self, asked_at: Millis, held: bool, now: Millis) {
        if !self.needs_lock {
            return;
        }
        match (held, self.locked_from) {
            (true, Some(from)) if from >= asked_at => {}
            (true, _) => (self.locked_from, self.lock_answered_at) = (Some(asked_at), now),
            (false, _) => self.locked_from = None,
        }
    }

    /// Whether this member may consume (and pull) the queue at `now`.
    pub fn lock_valid(&self, now: Millis) -> bool {
        match self.locked_from {
            Some(_) if !self.needs_lock => true,
            Some(from) => now < from.saturating_add(LOCK_VALID_MS),
            None => false,
        }
    }

    /// When the lock the current consumption relies on was asked for.
    pub fn locked_from(&self) -> Option<Millis> {
        self.locked_from.filter(|_| self.needs_lock)
    }

    /// When the grant of that lock reached this member: the broker granted it no later.
    pub fn lock_answered_at(&self) -> Option<Millis> {
        self.locked_from().map(|_| self.lock_answered_at)
    }

    /// Messages pulled: `(offset, body bytes, message)` each, offsets ascending; `next` is
    /// where the next pull starts. A message before the pull position was pulled before (and
    /// is waiting or consumed): it is not taken again.
    pub fn pulled(&mut self, messages: impl IntoIterator<Item = (i64, usize, M)>, next: i64) {
        for (offset, size, message) in messages {
            if offset < self.next {
                continue;
            }
            self.waiting.insert(offset, (size, message));
            self.bytes += size;
        }
        self.next = self.next.max(next);
    }

    /// The pull position moved with no message to consume (filtered out, or corrected by the
    /// broker). Only ever forward past what is waiting.
    pub fn skip_to(&mut self, next: i64) {
        let floor = self.waiting.keys().next_back().map_or(i64::MIN, |last| last + 1);
        self.next = next.max(floor);
    }

    /// What may be consumed at `now`.
    pub fn take(&mut self, now: Millis) -> Take<'_, M> {
        if self.taken.is_some() {
            return Take::Idle;
        }
        let Some(&offset) = self.waiting.keys().next() else { return Take::Idle };
        if !self.lock_valid(now) {
            return Take::Idle;
        }
        if now < self.retry_at {
            return Take::Until(self.retry_at);
        }
        self.taken = Some(offset);
        let suspensions = self.suspensions;
        Take::Consume(offset, &self.waiting[&offset].1, suspensions)
    }

    /// The outcome of the message at `offset` that [`take`](Self::take) gave, at `now`.
    pub fn finished(
        &mut self,
        offset: i64,
        outcome: Outcome,
        now: Millis,
        max_reconsumes: u32,
    ) -> After {
        assert_eq!(self.taken, Some(offset), "an outcome for a message not taken");
        match outcome {
            Outcome::Consumed => {
                self.taken = None;
                if let Some((size, _)) = self.waiting.remove(&offset) {
                    self.bytes -= size;
                }
                self.suspensions = 0;
                self.retry_at = 0;
                After::Next
            }
            Outcome::Suspended if self.suspensions >= max_reconsumes => After::SendBack(offset),
            Outcome::Suspended | Outcome::SendBackFailed => {
                self.taken = None;
                self.suspensions = self.suspensions.saturating_add(1);
                self.retry_at = now.saturating_add(SUSPEND_MS);
                After::RetryAt(self.retry_at)
            }
        }
    }

    /// The offset that may be committed: the first message not consumed, or where the next
    /// pull starts when none waits.
    pub fn commit_offset(&self) -> i64 {
        self.waiting.keys().next().copied().unwrap_or(self.next)
    }

    /// Where the next pull starts.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Whether a message is in consumption now.
    pub fn busy(&self) -> bool {
        self.taken.is_some()
    }

    /// The messages held: pulled and not yet consumed.
    pub fn cached(&self) -> super::process::Cached {
        super::process::Cached::of(self.waiting.keys(), self.waiting.len(), self.bytes)
    }

    /// Whether pulling should pause (`pullThresholdForQueue`, `pullThresholdSizeForQueue`).
    pub fn is_full(&self, messages_max: usize, bytes_max: usize) -> bool {
        self.waiting.len() >= messages_max || self.bytes >= bytes_max
    }

    pub fn check_invariants(&self) {
        let bytes: usize = self.waiting.values().map(|(size, _)| size).sum();
        assert_eq!(bytes, self.bytes, "byte count drifted");
        if let Some(taken) = self.taken {
            assert_eq!(self.waiting.keys().next(), Some(&taken), "taken is not the first waiting");
        }
        if let Some(last) = self.waiting.keys().next_back() {
            assert!(*last < self.next, "waiting offset {last} at or past the pull position");
        }
        assert!(self.needs_lock || self.locked_from == Some(0), "a lock-free queue lost its lock");
        if let (Some(asked), Some(answered)) = (self.locked_from(), self.lock_answered_at()) {
            assert!(asked <= answered, "lock answered at {answered}, before its ask at {asked}");
        }
        assert!(self.commit_offset() <= self.next, "commit offset past the pull position");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pulled(queue: &mut OrderlyQueue<&'static str>, offsets: std::ops::Range<i64>) {
        let next = offsets.end;
        queue.pulled(offsets.map(|o| (o, 10, "m")), next);
    }

    #[test]
    fn consumes_in_order_one_at_a_time_and_only_under_a_lock() {
        let mut queue = OrderlyQueue::starting_at(5, true);
        pulled(&mut queue, 5..8);
        assert_eq!(queue.take(0), Take::Idle, "no lock yet");
        queue.lock_answered(100, true, 100);
        assert!(matches!(queue.take(100), Take::Consume(5, _, 0)));
        assert_eq!(queue.take(100), Take::Idle, "one message at a time");
        assert_eq!(queue.commit_offset(), 5, "the message in consumption is not committed");
        assert_eq!(queue.finished(5, Outcome::Consumed, 101, 3), After::Next);
        assert_eq!(queue.commit_offset(), 6);
        assert!(matches!(queue.take(101), Take::Consume(6, _, 0)));
        queue.check_invariants();
        assert_eq!(queue.finished(6, Outcome::Consumed, 101, 3), After::Next);
        assert_eq!(queue.take(100 + LOCK_VALID_MS), Take::Idle, "the lock is too old to trust");
        queue.lock_answered(200, true, 230);
        assert!(matches!(queue.take(200 + LOCK_VALID_MS - 1), Take::Consume(7, _, 0)));
        queue.check_invariants();
    }

    #[test]
    fn a_refused_lock_stops_consumption_and_a_late_answer_does_not_move_it_back() {
        let mut queue = OrderlyQueue::starting_at(0, true);
        pulled(&mut queue, 0..2);
        queue.lock_answered(1_000, true, 1_010);
        queue.lock_answered(500, true, 1_020);
        assert_eq!(queue.locked_from(), Some(1_000), "an older grant answered late");
        assert_eq!(queue.lock_answered_at(), Some(1_010), "the grant relied on is the newer");
        queue.lock_answered(2_000, false, 2_010);
        assert_eq!(queue.take(2_000), Take::Idle);
        assert_eq!(queue.locked_from(), None);
    }

    #[test]
    fn a_suspended_message_comes_again_then_goes_to_the_dead_letter_queue() {
        let mut queue = OrderlyQueue::starting_at(0, false);
        pulled(&mut queue, 0..2);
        assert!(matches!(queue.take(0), Take::Consume(0, _, 0)));
        assert_eq!(queue.finished(0, Outcome::Suspended, 10, 2), After::RetryAt(10 + SUSPEND_MS));
        assert_eq!(queue.take(11), Take::Until(10 + SUSPEND_MS), "not before its time");
        assert!(matches!(queue.take(10 + SUSPEND_MS), Take::Consume(0, _, 1)));
        let again = queue.finished(0, Outcome::Suspended, 2_000, 2);
        assert_eq!(again, After::RetryAt(2_000 + SUSPEND_MS));
        assert!(matches!(queue.take(3_000), Take::Consume(0, _, 2)));
        assert_eq!(queue.finished(0, Outcome::Suspended, 3_000, 2), After::SendBack(0));
        assert_eq!(queue.take(3_000), Take::Idle, "still taken while it is sent back");
        let failed = queue.finished(0, Outcome::SendBackFailed, 3_000, 2);
        assert_eq!(failed, After::RetryAt(3_000 + SUSPEND_MS));
        assert!(matches!(queue.take(4_000), Take::Consume(0, _, 3)));
        assert_eq!(queue.finished(0, Outcome::Suspended, 4_000, 2), After::SendBack(0));
        assert_eq!(queue.finished(0, Outcome::Consumed, 4_000, 2), After::Next);
        assert!(matches!(queue.take(4_000), Take::Consume(1, _, 0)), "the next starts afresh");
        queue.check_invariants();
    }

    #[test]
    fn skips_never_pass_a_waiting_message() {
        let mut queue = OrderlyQueue::starting_at(0, false);
        pulled(&mut queue, 0..3);
        queue.skip_to(1);
        assert_eq!(queue.next(), 3);
        queue.skip_to(9);
        assert_eq!((queue.next(), queue.commit_offset()), (9, 0));
        queue.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Step {
        Pull(u8),
        Lock(bool),
        Tick(u16),
        Take,
        Finish(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u8..5).prop_map(Step::Pull),
            any::<bool>().prop_map(Step::Lock),
            (0u16..40_000).prop_map(Step::Tick),
            Just(Step::Take),
            (0u8..3).prop_map(Step::Finish),
        ]
    }

    proptest! {
        /// Whatever the order of pulls, lock answers and outcomes: offsets are consumed in
        /// order, none is skipped, and nothing is consumed without a valid lock.
        #[test]
        fn consumption_is_in_order_without_gaps(steps in proptest::collection::vec(step(), 1..200)) {
            let mut queue = OrderlyQueue::starting_at(0, true);
            let (mut now, mut consumed, mut taken) = (0u64, Vec::new(), None);
            for step in steps {
                match step {
                    Step::Pull(n) => {
                        let start = queue.next();
                        pulled(&mut queue, start..start + i64::from(n));
                    }
                    Step::Lock(held) => queue.lock_answered(now, held, now),
                    Step::Tick(ms) => now += u64::from(ms),
                    Step::Take => {
                        if let Take::Consume(offset, _, _) = queue.take(now) {
                            prop_assert!(queue.lock_valid(now));
                            taken = Some(offset);
                        }
                    }
                    Step::Finish(which) => if let Some(offset) = taken {
                        let outcome = [Outcome::Consumed, Outcome::Suspended, Outcome::SendBackFailed][usize::from(which)];
                        let after = queue.finished(offset, outcome, now, 1);
                        if after == After::Next {
                            consumed.push(offset);
                        }
                        if !matches!(after, After::SendBack(_)) {
                            taken = None;
                        }
                    }
                }
                queue.check_invariants();
            }
            let expected: Vec<i64> = (0..consumed.len() as i64).collect();
            prop_assert_eq!(consumed, expected);
        }
    }
}
