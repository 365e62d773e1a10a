//! Reading one revive queue (RocketMQ's `PopReviveService`, docs/pop.md): checkpoints and acks
//! come in revive-queue order, which is their delivery-time order (each was written as a timer
//! message: a checkpoint a second before its revive time, its acks at it). A checkpoint is
//! judged once a record delivered more than [`JUDGE_MARGIN_MS`] after its revive time was read,
//! so every ack of it has been read; its messages without an ack are put again into the pop
//! retry topic. The revive offset committed is the revive-queue offset of the last checkpoint
//! all of whose messages were put again, never past one still being put.
//!
//! Pure: records and the clock in; what to put again and what to commit out.

use std::collections::BTreeMap;

use super::pop::{AckMsg, PopCheckPoint, PopKey};

/// A checkpoint is judged once the queue was read this far past its revive time.
pub const JUDGE_MARGIN_MS: i64 = 2_000;
/// With nothing more to read this long after the last record's delivery time (and no timer
/// backlog), the reader takes the clock for read to now (`PopReviveService`'s 3 s).
pub const IDLE_MS: i64 = 3_000;
/// Checkpoints held at once; reading pauses there until some are judged.
pub const PENDING_MAX: usize = 20_000;
/// RocketMQ's `ckRewriteIntervalsInSeconds`: how much later a checkpoint written again after
/// a failed revive comes due, by how often it was written again.
pub const REWRITE_INTERVALS_S: [i64; 17] =
    [10, 20, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];

/// A record of the revive topic, by its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviveRecord {
    Ck(PopCheckPoint),
    /// An ack or a batch ack.
    Ack(AckMsg),
    /// Anything else (a body that did not parse): read past.
    Other,
}

/// A checkpoint judged: the offsets of `ck.t` / `ck.q` to put again, none acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revive {
    /// The checkpoint's offset in the revive queue: report it done with
    /// [`ReviveQueue::revived`].
    pub at: i64,
    pub ck: PopCheckPoint,
    pub offsets: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    ck: PopCheckPoint,
    /// Acknowledged messages, bit j for message j.
    acked: u32,
    /// Handed out by [`ReviveQueue::due`]; done once reported.
    judged: bool,
    done: bool,
    /// Messages of a judged checkpoint its handling could not settle
    /// ([`ReviveQueue::retry`]): handed out again by the next [`ReviveQueue::due`].
    again: Vec<i64>,
}

/// One revive queue's reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviveQueue {
    broker: String,
    /// The offset of the last checkpoint handled (-1: none); reading resumes after it.
    committed: i64,
    /// The next offset to read.
    next: i64,
    /// Checkpoints read and not yet committed past, by revive-queue offset.
    pending: BTreeMap<i64, Pending>,
    /// The checkpoints not judged yet, by the key their acks name. A judged one leaves: a
    /// checkpoint written again for its first message has the same key.
    by_key: BTreeMap<PopKey, i64>,
    /// The latest delivery time read (or taken for read while idle), never past `timer_done`.
    read_to: i64,
    /// Every revive record due before this has been put by the timer wheel and is readable.
    timer_done: i64,
}

impl ReviveQueue {
    /// A reader of a queue whose committed revive offset is `committed` (-1 for none), for the
    /// broker named `broker` (an ack or checkpoint naming no broker is this one's).
    pub fn new(broker: &str, committed: i64) -> ReviveQueue {
        ReviveQueue {
            broker: broker.to_owned(),
            committed,
            next: committed.saturating_add(1).max(0),
            pending: BTreeMap::new(),
            by_key: BTreeMap::new(),
            read_to: 0,
            timer_done: i64::MAX,
        }
    }

    /// The timer wheel has put (and dispatch made readable) every revive record due before
    /// `ms`: what is read, or idle time, counts no further. A record written straight to the
    /// queue (its time already past) may be read before an ack still in the wheel's backlog;
    /// the checkpoint that ack names waits for it.
    pub fn timer_done(&mut self, ms: i64) {
        self.timer_done = ms;
    }

