//! The transaction check service as a core (RocketMQ's `TransactionalMessageCheckService`
//! and `TransactionalMessageServiceImpl.check`), in the delay service's shape: a cursor
//! walks the half queue once every `transactionCheckInterval`; each half message not yet
//! resolved, older than `transactionTimeOut` (or its check-immunity time), is copied to the
//! end of the half queue with its check count raised and checked with a producer of its
//! group, or discarded to `TRANS_CHECK_MAX_TIME_TOPIC` once checked `transactionCheckMax`
//! times. No I/O and no clock: the shell reads, copies, checks and persists when told and
//! reports back.
//!
//! ```text
//!          pass time          Head(resolved): skip     Head(due)          Checked / Discarded
//!   Idle ─────────────▶ Reading ──────────────▶ Reading ─────────▶ Acting ──────────────▶ Reading
//!    ▲                   │ Head(young or new) / Empty                 │ Failed
//!    └──── pass ends ────┘                                            ▼
//!                                                          Retrying ── retry time ──▶ Reading
//! ```
//!
//! The check count travels in the copy (`TRANSACTION_CHECK_TIMES`), and the cursor is
//! persisted (as consumer group `CID_RMQ_SYS_TRANS`'s offset of the half queue) only after
//! the copies it passed are durable: a restart neither loses a check nor starts a count
//! again; at worst it copies the last pass's messages once more, with the same counts.
//!
//! Each transaction has one live copy, its newest: a copy older than a newer one of the same
//! transaction (named by its first half message, its origin) is passed over. Without that, a
//! restart that reads a pass again copies the same transaction a second time, and both
//! copies live on, each copied every pass: checks multiply with every crash. The shell tells
//! the service of the copies past the cursor when it starts ([`CheckService::note_copy`]).

use std::collections::{BTreeMap, VecDeque};

use crate::Millis;

/// The check service's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckConfig {
    /// `transactionTimeOut`: a half message younger than this is not checked yet.
    pub timeout_ms: i64,
    /// `transactionCheckInterval`: time between the starts of two passes.
    pub interval_ms: Millis,
    /// `transactionCheckMax`: checks before a half message is discarded.
    pub check_max: i32,
    /// `fileReservedTime`: a half message born longer ago than this is discarded.
    pub file_reserved_ms: i64,
    /// How long after a failed read or action the service tries again.
    pub retry_ms: Millis,
}

