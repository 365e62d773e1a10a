//! The delay service as a core (RocketMQ's `ScheduleMessageService`): one cursor per delay
//! level walks its queue of `SCHEDULE_TOPIC_XXXX`, and each message goes back to its real
//! topic once due. No I/O and no clock: the shell reads and re-appends when told, reports
//! what it found, and wakes the core at [`DelayService::poll_timeout`] or when new delayed
//! messages arrive. The timer wheel and the transaction check-back will take the same shape.
//!
//! ```text
//!       Arrived or re-check  Head(due now)            Delivered
//!   Idle ─────────────▶ Reading ───────────────▶ Delivering ─────────▶ Reading (next)
//!    ▲                   │  │ Head(due later)        │ Failed
//!    └──── Empty ────────┘  ▼                        ▼
//!                         Waiting ── due ──▶ Reading  Retrying ── retry time ──▶ Reading
//! ```
//!
//! A message is re-appended before its cursor moves, and cursors are persisted only after the
//! re-appends they account for are durable (the shell flushes the commit log before it writes
//! `config/delayOffset.json`): a crash can deliver a message twice, never lose one.

use std::collections::{BTreeMap, VecDeque};

use crate::broker::schedule::{due, DelayLevels, DelayOffsets, Due};
use crate::Millis;

/// The delay service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayConfig {
    pub levels: DelayLevels,
    /// How long after a failed read or re-append a level tries again.
    pub retry_ms: Millis,
    /// `flushDelayOffsetInterval`: how often the cursors are written when they moved.
    pub persist_interval_ms: Millis,
    /// How long a level with nothing to read waits before it looks again even though no
    /// arrival was reported: a consume-queue unit whose write failed becomes readable later,
    /// when a checkpoint writes it, and nothing else tells of it.
    pub idle_recheck_ms: Millis,
}

/// What the shell found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelayEvent {
    /// The first message of `level` at or after the cursor is at `offset`, due at `due_at`
    /// (its consume-queue tag code).
    Head { level: i32, offset: i64, due_at: i64 },
    /// `level` has no message at its cursor; `next` is where its queue continues: past the
    /// cursor when the queue's start moved beyond it or units there were skipped (then the
    /// core reads on from there), else at or before it (then the level waits for `Arrived`).
    Empty { level: i32, next: i64 },
    /// The message at `offset` of `level` is back in its real topic (or was dropped as one
    /// that cannot be delivered).
    Delivered { level: i32, offset: i64 },
    /// Reading or re-appending the message at `offset` of `level` failed; try again later.
    Failed { level: i32, offset: i64 },
    /// New messages were stored for `level`.
    Arrived { level: i32 },
    /// The cursors of the last `Persist` reached the disk, or did not.
    Persisted { written: bool },
}

/// What the shell must do; each reports back with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelayAction {
    /// Read `level`'s queue from `offset`: report `Head` or `Empty` (or `Failed`).
    Read { level: i32, offset: i64 },
    /// Re-append the message read at `offset` of `level`: report `Delivered` or `Failed`.
    Deliver { level: i32, offset: i64 },
    /// Make the commit log durable, then write these cursors: report `Persisted`.
    Persist(DelayOffsets),
}

/// Where one level stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Nothing to read at the cursor; waits for `Arrived`, or looks again at `until`.
    Idle { until: Millis },
    /// A `Read` is out.
    Reading,
    /// The head at the cursor is due at `until`.
    Waiting { until: Millis },
    /// A `Deliver` of the head is out.
    Delivering { offset: i64 },
    /// The last attempt failed; read again at `until`.
    Retrying { until: Millis },
}

/// The delay service. See the module documentation.
#[derive(Debug, Clone)]
pub struct DelayService {
    config: DelayConfig,
    cursors: DelayOffsets,
    levels: BTreeMap<i32, Level>,
    /// The cursors moved since they were last handed out to persist.
    dirty: bool,
    persisting: bool,
    persist_at: Millis,
    actions: VecDeque<DelayAction>,
}

impl DelayService {
    /// A service resuming from `cursors` (what `delayOffset.json` held): every level reads
    /// its head.
    pub fn new(config: DelayConfig, cursors: DelayOffsets, now: Millis) -> DelayService {
        let persist_at = now.saturating_add(config.persist_interval_ms);
        let mut service = DelayService {
            levels: (1..=config.levels.count()).map(|level| (level, Level::Reading)).collect(),
            config,
            cursors,
            dirty: false,
            persisting: false,
            persist_at,
            actions: VecDeque::new(),
        };
        for level in 1..=service.config.levels.count() {
            service.read(level);
        }
        service
    }

    /// The next offset `level` reads.
    pub fn cursor(&self, level: i32) -> i64 {
        self.cursors.get(level).max(0)
    }