    /// Where to read next.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Whether to read more now: not while [`PENDING_MAX`] checkpoints wait.
    pub fn wants_more(&self) -> bool {
        self.pending.len() < PENDING_MAX
    }

    /// The record at `offset`, delivered at `deliver_ms`. An ack whose checkpoint was not read
    /// (handled before a restart, or never written) is read past.
    pub fn read(&mut self, offset: i64, deliver_ms: i64, record: ReviveRecord) {
        self.next = self.next.max(offset.saturating_add(1));
        self.read_to = self.read_to.max(deliver_ms.min(self.timer_done));
        match record {
            ReviveRecord::Ck(mut ck) => {
                let key = ck.key(&self.broker);
                let unnamed = ck.t.is_empty() || ck.c.is_empty();
                if unnamed || self.by_key.contains_key(&key) || offset <= self.committed {
                    return;
                }
                ck.ro = offset;
                self.by_key.insert(key, offset);
                // Acks a checkpoint carries (RocketMQ writes 0; its buffer may not).
                let width = ck.count();
                let acked = (ck.bm as u32) & if width >= 32 { u32::MAX } else { (1 << width) - 1 };
                let pending = Pending { ck, acked, judged: false, done: false, again: Vec::new() };
                self.pending.insert(offset, pending);
            }
            ReviveRecord::Ack(ack) => {
                let Some(at) = self.by_key.get(&ack.key(&self.broker)) else { return };
                let Some(pending) = self.pending.get_mut(at) else { return };
                for acked in ack.offsets() {
                    if let Some(j) = pending.ck.index_of(acked) {
                        pending.acked |= 1 << j;
                    }
                }
            }
            ReviveRecord::Other => {}
        }
    }

    /// Nothing more to read at `now`, and no timer message is still to come due: when the last
    /// record read was delivered [`IDLE_MS`] ago, the queue is read to `now`.
    pub fn idle(&mut self, now: i64) {
        let now = now.min(self.timer_done);
        if now.saturating_sub(self.read_to) > IDLE_MS {
            self.read_to = now;
        }
    }

    /// The checkpoints that may be judged now, in revive-queue order, each handed out once
    /// (and again for what [`ReviveQueue::retry`] names): up to the first whose revive time
    /// is not [`JUDGE_MARGIN_MS`] behind what was read.
    pub fn due(&mut self) -> Vec<Revive> {
        let mut due = Vec::new();
        for (at, pending) in self.pending.iter_mut() {
            if self.read_to.saturating_sub(pending.ck.revive_time()) <= JUDGE_MARGIN_MS {
                break;
            }
            if pending.judged {
                if !pending.again.is_empty() {
                    let offsets = std::mem::take(&mut pending.again);
                    due.push(Revive { at: *at, ck: pending.ck.clone(), offsets });
                }
                continue;
            }
            pending.judged = true;
            self.by_key.remove(&pending.ck.key(&self.broker));
            let unacked = (0..pending.ck.count()).filter(|j| pending.acked & (1 << j) == 0);
            let offsets = unacked.filter_map(|j| pending.ck.offset_of(j)).collect();
            due.push(Revive { at: *at, ck: pending.ck.clone(), offsets });
        }
        due
    }

    /// The checkpoint at `at` was handled: its messages are in the retry topic (or it was
    /// written again to come due later). Returns the revive offset to commit when it moved.
    pub fn revived(&mut self, at: i64) -> Option<i64> {
        if let Some(pending) = self.pending.get_mut(&at) {
            assert!(pending.judged, "checkpoint at {at} reported revived before it was judged");
            pending.done = true;
        }
        let before = self.committed;
        while let Some(entry) = self.pending.first_entry() {
            if !entry.get().done {
                break;
            }
            let (at, _) = entry.remove_entry();
            self.committed = at;
        }
        (self.committed > before).then_some(self.committed)
    }