/// The half message at the cursor, as the shell read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfHead {
    /// Its queue offset in the half queue.
    pub offset: i64,
    /// Its transaction's first half message (its own offset unless it is a copy).
    pub origin: i64,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    /// `TRANSACTION_CHECK_TIMES` (0 when absent).
    pub check_times: i32,
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS`, in milliseconds, when set.
    pub immunity_ms: Option<i64>,
    /// An op message names it or its transaction's first half message.
    pub resolved: bool,
}

/// What the shell found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckEvent {
    /// The first half message at or after the cursor.
    Head(HalfHead),
    /// No half message at the cursor; `next` is where the half queue continues (past the
    /// cursor when its start moved beyond it or units were skipped).
    Empty { next: i64 },
    /// The half message at `offset` was discarded, or found resolved meanwhile: the cursor
    /// moves past it.
    Done { offset: i64 },
    /// The half message at `offset` was copied to `copy` and checked: the cursor moves past
    /// it, and the copy is its transaction's newest.
    Copied { offset: i64, copy: i64 },
    /// Reading or acting at `offset` failed; try again later.
    Failed { offset: i64 },
    /// The cursor of the last `Persist` reached the disk, or did not.
    Persisted { written: bool },
}

/// What the shell must do; each reports back with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckAction {
    /// Read the half queue from `offset`: report `Head`, `Empty` or `Failed`.
    Read { offset: i64 },
    /// Copy the half message at `offset` to the end of the half queue with
    /// `TRANSACTION_CHECK_TIMES` = `check_times` and send CHECK_TRANSACTION_STATE for the
    /// copy to a producer of its group: report `Done` or `Failed`.
    Check { offset: i64, check_times: i32 },
    /// Store the half message at `offset` in `TRANS_CHECK_MAX_TIME_TOPIC`: report `Done` or
    /// `Failed`.
    Discard { offset: i64 },
    /// Make the commit log durable, then write `cursor` as the half queue's progress:
    /// report `Persisted`.
    Persist { cursor: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between passes: the next begins at `until`.
    Idle { until: Millis },
    /// A `Read` is out.
    Reading,
    /// A `Check` or `Discard` of the half message at `offset`, of transaction `origin`, is
    /// out.
    Acting { offset: i64, origin: i64 },
    /// The last attempt failed; read again at `until`.
    Retrying { until: Millis },
}

/// The check service. See the module documentation.
#[derive(Debug, Clone)]
pub struct CheckService {
    config: CheckConfig,
    cursor: i64,
    /// When the current pass began: a half message stored since waits for the next.
    pass_began: Millis,
    state: State,
    /// The cursor moved since it was last handed out to persist.
    dirty: bool,
    persisting: bool,
    actions: VecDeque<CheckAction>,
    /// Each transaction's newest copy at or past the cursor, by origin.
    newest: BTreeMap<i64, i64>,
}

impl CheckService {
    /// A service resuming at `cursor` (the persisted progress). Its first pass begins one
    /// interval after `now`, as RocketMQ's waits an interval first: after a restart the
    /// producers have heartbeated again by then, and a check finds one to ask (a check that
    /// finds none still counts).
    pub fn new(config: CheckConfig, cursor: i64, now: Millis) -> CheckService {
        CheckService {
            config,
            cursor: cursor.max(0),
            pass_began: now,
            state: State::Idle { until: now.saturating_add(config.interval_ms) },
            dirty: false,
            persisting: false,
            actions: VecDeque::new(),
            newest: BTreeMap::new(),
        }
    }

    /// The half queue holds a copy of transaction `origin` at `offset` (what the shell finds
    /// past the cursor as the service starts).
    pub fn note_copy(&mut self, origin: i64, offset: i64) {
        let newest = self.newest.entry(origin).or_insert(offset);
        *newest = (*newest).max(offset);
    }

    /// The next half-queue offset to look at.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    fn read(&mut self) {
        self.state = State::Reading;
        self.actions.push_back(CheckAction::Read { offset: self.cursor });
    }

    fn advance(&mut self, next: i64) {
        if next > self.cursor {
            self.cursor = next;
            self.dirty = true;
        }
    }

    /// Ends the pass: the cursor is persisted if it moved, and the next pass begins one
    /// interval after this one did.
    fn end_pass(&mut self, now: Millis) {
        let until = self.pass_began.saturating_add(self.config.interval_ms).max(now);
        self.state = State::Idle { until };
        let cursor = self.cursor;
        self.newest.retain(|_, copy| *copy >= cursor);
        self.persist();
    }

    fn persist(&mut self) {
        if self.dirty && !self.persisting {
            self.dirty = false;
            self.persisting = true;
            self.actions.push_back(CheckAction::Persist { cursor: self.cursor });
        }
    }

    /// Takes what the shell found or did at `now`.
    pub fn handle(&mut self, now: Millis, event: CheckEvent) {
        match event {
            CheckEvent::Head(head) if self.state == State::Reading => self.head(now, &head),
            CheckEvent::Empty { next } if self.state == State::Reading => {
                match next > self.cursor {
                    true => {
                        self.advance(next);
                        self.read();
                    }
                    false => self.end_pass(now),
                }
            }
            CheckEvent::Done { offset } if self.acting_at(offset).is_some() => {
                self.advance(offset + 1);
                self.read();
            }
            CheckEvent::Copied { offset, copy } if self.acting_at(offset).is_some() => {
                if let Some(origin) = self.acting_at(offset) {
                    self.note_copy(origin, copy);
                }
                self.advance(offset + 1);
                self.read();
            }
            CheckEvent::Failed { .. }
                if matches!(self.state, State::Reading | State::Acting { .. }) =>
            {
                self.state = State::Retrying { until: now.saturating_add(self.config.retry_ms) };
            }
            CheckEvent::Persisted { written } => {
                self.persisting = false;
                self.dirty |= !written;
            }
            stale => debug_assert!(false, "event {stale:?} in state {:?}", self.state),
        }
    }

    /// The origin of the half message at `offset`, if an action on it is out.
    fn acting_at(&self, offset: i64) -> Option<i64> {
        match self.state {
            State::Acting { offset: at, origin } if at == offset => Some(origin),
            _ => None,
        }
    }

    /// Decides for the half message at the cursor (`TransactionalMessageServiceImpl.check`).
    fn head(&mut self, now: Millis, head: &HalfHead) {
        self.advance(head.offset);
        let now_ms = i64::try_from(now).unwrap_or(i64::MAX);
        let age = now_ms.saturating_sub(head.born_timestamp);
        let superseded = self.newest.get(&head.origin).is_some_and(|newest| *newest > head.offset);
        if head.resolved || superseded {
            self.advance(head.offset + 1);
            self.read();
        } else if head.check_times >= self.config.check_max || age > self.config.file_reserved_ms {
            self.state = State::Acting { offset: head.offset, origin: head.origin };
            self.actions.push_back(CheckAction::Discard { offset: head.offset });
        } else if head.store_timestamp >= i64::try_from(self.pass_began).unwrap_or(i64::MAX)
            || age < head.immunity_ms.unwrap_or(0).max(self.config.timeout_ms)
        {
            // Stored since the pass began (a copy it made, among others), or too young: the
            // rest is younger still. Look again next pass.
            self.end_pass(now);
        } else {
            self.state = State::Acting { offset: head.offset, origin: head.origin };
            let check_times = head.check_times.saturating_add(1);
            self.actions.push_back(CheckAction::Check { offset: head.offset, check_times });
        }
    }

    /// Wakes the service at `now`: a pass whose time came begins, a retry reads again.
    pub fn tick(&mut self, now: Millis) {
        match self.state {
            State::Idle { until } | State::Retrying { until } if now >= until => {
                if matches!(self.state, State::Idle { .. }) {
                    self.pass_began = now;
                }
                self.read();
            }
            _ => {}
        }
    }

    /// When the service next wants a `tick`.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            State::Idle { until } | State::Retrying { until } => Some(until),
            State::Reading | State::Acting { .. } => None,
        }
    }

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<CheckAction> {
        self.actions.pop_front()
    }

    /// What must hold between steps: the cursor is not negative, at most one read or action
    /// is out, and a persist is out only once.
    pub fn check_invariants(&self) {
        assert!(self.cursor >= 0, "cursor {}", self.cursor);
        let out = self.actions.iter().filter(|a| !matches!(a, CheckAction::Persist { .. })).count();
        assert!(out <= 1, "{out} reads or actions queued");
        let persists =
            self.actions.iter().filter(|a| matches!(a, CheckAction::Persist { .. })).count();
        assert!(persists <= usize::from(self.persisting), "persist queued twice");
        if let State::Acting { offset, .. } = self.state {
            assert!(offset >= self.cursor, "acting at {offset} behind the cursor");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: CheckConfig = CheckConfig {
        timeout_ms: 6_000,
        interval_ms: 30_000,
        check_max: 15,
        file_reserved_ms: 72 * 3_600_000,
        retry_ms: 1_000,
    };

    fn head(offset: i64, born: i64, check_times: i32) -> HalfHead {
        HalfHead {
            offset,
            origin: offset,
            born_timestamp: born,
            store_timestamp: born,
            check_times,
            immunity_ms: None,
            resolved: false,
        }
    }

    /// A service resuming at `cursor` whose first pass begins at 100 000.
    fn started(cursor: i64) -> CheckService {
        let mut service = CheckService::new(CONFIG, cursor, 70_000);
        assert_eq!(service.poll_timeout(), Some(100_000));
        service.tick(99_999);
        assert!(service.poll_action().is_none(), "no pass before an interval went by");
        service.tick(100_000);
        service
    }

    fn drain(service: &mut CheckService) -> Vec<CheckAction> {
        service.check_invariants();
        std::iter::from_fn(|| service.poll_action()).collect()
    }

    #[test]
    fn a_pass_checks_old_half_messages_skips_resolved_ones_and_stops_at_young_ones() {
        let mut service = started(3);
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 3 }]);
        service.handle(100_000, CheckEvent::Head(HalfHead { resolved: true, ..head(3, 0, 0) }));
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 4 }]);
        service.handle(100_000, CheckEvent::Head(head(5, 1_000, 2)));
        assert_eq!(drain(&mut service), [CheckAction::Check { offset: 5, check_times: 3 }]);
        service.handle(100_001, CheckEvent::Copied { offset: 5, copy: 7 });
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 6 }]);
        // Born 5 s ago: younger than transactionTimeOut. The pass ends and persists.
        service.handle(100_002, CheckEvent::Head(head(6, 95_000, 0)));
        assert_eq!(drain(&mut service), [CheckAction::Persist { cursor: 6 }]);
        assert_eq!(service.poll_timeout(), Some(130_000));
        service.tick(129_999);
        assert!(drain(&mut service).is_empty());
        service.tick(130_000);
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 6 }]);
        service.handle(130_000, CheckEvent::Persisted { written: true });
        service.check_invariants();
    }

    #[test]
    fn checked_too_often_or_too_old_is_discarded_and_a_copy_waits_for_the_next_pass() {
        let mut service = started(0);
        drain(&mut service);
        service.handle(100_000, CheckEvent::Head(head(0, 1_000, 15)));
        assert_eq!(drain(&mut service), [CheckAction::Discard { offset: 0 }]);
        service.handle(100_000, CheckEvent::Done { offset: 0 });
        drain(&mut service);
        let ancient = -CONFIG.file_reserved_ms;
        service.handle(100_000, CheckEvent::Head(head(1, ancient, 0)));
        assert_eq!(drain(&mut service), [CheckAction::Discard { offset: 1 }]);
        service.handle(100_000, CheckEvent::Done { offset: 1 });
        drain(&mut service);
        // A copy this pass made: born long ago, stored now. It waits for the next pass.
        let copy = HalfHead { store_timestamp: 100_000, ..head(2, 1_000, 1) };
        service.handle(100_001, CheckEvent::Head(copy));
        assert_eq!(drain(&mut service), [CheckAction::Persist { cursor: 2 }]);
        // Its check-immunity time holds a half message back beyond transactionTimeOut.
        let mut service = started(0);
        drain(&mut service);
        let immune = HalfHead { immunity_ms: Some(60_000), ..head(0, 50_000, 0) };
        service.handle(100_000, CheckEvent::Head(immune));
        assert!(drain(&mut service).is_empty(), "the pass ends with nothing moved");
    }

    #[test]
    fn a_transaction_lives_in_its_newest_copy_only() {
        // After a restart that reads a pass again: the half message at 3 was copied to 9
        // before the crash, and the service is told of that copy as it starts.
        let mut service = CheckService::new(CONFIG, 3, 70_000);
        service.note_copy(3, 9);
        service.tick(100_000);
        drain(&mut service);
        service.handle(100_000, CheckEvent::Head(head(3, 1_000, 1)));
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 4 }], "3 is superseded");
        // A copy made this pass supersedes the one it was made from in later passes too.
        service.handle(100_000, CheckEvent::Head(head(5, 1_000, 0)));
        assert_eq!(drain(&mut service), [CheckAction::Check { offset: 5, check_times: 1 }]);
        service.handle(100_001, CheckEvent::Copied { offset: 5, copy: 10 });
        drain(&mut service);
        service.handle(100_001, CheckEvent::Head(HalfHead { origin: 5, ..head(7, 1_000, 0) }));
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 8 }], "7 is older than 10");
        let copy = HalfHead { origin: 3, ..head(9, 1_000, 2) };
        service.handle(100_001, CheckEvent::Head(copy));
        assert_eq!(drain(&mut service), [CheckAction::Check { offset: 9, check_times: 3 }]);
    }

    #[test]
    fn failures_retry_and_gaps_are_read_past() {
        let mut service = started(0);
        drain(&mut service);
        service.handle(100_000, CheckEvent::Failed { offset: 0 });
        assert_eq!(service.poll_timeout(), Some(101_000));
        service.tick(101_000);
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 0 }]);
        service.handle(101_000, CheckEvent::Empty { next: 4 });
        assert_eq!(drain(&mut service), [CheckAction::Read { offset: 4 }]);
        service.handle(101_000, CheckEvent::Empty { next: 4 });
        assert_eq!(drain(&mut service), [CheckAction::Persist { cursor: 4 }]);
        // A persist that did not reach the disk is asked again at the next pass's end.
        service.handle(101_000, CheckEvent::Persisted { written: false });
        service.tick(130_000);
        drain(&mut service);
        service.handle(130_000, CheckEvent::Empty { next: 4 });
        assert_eq!(drain(&mut service), [CheckAction::Persist { cursor: 4 }]);
    }

    proptest::proptest! {
        /// Whatever the shell reports, the invariants hold, the cursor never moves back,
        /// and a check asks one more than the count read.
        #[test]
        fn any_reports_keep_the_invariants(steps in proptest::collection::vec((0..6u8, 0..20i64, 0..20i32, proptest::bool::ANY), 1..80)) {
            let mut service = started(0);
            let mut now = 100_000;
            let mut out: Option<CheckAction> = None;
            let mut read_times = 0;
            for (kind, offset, times, resolved) in steps {
                now += 700;
                let before = service.cursor();
                if out.is_none() {
                    out = service.poll_action();
                }
                let event = match (kind, out) {
                    (_, Some(CheckAction::Persist { .. })) => CheckEvent::Persisted { written: resolved },
                    (0 | 1, Some(CheckAction::Read { offset: at })) => {
                        read_times = times;
                        CheckEvent::Head(HalfHead {
                            resolved,
                            ..head(at + offset % 3, now as i64 - offset * 1_000, times)
                        })
                    }
                    (2, Some(CheckAction::Read { offset: at })) => CheckEvent::Empty { next: at + offset % 2 },
                    (3, Some(_)) => CheckEvent::Failed { offset },
                    (_, Some(CheckAction::Check { offset, check_times })) => {
                        proptest::prop_assert_eq!(check_times, read_times + 1);
                        CheckEvent::Copied { offset, copy: offset + 20 }
                    }
                    (_, Some(CheckAction::Discard { offset })) => CheckEvent::Done { offset },
                    (_, Some(CheckAction::Read { offset: at })) => CheckEvent::Empty { next: at },
                    (_, None) => {
                        service.tick(now);
                        continue;
                    }
                };
                out = None;
                service.handle(now, event);
                service.check_invariants();
                proptest::prop_assert!(service.cursor() >= before);
            }
        }
    }
}