    /// The cursors now (what a clean shutdown writes).
    pub fn cursors(&self) -> &DelayOffsets {
        &self.cursors
    }

    /// Whether `level` waits for new messages (the shell tells it of arrivals).
    pub fn is_idle(&self, level: i32) -> bool {
        matches!(self.levels.get(&level), Some(Level::Idle { .. }))
    }

    fn read(&mut self, level: i32) {
        self.levels.insert(level, Level::Reading);
        let offset = self.cursor(level);
        self.actions.push_back(DelayAction::Read { level, offset });
    }

    fn advance(&mut self, level: i32, next: i64) {
        if self.cursors.advance(level, next) {
            self.dirty = true;
        }
    }

    fn state(&self, level: i32) -> Level {
        *self.levels.get(&level).unwrap_or_else(|| panic!("delay level {level} is not configured"))
    }

    pub fn handle(&mut self, now: Millis, event: DelayEvent) {
        match event {
            DelayEvent::Head { level, offset, due_at } => {
                assert_eq!(self.state(level), Level::Reading, "a head nobody asked for");
                assert!(offset >= self.cursor(level), "a head before the cursor");
                self.advance(level, offset);
                match due(&self.config.levels, level, due_at, now as i64) {
                    Due::Now => {
                        self.levels.insert(level, Level::Delivering { offset });
                        self.actions.push_back(DelayAction::Deliver { level, offset });
                    }
                    Due::At(at) => {
                        self.levels.insert(level, Level::Waiting { until: at.max(0) as Millis });
                    }
                }
            }
            DelayEvent::Empty { level, next } => {
                assert_eq!(self.state(level), Level::Reading, "an answer nobody asked for");
                // Past the cursor (its start moved beyond it, or units there were skipped):
                // read on from there. Otherwise wait for new messages.
                match next > self.cursor(level) {
                    true => {
                        self.advance(level, next);
                        self.read(level);
                    }
                    false => {
                        let until = now.saturating_add(self.config.idle_recheck_ms);
                        self.levels.insert(level, Level::Idle { until });
                    }
                }
            }
            DelayEvent::Delivered { level, offset } => {
                let state = self.state(level);
                assert_eq!(state, Level::Delivering { offset }, "a delivery nobody asked for");
                self.advance(level, offset + 1);
                self.read(level);
            }
            DelayEvent::Failed { level, .. } => {
                let state = self.state(level);
                assert!(matches!(state, Level::Reading | Level::Delivering { .. }), "{state:?}");
                let until = now.saturating_add(self.config.retry_ms);
                self.levels.insert(level, Level::Retrying { until });
            }
            DelayEvent::Arrived { level } => {
                if self.is_idle(level) {
                    self.read(level);
                }
            }
            DelayEvent::Persisted { written } => {
                assert!(self.persisting, "a persist nobody asked for");
                self.persisting = false;
                self.dirty |= !written;
            }
        }
        self.tick(now);
    }

    /// Time passed: heads that came due and retries are read again; the cursors are written
    /// when the persist interval passed and they moved.
    pub fn tick(&mut self, now: Millis) {
        let woken: Vec<i32> = self
            .levels
            .iter()
            .filter(|(_, state)| match state {
                Level::Waiting { until } | Level::Retrying { until } | Level::Idle { until } => {
                    *until <= now
                }
                _ => false,
            })
            .map(|(level, _)| *level)
            .collect();
        for level in woken {
            self.read(level);
        }
        if now >= self.persist_at {
            self.persist_at = now.saturating_add(self.config.persist_interval_ms);
            if self.dirty && !self.persisting {
                self.persisting = true;
                self.dirty = false;
                self.actions.push_back(DelayAction::Persist(self.cursors.clone()));
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<DelayAction> {
        self.actions.pop_front()
    }

    /// The next time `tick` has work: the earliest due head, retry or idle re-check, or the
    /// next persist.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let timers = self.levels.values().filter_map(|state| match state {
            Level::Waiting { until } | Level::Retrying { until } | Level::Idle { until } => {
                Some(*until)
            }
            _ => None,
        });
        Some(timers.fold(self.persist_at, Millis::min))
    }