    /// The checkpoint at `at` was handled but for messages `left`: neither put again nor
    /// given a checkpoint of their own (the store refused both). The next
    /// [`ReviveQueue::due`] hands it out again naming only those, and the commit stays
    /// before it until it is reported revived: a message is never passed over unput.
    pub fn retry(&mut self, at: i64, left: &[i64]) {
        let Some(pending) = self.pending.get_mut(&at) else { return };
        assert!(pending.judged && !pending.done, "checkpoint at {at} retried unjudged or done");
        pending.again = left.to_vec();
    }

    /// The committed revive offset.
    pub fn committed(&self) -> i64 {
        self.committed
    }

    pub fn check_invariants(&self) {
        let unjudged = self.pending.values().filter(|p| !p.judged).count();
        assert_eq!(unjudged, self.by_key.len(), "keys and unjudged checkpoints disagree");
        for (key, at) in &self.by_key {
            let pending = self.pending.get(at).expect("a key names a held checkpoint");
            assert_eq!(&pending.ck.key(&self.broker), key, "checkpoint at {at} under another key");
            assert!(!pending.judged, "checkpoint at {at} judged and still keyed");
        }
        for (at, pending) in &self.pending {
            assert!(!pending.done || pending.judged, "checkpoint at {at} done unjudged");
            let settling = pending.again.is_empty() || (pending.judged && !pending.done);
            assert!(settling, "checkpoint at {at} to be handed out again, unjudged or done");
            let width = pending.ck.count();
            assert!(width == 32 || pending.acked >> width == 0, "ack bits past message {width}");
        }
        if let Some((first, _)) = self.pending.first_key_value() {
            assert!(*first > self.committed, "a checkpoint held at or below the commit");
            assert!(!self.pending[first].done, "the first held checkpoint is done: not committed");
        }
        assert!(self.next > self.committed, "reading behind the commit");
    }
}

/// The checkpoint to write when putting message `offset` of `ck` again failed at `now`
/// (`rePutCK`): that message alone, due RocketMQ's rewrite interval for its count after its
/// revive time (when that is past; else at it).
pub fn rewrite(ck: &PopCheckPoint, offset: i64, now: i64) -> PopCheckPoint {
    let times = ck.rp.as_deref().map_or(0, |rp| rp.parse::<usize>().unwrap_or(127));
    let mut again = PopCheckPoint {
        so: offset,
        n: 1,
        d: Some(vec![0]),
        bm: 0,
        ro: 0,
        rp: Some((times + 1).to_string()),
        ..ck.clone()
    };
    if ck.revive_time() <= now {
        let wait = REWRITE_INTERVALS_S[times.min(REWRITE_INTERVALS_S.len() - 1)] * 1_000;
        again.it = ck.it.saturating_add(wait);
    }
    again
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ck(so: i64, d: &[i32], pt: i64) -> PopCheckPoint {
        PopCheckPoint {
            so,
            pt,
            it: 10_000,
            n: d.len() as i32,
            q: 1,
            t: "T".into(),
            c: "G".into(),
            d: Some(d.to_vec()),
            bn: Some("b".into()),
            ..PopCheckPoint::default()
        }
    }

    fn ack(so: i64, ao: i64, pt: i64) -> AckMsg {
        AckMsg { ao, so, c: "G".into(), t: "T".into(), q: 1, pt, bn: Some("b".into()), aol: None }
    }

    #[test]
    fn unacknowledged_messages_are_put_again_once_the_acks_are_read() {
        let mut queue = ReviveQueue::new("b", -1);
        let first = ck(100, &[0, 3, 7], 0);
        queue.read(0, 9_000, ReviveRecord::Ck(first.clone()));
        queue.read(1, 10_000, ReviveRecord::Ack(ack(100, 103, 0)));
        assert!(queue.due().is_empty(), "acks delivered at the revive time may still come");
        queue.read(2, 12_000, ReviveRecord::Other);
        assert!(queue.due().is_empty(), "2 s past: not yet beyond the margin");
        queue.read(3, 12_001, ReviveRecord::Other);
        let due = queue.due();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].at, due[0].offsets.clone()), (0, vec![100, 107]));
        assert!(queue.due().is_empty(), "handed out once");
        queue.check_invariants();
        assert_eq!(queue.revived(0), Some(0));
        assert_eq!((queue.committed(), queue.next()), (0, 4));
        queue.check_invariants();
    }

    #[test]
    fn nothing_is_judged_past_what_the_timer_wheel_has_put() {
        let mut queue = ReviveQueue::new("b", -1);
        queue.timer_done(9_000);
        queue.read(0, 9_000, ReviveRecord::Ck(ck(100, &[0], 0)));
        // A late ack of another checkpoint, written straight to the queue, and time passing:
        // the wheel still holds acks due at 10 000.
        queue.read(1, 30_000, ReviveRecord::Ack(ack(500, 500, 1)));
        queue.idle(40_000);
        assert!(queue.due().is_empty(), "its ack may still be in the wheel's backlog");
        queue.timer_done(13_500);
        queue.read(2, 10_000, ReviveRecord::Ack(ack(100, 100, 0)));
        queue.idle(40_000);
        assert_eq!(queue.due()[0].offsets, Vec::<i64>::new(), "acknowledged: nothing put again");
        queue.check_invariants();
    }

    #[test]
    fn the_commit_never_passes_a_checkpoint_still_being_put() {
        let mut queue = ReviveQueue::new("b", 4);
        assert_eq!(queue.next(), 5);
        queue.read(5, 9_000, ReviveRecord::Ck(ck(0, &[0], 0)));
        queue.read(6, 9_500, ReviveRecord::Ck(ck(1, &[0], 500)));
        queue.read(7, 9_600, ReviveRecord::Ck(ck(2, &[0], 60_000)));
        queue.idle(20_000);
        let due = queue.due();
        assert_eq!(due.iter().map(|r| r.at).collect::<Vec<_>>(), [5, 6], "the third is not due");
        assert_eq!(queue.revived(6), None, "5 is still being put");
        assert_eq!(queue.revived(5), Some(6));
        queue.check_invariants();
    }

    #[test]
    fn acks_in_batches_and_acks_of_unknown_checkpoints() {
        let mut queue = ReviveQueue::new("b", -1);
        queue.read(0, 9_000, ReviveRecord::Ck(PopCheckPoint { bn: None, ..ck(0, &[0, 1, 2], 0) }));
        let batch = AckMsg { ao: -1, aol: Some(vec![0, 2]), bn: None, ..ack(0, 0, 0) };
        queue.read(1, 10_000, ReviveRecord::Ack(batch));
        queue.read(2, 10_000, ReviveRecord::Ack(ack(0, 1, 777)));
        queue.idle(13_001);
        assert_eq!(queue.due()[0].offsets, [1], "the unknown ack matched nothing");
    }

    #[test]
    fn a_checkpoint_written_again_for_its_first_message_is_judged_again() {
        let mut queue = ReviveQueue::new("b", -1);
        queue.read(0, 9_000, ReviveRecord::Ck(ck(0, &[0], 0)));
        queue.read(1, 9_500, ReviveRecord::Ck(ck(100, &[0, 1], 500)));
        queue.idle(20_000);
        assert_eq!(queue.due().len(), 2);
        let again = rewrite(&ck(100, &[0, 1], 500), 100, 20_000);
        queue.read(2, again.revive_time() - 1_000, ReviveRecord::Ck(again));
        queue.check_invariants();
        queue.idle(60_000);
        let due = queue.due();
        assert_eq!((due.len(), due[0].offsets.clone()), (1, vec![100]), "the same key, judged");
        let nameless = PopCheckPoint { t: String::new(), ..ck(7, &[0], 0) };
        queue.read(3, 9_000, ReviveRecord::Ck(nameless));
        assert!(queue.due().is_empty(), "a checkpoint naming no topic is read past");
        queue.check_invariants();
    }

    #[test]
    fn a_checkpoint_is_held_once_and_a_restart_reads_after_the_commit() {
        let mut queue = ReviveQueue::new("b", -1);
        queue.read(0, 9_000, ReviveRecord::Ck(ck(0, &[0], 0)));
        queue.read(1, 9_000, ReviveRecord::Ck(ck(0, &[0], 0)));
        assert_eq!(queue.pending.len(), 1, "one key, one checkpoint");
        let restarted = ReviveQueue::new("b", 0);
        assert_eq!(restarted.next(), 1);
    }

    #[test]
    fn a_checkpoint_not_settled_is_handed_out_again_and_holds_the_commit() {
        let mut queue = ReviveQueue::new("b", -1);
        queue.read(0, 9_000, ReviveRecord::Ck(ck(100, &[0, 1, 2], 0)));
        queue.read(1, 9_000, ReviveRecord::Ck(ck(200, &[0], 0)));
        queue.idle(20_000);
        let due = queue.due();
        assert_eq!(due[0].offsets, [100, 101, 102]);
        // 100 was put again, 101 and 102 neither put nor written again: the store refused.
        queue.retry(0, &[101, 102]);
        assert_eq!(queue.revived(1), None, "the commit waits for the checkpoint at 0");
        queue.check_invariants();
        let again = queue.due();
        assert_eq!((again.len(), again[0].at, again[0].offsets.clone()), (1, 0, vec![101, 102]));
        assert!(queue.due().is_empty(), "handed out again once");
        queue.check_invariants();
        assert_eq!(queue.revived(0), Some(1), "settled: the commit moves over both");
        queue.check_invariants();
    }

    #[test]
    fn a_failed_revive_writes_the_message_again_later() {
        let first = ck(100, &[0, 3], 1_000);
        let again = rewrite(&first, 103, 20_000);
        assert_eq!((again.so, again.n, again.d.clone()), (103, 1, Some(vec![0])));
        assert_eq!(again.rp.as_deref(), Some("1"));
        assert_eq!(again.revive_time(), 21_000, "10 s after its revive time");
        let third = rewrite(&PopCheckPoint { rp: Some("2".into()), ..again.clone() }, 103, 40_000);
        assert_eq!(third.revive_time(), 51_000, "30 s more");
        let early = rewrite(&first, 100, 2_000);
        assert_eq!(early.revive_time(), first.revive_time(), "not due yet: the same time");
    }

    proptest! {
        /// Whatever acks arrive, a judged checkpoint names exactly its unacknowledged offsets,
        /// each checkpoint is judged once, and the commit moves only over done checkpoints.
        #[test]
        fn revives_are_exactly_the_unacknowledged(
            cks in proptest::collection::vec((1usize..6, any::<u8>()), 1..12),
            order in any::<u64>(),
        ) {
            let mut queue = ReviveQueue::new("b", -1);
            let mut offset = 0;
            let mut expected = BTreeMap::new();
            for (i, (n, acked)) in cks.iter().enumerate() {
                let pt = i as i64 * 100;
                let d: Vec<i32> = (0..*n as i32).map(|j| j * 2).collect();
                let so = i as i64 * 1_000;
                queue.read(offset, pt + 9_000, ReviveRecord::Ck(ck(so, &d, pt)));
                let ck_at = offset;
                offset += 1;
                let mut left = Vec::new();
                for (j, diff) in d.iter().enumerate() {
                    if acked & (1 << j) != 0 {
                        queue.read(offset, pt + 10_000, ReviveRecord::Ack(ack(so, so + i64::from(*diff), pt)));
                        offset += 1;
                    } else {
                        left.push(so + i64::from(*diff));
                    }
                }
                expected.insert(ck_at, left);
                queue.check_invariants();
            }
            queue.idle(1_000_000);
            let due = queue.due();
            prop_assert_eq!(due.len(), expected.len());
            for revive in &due {
                prop_assert_eq!(&revive.offsets, &expected[&revive.at]);
            }
            let mut ats: Vec<i64> = due.iter().map(|r| r.at).collect();
            let len = ats.len();
            ats.rotate_left((order as usize) % len);
            let mut committed = -1;
            for at in ats {
                if let Some(c) = queue.revived(at) {
                    prop_assert!(c > committed);
                    committed = c;
                }
                queue.check_invariants();
            }
            prop_assert_eq!(queue.committed(), *expected.keys().last().unwrap());
        }
    }
}