    /// Every configured level has a state and a cursor that is not negative, and at most one
    /// read or delivery is out per level.
    pub fn check_invariants(&self) {
        assert_eq!(self.levels.len(), self.config.levels.count() as usize, "a level without state");
        for (level, state) in &self.levels {
            assert!(self.cursors.get(*level) >= 0, "level {level}'s cursor is negative");
            let out = self.actions.iter().filter(|a| match a {
                DelayAction::Read { level: l, .. } | DelayAction::Deliver { level: l, .. } => {
                    l == level
                }
                DelayAction::Persist(_) => false,
            });
            assert!(out.count() <= 1, "two requests out for level {level}");
            if let Level::Delivering { offset } = state {
                assert_eq!(*offset, self.cursor(*level), "delivering off the cursor");
            }
        }
        let persists = self.actions.iter().filter(|a| matches!(a, DelayAction::Persist(_)));
        assert!(persists.count() <= usize::from(self.persisting), "a persist out twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DelayConfig {
        let levels = DelayLevels::parse("1s 5s").expect("levels");
        DelayConfig { levels, retry_ms: 1_000, persist_interval_ms: 10_000, idle_recheck_ms: 5_000 }
    }

    fn drain(service: &mut DelayService) -> Vec<DelayAction> {
        service.check_invariants();
        std::iter::from_fn(|| service.poll_action()).collect()
    }

    use DelayAction::{Deliver, Persist, Read};

    #[test]
    fn a_head_waits_for_its_time_then_goes_and_the_next_is_read() {
        let mut service = DelayService::new(config(), DelayOffsets::default(), 0);
        assert_eq!(
            drain(&mut service),
            [Read { level: 1, offset: 0 }, Read { level: 2, offset: 0 }]
        );
        service.handle(10, DelayEvent::Empty { level: 2, next: 0 });
        service.handle(10, DelayEvent::Head { level: 1, offset: 0, due_at: 900 });
        assert_eq!(drain(&mut service), []);
        assert_eq!(service.poll_timeout(), Some(900), "woken when the head is due");
        service.tick(899);
        assert_eq!(drain(&mut service), [], "never early");
        service.tick(900);
        assert_eq!(drain(&mut service), [Read { level: 1, offset: 0 }]);
        service.handle(900, DelayEvent::Head { level: 1, offset: 0, due_at: 900 });
        assert_eq!(drain(&mut service), [Deliver { level: 1, offset: 0 }]);
        service.handle(901, DelayEvent::Delivered { level: 1, offset: 0 });
        assert_eq!(drain(&mut service), [Read { level: 1, offset: 1 }]);
        assert_eq!(service.cursor(1), 1);
    }

    #[test]
    fn an_idle_level_waits_for_arrivals_not_a_poll() {
        let mut service = DelayService::new(config(), DelayOffsets::default(), 0);
        drain(&mut service);
        service.handle(5, DelayEvent::Empty { level: 1, next: 0 });
        service.handle(5, DelayEvent::Empty { level: 2, next: 0 });
        assert!(service.is_idle(1));
        assert_eq!(service.poll_timeout(), Some(5_005), "only the idle re-check is armed");
        service.handle(50, DelayEvent::Arrived { level: 2 });
        assert_eq!(drain(&mut service), [Read { level: 2, offset: 0 }]);
        // An arrival for a level already busy changes nothing.
        service.handle(51, DelayEvent::Arrived { level: 2 });
        assert_eq!(drain(&mut service), []);
        // With no arrival, an idle level looks again now and then: a unit whose write failed
        // becomes readable later, with nothing to tell of it.
        service.tick(5_004);
        assert_eq!(drain(&mut service), []);
        service.tick(5_005);
        assert_eq!(drain(&mut service), [Read { level: 1, offset: 0 }]);
    }

    #[test]
    fn a_failed_delivery_is_tried_again_and_the_cursor_waits() {
        let mut service = DelayService::new(config(), DelayOffsets::default(), 0);
        drain(&mut service);
        service.handle(0, DelayEvent::Empty { level: 2, next: 0 });
        service.handle(5, DelayEvent::Head { level: 1, offset: 3, due_at: 0 });
        assert_eq!(drain(&mut service), [Deliver { level: 1, offset: 3 }]);
        service.handle(6, DelayEvent::Failed { level: 1, offset: 3 });
        assert_eq!(service.cursor(1), 3, "the cursor stays on the message");
        assert_eq!(service.poll_timeout(), Some(1_006));
        service.tick(1_006);
        assert_eq!(drain(&mut service), [Read { level: 1, offset: 3 }]);
    }

    #[test]
    fn cursors_are_written_on_their_interval_and_again_after_a_failed_write() {
        let mut cursors = DelayOffsets::default();
        cursors.advance(1, 7);
        let mut service = DelayService::new(config(), cursors, 0);
        drain(&mut service);
        service.handle(1, DelayEvent::Empty { level: 2, next: 0 });
        service.handle(1, DelayEvent::Head { level: 1, offset: 7, due_at: 0 });
        assert_eq!(drain(&mut service), [Deliver { level: 1, offset: 7 }]);
        service.handle(2, DelayEvent::Delivered { level: 1, offset: 7 });
        drain(&mut service);
        // The levels' reads (idle re-checks included) are answered "nothing there"; only the
        // persists are looked at.
        let persists = |service: &mut DelayService, now: Millis| {
            service.tick(now);
            let actions = drain(service);
            for action in &actions {
                if let Read { level, offset } = action {
                    service.handle(now, DelayEvent::Empty { level: *level, next: *offset });
                }
            }
            actions.into_iter().filter(|a| matches!(a, Persist(_))).collect::<Vec<_>>()
        };
        let written = persists(&mut service, 10_000);
        assert!(matches!(&written[..], [Persist(c)] if c.get(1) == 8), "{written:?}");
        service.handle(10_001, DelayEvent::Persisted { written: false });
        assert_eq!(persists(&mut service, 19_999), []);
        assert!(matches!(&persists(&mut service, 20_001)[..], [Persist(_)]), "written again");
        service.handle(20_002, DelayEvent::Persisted { written: true });
        assert_eq!(persists(&mut service, 30_002), [], "nothing moved: nothing to write");
    }

    #[test]
    fn a_queue_that_moved_past_the_cursor_moves_it() {
        let mut service = DelayService::new(config(), DelayOffsets::default(), 0);
        drain(&mut service);
        service.handle(0, DelayEvent::Empty { level: 1, next: 40 });
        assert_eq!(service.cursor(1), 40);
        assert_eq!(drain(&mut service), [Read { level: 1, offset: 40 }]);
        // A queue whose end is behind the cursor leaves it where it is.
        service.handle(0, DelayEvent::Empty { level: 1, next: 12 });
        assert_eq!((service.cursor(1), service.is_idle(1)), (40, true));
    }

    proptest::proptest! {
        /// The core driven by a shell over model queues, with random arrivals, failed
        /// deliveries and failed persists: no message goes before its time, cursors never go
        /// back, and once the failures stop every message goes.
        #[test]
        fn every_message_goes_once_due_and_never_early(
            steps in proptest::collection::vec((0u8..4, 1i32..3, 0u64..3_000), 1..80),
            fail_ratio in 0u32..3,
        ) {
            let mut queues: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            let mut delivered: BTreeMap<(i32, i64), Millis> = BTreeMap::new();
            let mut service = DelayService::new(config(), DelayOffsets::default(), 0);
            let mut now: Millis = 0;
            let mut flip = 0u32;
            let mut last_cursors = [0i64; 3];
            let mut run = |service: &mut DelayService, queues: &BTreeMap<i32, Vec<i64>>,
                           delivered: &mut BTreeMap<(i32, i64), Millis>, now: Millis, failing: bool| {
                while let Some(action) = service.poll_action() {
                    flip += 1;
                    let fail = failing && fail_ratio > 0 && flip.is_multiple_of(fail_ratio + 1);
                    let event = match action {
                        DelayAction::Read { level, offset } => {
                            match queues.get(&level).and_then(|q| q.get(offset as usize)) {
                                Some(due_at) => DelayEvent::Head { level, offset, due_at: *due_at },
                                None => DelayEvent::Empty { level, next: offset },
                            }
                        }
                        DelayAction::Deliver { level, offset } if fail => DelayEvent::Failed { level, offset },
                        DelayAction::Deliver { level, offset } => {
                            let due_at = queues[&level][offset as usize];
                            assert!(now as i64 >= due_at, "level {level} offset {offset} due {due_at} went at {now}");
                            delivered.entry((level, offset)).or_insert(now);
                            DelayEvent::Delivered { level, offset }
                        }
                        DelayAction::Persist(_) => DelayEvent::Persisted { written: !fail },
                    };
                    service.handle(now, event);
                    service.check_invariants();
                }
            };
            for (kind, level, amount) in steps {
                match kind {
                    0 => {
                        let delay = service.config.levels.delay_ms(level) as i64;
                        queues.entry(level).or_default().push(now as i64 + delay);
                        service.handle(now, DelayEvent::Arrived { level });
                    }
                    _ => {
                        now += amount;
                        service.tick(now);
                    }
                }
                run(&mut service, &queues, &mut delivered, now, true);
                for level in 1..=2 {
                    let cursor = service.cursor(level);
                    proptest::prop_assert!(cursor >= last_cursors[level as usize]);
                    last_cursors[level as usize] = cursor;
                }
            }
            // The failures stop; time runs on: everything goes.
            for _ in 0..50 {
                now += 1_000;
                service.tick(now);
                run(&mut service, &queues, &mut delivered, now, false);
            }
            let stored: usize = queues.values().map(Vec::len).sum();
            proptest::prop_assert_eq!(delivered.len(), stored);
        }
    }
}
