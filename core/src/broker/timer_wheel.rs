//! The timer wheel service as a core (RocketMQ's `TimerMessageStore` threads: EnqueueGet,
//! EnqueuePut, DequeueGet, DequeuePut and the flush service, as one machine). See
//! [`crate::broker::timer`] for the pipelines; this module is the state.
//!
//! What it promises, given a shell that does each action before the next and reports it:
//! - a message whose unit is in a slot is put once the slot is read, and the read position
//!   moves past a slot only after every put of it was reported done;
//! - a persisted progress never counts a message whose unit is not below the timer log's end
//!   at that moment (no enqueue step is in flight when `Persist` is handed out), so a restart
//!   that cuts the log at the persisted end and enqueues again from the persisted offset
//!   places every message exactly once;
//! - a slot is read only after the enqueue pipeline knew itself caught up past its end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::broker::timer::{
    TimerSettings, BLANK_SLOTS, MAGIC_DEFAULT, MAGIC_DELETE, MAGIC_ROLL, WHEEL_SLOTS,
};
use crate::broker::timer_unit::TimerUnit;
use crate::Millis;

/// How long the enqueue pipeline waits before it reads again when a read found nothing new
/// but messages stored are not in the queue yet (an arrival wakes it sooner).
const NOT_CAUGHT_UP_WAIT_MS: Millis = 10;

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    pub settings: TimerSettings,
    /// How long after a failed step the step is tried again.
    pub retry_ms: Millis,
    /// `timerFlushIntervalMs`: how often progress is persisted when it moved.
    pub persist_interval_ms: Millis,
}

/// One pending second of the wheel: a list of timer-log units linked backwards from
/// `last_pos`, as a slot of the `timerwheel` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub first_pos: i64,
    pub last_pos: i64,
    /// RocketMQ's count: units to deliver less cancels.
    pub num: i32,
    /// Units in the list.
    pub units: u32,
}

/// A timer message the enqueue pipeline read from the timer topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub queue_offset: i64,
    pub offset_py: i64,
    pub size_py: i32,
    /// `TIMER_OUT_MS`; `None` when missing or not a number (the message is skipped).
    pub out_ms: Option<i64>,
    /// It carries `TIMER_DEL_UNIQKEY`: a cancel.
    pub delete: bool,
    /// `realTopicHash` of its unit.
    pub topic_hash: i32,
    /// When the store took it (its record's store timestamp, the same on every replica).
    pub stored_ms: i64,
}

/// A unit of a slot read back, with the keys of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotUnit {
    pub pos: i64,
    pub magic: i32,
    pub write_time_ms: i64,
    pub offset_py: i64,
    pub size_py: i32,
    /// `realTopicHash` of its unit.
    pub topic_hash: i32,
    /// `None`: its message is gone from the commit log (it is skipped).
    pub keys: Option<UnitKeys>,
}

/// A unit of the timer log found at start, from which the wheel is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedUnit {
    pub pos: i64,
    pub slot_time: i64,
    pub magic: i32,
    pub topic_hash: i32,
}

/// What a cancel matches: a cancel's `TIMER_DEL_UNIQKEY`, a message's `REAL_TOPIC+UNIQ_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitKeys {
    pub delete_key: Option<String>,
    pub key: Option<String>,
}

/// Which pipeline an action or event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Enqueue,
    Dequeue,
}

/// What the shell must do; each reports back with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerAction {
    /// Read the timer topic from `offset`: report `Read` (or `Failed(Enqueue)`).
    Read { offset: i64 },
    /// Write this unit at the timer log's end: report `Appended` (or `Failed(Enqueue)`).
    Append(TimerUnit),
    /// Read the units of the slot at `time_ms` (oldest first) and their messages: report
    /// `SlotRead` (or `Failed(Dequeue)`).
    ReadSlot { time_ms: i64, slot: SlotRef },
    /// Append the message at `offset_py` again: to its real topic, or (`roll`) to the timer
    /// topic; report `Put` (or `Failed(Dequeue)`, or `Dropped` when it can never be put).
    Put { offset_py: i64, size_py: i32, roll: bool, enqueue_ms: i64 },
    /// Flush the commit log and the timer log, write `slots` to the wheel file, then the
    /// checkpoint with the timer log's end: report `Persisted`.
    Persist(TimerProgress),
}

/// What a checkpoint records, and the slots changed since the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerProgress {
    pub read_time_ms: i64,
    pub queue_offset: i64,
    pub slots: Vec<(i64, SlotRef)>,
    /// A slot is being read: some of its puts may precede this progress in the commit log.
    pub reading_slot: bool,
    /// The lowest timer-log position a slot not yet read starts at (`None`: no slot waits):
    /// once this progress is on disk, files wholly below it are not needed again.
    pub oldest_pos: Option<i64>,
    /// [`TimerService::waiting`] now, for `config/timermetrics`.
    pub waiting: BTreeMap<i32, i64>,
}

/// What the shell found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerEvent {
    /// New timer messages were stored.
    Arrived,
    /// The messages read from the asked offset; `next` is where the queue continues;
    /// `caught_up_at`: the time at which every acknowledged timer message was readable and
    /// this read reached the queue's end.
    Read {
        arrivals: Vec<Arrival>,
        next: i64,
        caught_up_at: Option<Millis>,
    },
    Appended {
        pos: i64,
    },
    SlotRead {
        units: Vec<SlotUnit>,
    },
    Put,
    /// The message cannot be put (it names no real topic, or is gone): it is skipped.
    Dropped,
    Failed(Pipe),
    Persisted {
        written: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Enqueue {
    /// Caught up; reads again at `until` (to move the write time) or on an arrival.
    Idle {
        until: Millis,
    },
    Reading,
    /// Placing `batch` one message at a time; `out`: the slot and magic of the unit whose
    /// append is out (it is linked there, whatever moved since).
    Placing {
        batch: VecDeque<Arrival>,
        /// Where the read began, and where the queue continues.
        from: i64,
        next: i64,
        caught_up_at: Option<Millis>,
        out: Option<(i64, i32)>,
    },
    Retrying {
        until: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Dequeue {
    /// Waits for the write time to pass the read time.
    Waiting,
    Reading,
    /// Putting the slot's messages in order; the front one is out unless `retry_at`.
    Putting {
        puts: VecDeque<SlotUnit>,
        retry_at: Option<Millis>,
    },
    Retrying {
        until: Millis,
    },
}

/// Where the dequeue pipeline stands after a roll: the copy it wrote must have its unit before
/// any later slot is read (it may be due in one of them when the wheel is behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    Open,
    /// A roll was put: the next read of the timer topic must catch up first.
    AwaitRead,
    /// That read is out.
    ReadOut,
}

/// The timer wheel service. See the module documentation.
#[derive(Debug, Clone)]
pub struct TimerService {
    config: TimerConfig,
    wheel: BTreeMap<i64, SlotRef>,
    /// Slots changed since they were last handed out to persist.
    changed: BTreeSet<i64>,
    /// The slots of the persist out: changed again if it fails.
    persisting_slots: Vec<i64>,
    read_time: i64,
    write_time: i64,
    queue_offset: i64,
    enqueue: Enqueue,
    dequeue: Dequeue,
    fence: Fence,
    dirty: bool,
    persisting: bool,
    persist_at: Millis,
    actions: VecDeque<TimerAction>,
    stats: TimerStats,
    /// Per `realTopicHash`, the messages waiting in slots not being read: RocketMQ's count
    /// (units less cancels), as `config/timermetrics` shows it per topic.
    waiting: BTreeMap<i32, i64>,
    /// A follower (a slave): slots before this time, which its master has read, are passed
    /// over without a put, and a message whose slot was passed is not placed (the master put
    /// it). `None`: this service delivers.
    follow: Option<i64>,
    /// [`TimerResume::delivered_before`].
    delivered_before: Option<i64>,
}

/// Counts since start, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerStats {
    pub enqueued: u64,
    pub delivered: u64,
    pub rolled: u64,
    pub cancelled: u64,
    pub dropped: u64,
    /// Messages not placed because their slot was passed and their master put them.
    pub passed: u64,
}

/// Where a restarted service resumes: the checkpoint, and the units of the timer log up to
/// its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerResume {
    pub read_time_ms: i64,
    pub queue_offset: i64,
    /// A follower's checkpoint's read position (the broker was a slave, and is now promoted):
    /// the position only ever moved to a master's whose puts were confirmed, so a message due
    /// before it that is enqueued again (the follower's backlog) was delivered already by the
    /// master it followed, and is not placed again.
    pub delivered_before: Option<i64>,
}

impl TimerService {
    /// A service resuming from `resume`; `units` are the timer log's units in log order, from
    /// which the wheel is rebuilt: those of slots already read are passed over. The read time
    /// is at most a wheel behind now.
    pub fn new(
        config: TimerConfig,
        resume: TimerResume,
        units: impl IntoIterator<Item = LoggedUnit>,
        now: Millis,
    ) -> TimerService {
        let p = config.settings.precision_ms;
        let oldest = config.settings.slot(now as i64) - (WHEEL_SLOTS - BLANK_SLOTS) * p;
        let read_time = config.settings.slot(resume.read_time_ms.max(oldest));
        // No slot is read before the first read that catches up: the messages enqueued again
        // (and their cancels) must be in their slots first.
        let write_time = read_time;
        let mut service = TimerService {
            persist_at: now.saturating_add(config.persist_interval_ms),
            config,
            wheel: BTreeMap::new(),
            changed: BTreeSet::new(),
            persisting_slots: Vec::new(),
            read_time,
            write_time,
            queue_offset: resume.queue_offset.max(0),
            enqueue: Enqueue::Reading,
            dequeue: Dequeue::Waiting,
            fence: Fence::Open,
            dirty: false,
            persisting: false,
            actions: VecDeque::new(),
            stats: TimerStats::default(),
            waiting: BTreeMap::new(),
            follow: None,
            delivered_before: resume.delivered_before,
        };
        for unit in units {
            if unit.slot_time >= read_time {
                service.link(unit.slot_time, unit.pos, unit.magic, unit.topic_hash);
            }
        }
        service.changed.clear();
        service.actions.push_back(TimerAction::Read { offset: service.queue_offset });
        service.tick(now);
        service
    }

    /// Makes this service a follower (a slave's): it places the units its master does, passes
    /// over the slots before `limit` (the master's read position) without putting anything,
    /// and drops a message whose slot it passed already (the master put it). Called again as
    /// the master's position moves; a follower never reads past it.
    pub fn follow(&mut self, limit: i64) {
        let limit = self.config.settings.slot(limit);
        self.follow = Some(self.follow.map_or(limit, |was| was.max(limit)));
    }

    /// The next slot to read.
    pub fn read_time(&self) -> i64 {
        self.read_time
    }

    /// The last second the enqueue pipeline was caught up.
    pub fn write_time(&self) -> i64 {
        self.write_time
    }

    /// The next timer-topic offset to enqueue.
    pub fn queue_offset(&self) -> i64 {
        self.queue_offset
    }

    /// The pending slots.
    pub fn slots(&self) -> &BTreeMap<i64, SlotRef> {
        &self.wheel
    }

    /// Units waiting in the wheel.
    pub fn pending(&self) -> u64 {
        self.wheel.values().map(|s| u64::from(s.units)).sum()
    }

    pub fn stats(&self) -> TimerStats {
        self.stats
    }

    /// Per `realTopicHash`, the messages waiting in slots not being read, less cancels.
    pub fn waiting(&self) -> &BTreeMap<i32, i64> {
        &self.waiting
    }

    /// Whether a unit's append is out.
    fn appending(&self) -> bool {
        matches!(self.enqueue, Enqueue::Placing { out: Some(_), .. })
    }

    /// Whether the enqueue pipeline waits for arrivals (the shell tells it of them).
    pub fn is_idle(&self) -> bool {
        matches!(self.enqueue, Enqueue::Idle { .. })
    }

    /// Progress as a checkpoint would record it now (what a clean shutdown writes).
    pub fn progress(&self) -> TimerProgress {
        let slots = self.changed.iter().filter_map(|t| Some((*t, *self.wheel.get(t)?))).collect();
        let oldest_pos = self.wheel.values().map(|s| s.first_pos).min();
        TimerProgress {
            read_time_ms: self.read_time,
            queue_offset: self.queue_offset,
            slots,
            reading_slot: self.dequeue != Dequeue::Waiting,
            oldest_pos,
            waiting: self.waiting.clone(),
        }
    }

    fn link(&mut self, slot_time: i64, pos: i64, magic: i32, topic_hash: i32) {
        let delta = count_of(magic);
        *self.waiting.entry(topic_hash).or_default() += i64::from(delta);
        let slot = self.wheel.entry(slot_time).or_insert(SlotRef {
            first_pos: pos,
            last_pos: -1,
            num: 0,
            units: 0,
        });
        slot.last_pos = pos;
        slot.num += delta;
        slot.units += 1;
        self.changed.insert(slot_time);
    }

    /// The first slot a unit may still join: the read position, or the slot after it while
    /// that one is being read.
    fn first_unread(&self) -> i64 {
        match self.dequeue {
            Dequeue::Waiting => self.read_time,
            _ => self.read_time + self.config.settings.precision_ms,
        }
    }

    /// The time units are written at: the write time, or the first slot not read when that is
    /// later (after a restart, before the first read that caught up).
    fn base_time(&self) -> i64 {
        self.write_time.max(self.first_unread())
    }

    /// Where a message stored at `stored_ms` and due at `out_ms` goes: its slot and magic. A
    /// time further than the roll window from its store waits as a roll in the slot a window
    /// before its own (at most a window after the write time). Unlike RocketMQ's (a roll when
    /// the time is a window past the write time, half a window or a window after it), neither
    /// depends on when the unit is written: a message enqueued again after a restart, or by a
    /// slave, rolls or not in the same slot each time, so a promoted slave's roll meets its
    /// old master's in the commit log. A time whose slot was read already (the broker was down, or the enqueue
    /// pipeline behind) waits in the first slot not read: with a cancel of it, which names
    /// the same time and so lands there too, when the broker took the cancel before that
    /// slot's end.
    fn place(&self, arrival: &Arrival, out_ms: i64) -> (i64, i32) {
        let settings = &self.config.settings;
        let (p, window) = (settings.precision_ms, settings.roll_window_slots);
        let delete = arrival.delete;
        let mut magic = if delete { MAGIC_DEFAULT | MAGIC_DELETE } else { MAGIC_DEFAULT };
        let first_unread = self.first_unread();
        let mut slot = settings.slot(out_ms).max(first_unread);
        if out_ms - arrival.stored_ms >= window * p {
            magic |= MAGIC_ROLL;
            let w = self.base_time();
            slot = (settings.slot(out_ms) - window * p).min(w + window * p).max(first_unread);
        }
        (slot, magic)
    }

    /// A message not to place: it was put already (see `follow`, `delivered_before`).
    fn passed(&self, out_ms: i64) -> bool {
        let slot = self.config.settings.slot(out_ms);
        (self.follow.is_some() && slot < self.first_unread())
            || self.delivered_before.is_some_and(|before| slot < before)
    }

    pub fn handle(&mut self, now: Millis, event: TimerEvent) {
        match event {
            TimerEvent::Arrived => {
                if self.is_idle() {
                    self.read_queue();
                }
            }
            TimerEvent::Read { arrivals, next, caught_up_at } => {
                assert_eq!(self.enqueue, Enqueue::Reading, "a read nobody asked for");
                assert!(next >= self.queue_offset, "the queue continues before the cursor");
                let (batch, from) = (arrivals.into(), self.queue_offset);
                self.enqueue = Enqueue::Placing { batch, from, next, caught_up_at, out: None };
                self.place_next(now);
            }
            TimerEvent::Appended { pos } => self.appended(now, pos),
            TimerEvent::SlotRead { units } => self.slot_read(now, units),
            TimerEvent::Put => self.slot_put(now, false),
            TimerEvent::Dropped => {
                self.stats.dropped += 1;
                self.slot_put(now, true);
            }
            TimerEvent::Failed(pipe) => self.failed(now, pipe),
            TimerEvent::Persisted { written } => {
                assert!(self.persisting, "a persist nobody asked for");
                self.persisting = false;
                self.dirty |= !written;
                let handed_out = std::mem::take(&mut self.persisting_slots);
                if !written {
                    let pending = handed_out.into_iter().filter(|t| self.wheel.contains_key(t));
                    self.changed.extend(pending);
                }
            }
        }
        self.tick(now);
    }

    fn read_queue(&mut self) {
        if self.fence == Fence::AwaitRead {
            self.fence = Fence::ReadOut;
        }
        self.enqueue = Enqueue::Reading;
        self.actions.push_back(TimerAction::Read { offset: self.queue_offset });
    }

    /// Hands out the step for the next message of the batch, or ends the batch.
    fn place_next(&mut self, now: Millis) {
        loop {
            let Enqueue::Placing { batch, from, next, caught_up_at, out } = &self.enqueue else {
                unreachable!("placing outside a batch")
            };
            assert!(out.is_none(), "two steps of one batch out");
            let Some(arrival) = batch.front().cloned() else {
                let (moved, next, caught_up_at) = (*next > *from, *next, *caught_up_at);
                return self.batch_done(now, moved, next, caught_up_at);
            };
            match arrival.out_ms {
                Some(out_ms) if self.passed(out_ms) => {
                    self.stats.passed += 1;
                    self.batch().0.pop_front();
                    self.advance_queue(arrival.queue_offset + 1);
                }
                Some(out_ms) => {
                    let (slot, magic) = self.place(&arrival, out_ms);
                    let unit = self.unit_for(&arrival, slot, magic);
                    *self.batch().1 = Some((slot, magic));
                    self.actions.push_back(TimerAction::Append(unit));
                    return;
                }
                // Nothing says when (RocketMQ cannot parse it either): skipped.
                None => {
                    self.stats.dropped += 1;
                    self.batch().0.pop_front();
                    self.advance_queue(arrival.queue_offset + 1);
                }
            }
        }
    }

    /// The batch being placed, and the unit whose append is out.
    fn batch(&mut self) -> (&mut VecDeque<Arrival>, &mut Option<(i64, i32)>) {
        match &mut self.enqueue {
            Enqueue::Placing { batch, out, .. } => (batch, out),
            other => panic!("an enqueue step nobody asked for ({other:?})"),
        }
    }

    /// The unit of a message in `slot`, linked to the slot's head.
    fn unit_for(&self, arrival: &Arrival, slot: i64, magic: i32) -> TimerUnit {
        let base = self.base_time();
        TimerUnit {
            prev_pos: self.wheel.get(&slot).map_or(-1, |s| s.last_pos),
            magic,
            write_time_ms: base,
            delay_ms: (slot - base) as i32,
            offset_py: arrival.offset_py,
            size_py: arrival.size_py,
            topic_hash: arrival.topic_hash,
        }
    }

    fn advance_queue(&mut self, to: i64) {
        if to > self.queue_offset {
            self.queue_offset = to;
            self.dirty = true;
        }
    }

    fn appended(&mut self, now: Millis, pos: i64) {
        let (batch, out) = self.batch();
        let (slot, magic) = out.take().expect("an append nobody asked for");
        let arrival = batch.pop_front().expect("an append for the batch's first message");
        let topic_hash = arrival.topic_hash;
        self.link(slot, pos, magic, topic_hash);
        self.stats.enqueued += 1;
        self.advance_queue(arrival.queue_offset + 1);
        self.place_next(now);
    }

    /// The batch read from the queue is placed; `moved`: the read found something.
    fn batch_done(&mut self, now: Millis, moved: bool, next: i64, caught_up_at: Option<Millis>) {
        self.advance_queue(next);
        match caught_up_at {
            Some(at) => {
                let at = self.config.settings.slot(at as i64);
                self.write_time = self.write_time.max(at);
                if self.fence == Fence::ReadOut {
                    self.fence = Fence::Open;
                }
                self.enqueue = Enqueue::Idle { until: self.next_second(now) };
            }
            // More to read at once.
            None if moved => self.read_queue(),
            // Stored messages not yet in the queue: the next arrival (or a short wait) brings
            // them; reading again at once would only spin.
            None => {
                let until = now.saturating_add(NOT_CAUGHT_UP_WAIT_MS);
                self.enqueue = Enqueue::Idle { until };
            }
        }
    }

    /// The start of the next slot after `now`.
    fn next_second(&self, now: Millis) -> Millis {
        (self.config.settings.slot(now as i64) + self.config.settings.precision_ms) as Millis
    }

    fn failed(&mut self, now: Millis, pipe: Pipe) {
        let until = now.saturating_add(self.config.retry_ms);
        match pipe {
            Pipe::Enqueue => {
                assert!(
                    matches!(
                        self.enqueue,
                        Enqueue::Reading | Enqueue::Placing { out: Some(_), .. }
                    ),
                    "an enqueue failure nobody asked for"
                );
                self.enqueue = Enqueue::Retrying { until };
            }
            Pipe::Dequeue => match &mut self.dequeue {
                Dequeue::Reading => self.dequeue = Dequeue::Retrying { until },
                Dequeue::Putting { retry_at, .. } if retry_at.is_none() => *retry_at = Some(until),
                other => panic!("a dequeue failure nobody asked for ({other:?})"),
            },
        }
    }

    fn slot_read(&mut self, now: Millis, units: Vec<SlotUnit>) {
        assert_eq!(self.dequeue, Dequeue::Reading, "a slot nobody asked for");
        for unit in &units {
            *self.waiting.entry(unit.topic_hash).or_default() -= i64::from(count_of(unit.magic));
        }
        // A follower's master put the slot's messages.
        let units = if self.follow.is_some() { Vec::new() } else { units };
        let deleted: BTreeSet<&str> = units
            .iter()
            .filter(|u| u.magic & MAGIC_DELETE != 0 && u.magic & MAGIC_ROLL == 0)
            .filter_map(|u| u.keys.as_ref()?.delete_key.as_deref())
            .collect();
        let mut puts = VecDeque::new();
        for unit in &units {
            let roll = unit.magic & MAGIC_ROLL != 0;
            if unit.magic & MAGIC_DELETE != 0 && !roll {
                continue;
            }
            let Some(keys) = &unit.keys else {
                self.stats.dropped += 1;
                continue;
            };
            if !roll && keys.key.as_deref().is_some_and(|k| deleted.contains(k)) {
                self.stats.cancelled += 1;
                continue;
            }
            puts.push_back(unit.clone());
        }
        self.dequeue = Dequeue::Putting { puts, retry_at: None };
        self.put_next(now);
    }

    fn put_next(&mut self, now: Millis) {
        let Dequeue::Putting { puts, .. } = &self.dequeue else {
            unreachable!("putting outside a slot")
        };
        match puts.front() {
            Some(unit) => {
                let roll = unit.magic & MAGIC_ROLL != 0;
                self.actions.push_back(TimerAction::Put {
                    offset_py: unit.offset_py,
                    size_py: unit.size_py,
                    roll,
                    enqueue_ms: unit.write_time_ms,
                });
            }
            None => {
                // Every message of the slot is out: the read position passes it.
                self.wheel.remove(&self.read_time);
                self.changed.remove(&self.read_time);
                self.read_time += self.config.settings.precision_ms;
                self.dirty = true;
                self.dequeue = Dequeue::Waiting;
                self.next_slot(now);
            }
        }
    }

    fn slot_put(&mut self, now: Millis, dropped: bool) {
        let Dequeue::Putting { puts, retry_at } = &mut self.dequeue else {
            panic!("a put nobody asked for")
        };
        assert!(retry_at.is_none(), "a put reported while it waits to be tried again");
        let unit = puts.pop_front().expect("a put of the slot's next message");
        if !dropped {
            match unit.magic & MAGIC_ROLL != 0 {
                true => {
                    self.stats.rolled += 1;
                    self.fence = Fence::AwaitRead;
                    if self.is_idle() {
                        self.read_queue();
                    }
                }
                false => self.stats.delivered += 1,
            }
        }
        self.put_next(now);
    }

    /// Reads the slot at the read position once the write time passed it, jumping over
    /// empty seconds.
    fn next_slot(&mut self, _now: Millis) {
        // A unit whose append is out may belong to the next slot: it is linked first.
        let fenced = self.fence != Fence::Open || self.appending();
        if self.dequeue != Dequeue::Waiting || self.read_time >= self.write_time || fenced {
            return;
        }
        let end = self.follow.map_or(self.write_time, |limit| limit.min(self.write_time));
        if self.read_time >= end {
            return;
        }
        let next = self.wheel.range(self.read_time..).next().map(|(t, s)| (*t, *s));
        match next {
            Some((time_ms, slot)) if time_ms < end => {
                if time_ms != self.read_time {
                    self.read_time = time_ms;
                    self.dirty = true;
                }
                self.dequeue = Dequeue::Reading;
                self.actions.push_back(TimerAction::ReadSlot { time_ms, slot });
            }
            _ => {
                self.read_time = end;
                self.dirty = true;
            }
        }
    }

    /// Time passed: retries go again, an idle enqueue reads to move the write time, due
    /// slots are read, and progress is persisted on its interval.
    pub fn tick(&mut self, now: Millis) {
        match self.enqueue {
            Enqueue::Idle { until } | Enqueue::Retrying { until } if until <= now => {
                self.read_queue()
            }
            _ => {}
        }
        match &mut self.dequeue {
            Dequeue::Retrying { until } if *until <= now => {
                self.dequeue = Dequeue::Waiting;
            }
            Dequeue::Putting { retry_at: Some(at), .. } if *at <= now => {
                if let Dequeue::Putting { retry_at, .. } = &mut self.dequeue {
                    *retry_at = None;
                }
                self.put_next(now);
            }
            _ => {}
        }
        self.next_slot(now);
        let enqueue_busy = self.appending();
        if now >= self.persist_at && !enqueue_busy {
            self.persist_at = now.saturating_add(self.config.persist_interval_ms);
            if self.dirty && !self.persisting {
                self.persisting = true;
                self.dirty = false;
                let progress = self.progress();
                self.persisting_slots = progress.slots.iter().map(|(t, _)| *t).collect();
                self.changed.clear();
                self.actions.push_back(TimerAction::Persist(progress));
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<TimerAction> {
        self.actions.pop_front()
    }

    /// The next time `tick` has work.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let enqueue = match self.enqueue {
            Enqueue::Idle { until } | Enqueue::Retrying { until } => Some(until),
            _ => None,
        };
        let dequeue = match self.dequeue {
            Dequeue::Retrying { until } | Dequeue::Putting { retry_at: Some(until), .. } => {
                Some(until)
            }
            _ => None,
        };
        Some([enqueue, dequeue].into_iter().flatten().fold(self.persist_at, Millis::min))
    }

    /// The wheel holds no slot before the read position, and none it has not linked; at most
    /// one step per pipeline and one persist are out.
    pub fn check_invariants(&self) {
        let p = self.config.settings.precision_ms;
        assert_eq!(self.read_time % p, 0, "the read position is not a slot's start");
        assert_eq!(self.write_time % p, 0, "the write time is not a slot's start");
        if let Some((first, _)) = self.wheel.first_key_value() {
            assert!(
                *first >= self.read_time,
                "slot {first} is behind the read position {}",
                self.read_time
            );
        }
        for (time, slot) in &self.wheel {
            assert!(slot.units > 0 && slot.first_pos >= 0, "slot {time} is linked to nothing");
            assert!(slot.first_pos <= slot.last_pos, "slot {time}'s list runs forwards");
        }
        let count = |pipe: Pipe| {
            self.actions
                .iter()
                .filter(|a| match a {
                    TimerAction::Read { .. } | TimerAction::Append(_) => pipe == Pipe::Enqueue,
                    TimerAction::ReadSlot { .. } | TimerAction::Put { .. } => pipe == Pipe::Dequeue,
                    TimerAction::Persist(_) => false,
                })
                .count()
        };
        assert!(count(Pipe::Enqueue) <= 1, "two enqueue steps out");
        assert!(count(Pipe::Dequeue) <= 1, "two dequeue steps out");
        let persists = self.actions.iter().filter(|a| matches!(a, TimerAction::Persist(_)));
        assert!(persists.count() <= usize::from(self.persisting), "a persist out twice");
        let read = match self.dequeue {
            Dequeue::Putting { .. } => self.wheel.get(&self.read_time).map_or(0, |s| s.num),
            _ => 0,
        };
        let slots: i64 =
            self.wheel.values().map(|s| i64::from(s.num)).sum::<i64>() - i64::from(read);
        let waiting: i64 = self.waiting.values().sum();
        assert_eq!(waiting, slots, "the per-topic counts are not the slots' counts");
    }
}

/// What a unit adds to RocketMQ's count of its slot: 1, or -1 for a cancel.
fn count_of(magic: i32) -> i32 {
    if magic & MAGIC_DELETE != 0 {
        -1
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = 1_000;

    fn config(window: i64) -> TimerConfig {
        TimerConfig {
            settings: TimerSettings::new(true, P, window, 3 * 86_400),
            retry_ms: 500,
            persist_interval_ms: 10_000,
        }
    }

    fn start(window: i64, now: Millis) -> TimerService {
        let resume =
            TimerResume { read_time_ms: now as i64, queue_offset: 0, delivered_before: None };
        TimerService::new(config(window), resume, [], now)
    }

    fn drain(service: &mut TimerService) -> Vec<TimerAction> {
        service.check_invariants();
        std::iter::from_fn(|| service.poll_action()).collect()
    }

    fn arrival(queue_offset: i64, out_ms: i64) -> Arrival {
        Arrival {
            queue_offset,
            offset_py: 1_000 + queue_offset,
            size_py: 100,
            out_ms: Some(out_ms),
            delete: false,
            topic_hash: 7,
            stored_ms: 0,
        }
    }

    /// Time passes to `now` and the queue read then finds nothing new: caught up.
    fn caught_up(service: &mut TimerService, now: Millis) -> Vec<TimerAction> {
        service.tick(now);
        drain(service);
        let next = service.queue_offset();
        service.handle(now, TimerEvent::Read { arrivals: vec![], next, caught_up_at: Some(now) });
        drain(service)
    }

    /// The first unit of the log, read back: message "T+A" at 1 000, written at `write_time_ms`.
    fn first_unit(write_time_ms: i64) -> SlotUnit {
        SlotUnit {
            pos: 0,
            magic: 1,
            write_time_ms,
            offset_py: 1_000,
            size_py: 100,
            topic_hash: 7,
            keys: keys("T+A"),
        }
    }

    fn keys(key: &str) -> Option<UnitKeys> {
        Some(UnitKeys { delete_key: None, key: Some(key.into()) })
    }

    /// Answers the read at `now` with `arrivals`, caught up, and the appends with positions
    /// from `pos` on; returns the units written.
    fn enqueue(service: &mut TimerService, now: Millis, arrivals: Vec<Arrival>) -> Vec<TimerUnit> {
        let next = arrivals.last().map_or(service.queue_offset(), |a| a.queue_offset + 1);
        let read = TimerEvent::Read { arrivals, next, caught_up_at: Some(now) };
        service.handle(now, read);
        let mut units = Vec::new();
        loop {
            let actions = drain(service);
            let Some(TimerAction::Append(unit)) =
                actions.iter().find(|a| matches!(a, TimerAction::Append(_))).cloned()
            else {
                return units;
            };
            units.push(unit);
            service.handle(now, TimerEvent::Appended { pos: 52 * (units.len() as i64 - 1) });
        }
    }

    #[test]
    fn a_message_is_read_once_its_slot_ended_then_the_read_position_passes_it() {
        let mut service = start(100, 10_000);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 0 }]);
        let units = enqueue(&mut service, 10_100, vec![arrival(0, 12_000)]);
        assert_eq!(units.len(), 1);
        let unit = units[0];
        assert_eq!(
            (unit.prev_pos, unit.magic, unit.write_time_ms, unit.delay_ms),
            (-1, 1, 10_000, 2_000)
        );
        assert_eq!(service.queue_offset(), 1);
        assert_eq!(service.pending(), 1);
        // At 12 999 the write time is 12 000: slot 12 000 is not over.
        service.tick(11_000);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 1 }]);
        service.handle(
            12_999,
            TimerEvent::Read { arrivals: vec![], next: 1, caught_up_at: Some(12_999) },
        );
        assert!(drain(&mut service).is_empty(), "never early");
        assert_eq!(service.read_time(), 12_000, "empty seconds are passed over");
        service.tick(13_000);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 1 }]);
        service.handle(
            13_000,
            TimerEvent::Read { arrivals: vec![], next: 1, caught_up_at: Some(13_000) },
        );
        let slot = SlotRef { first_pos: 0, last_pos: 0, num: 1, units: 1 };
        assert_eq!(drain(&mut service), [TimerAction::ReadSlot { time_ms: 12_000, slot }]);
        let unit = first_unit(10_000);
        service.handle(13_001, TimerEvent::SlotRead { units: vec![unit] });
        let put =
            TimerAction::Put { offset_py: 1_000, size_py: 100, roll: false, enqueue_ms: 10_000 };
        assert_eq!(drain(&mut service), [put]);
        assert_eq!(service.read_time(), 12_000, "the read position waits for the put");
        service.handle(13_002, TimerEvent::Put);
        assert_eq!(service.read_time(), 13_000);
        assert_eq!(service.pending(), 0);
        assert_eq!(service.stats().delivered, 1);
    }

    #[test]
    fn a_slot_waits_until_the_enqueue_pipeline_caught_up_past_it() {
        let mut service = start(100, 10_000);
        drain(&mut service);
        enqueue(&mut service, 10_000, vec![arrival(0, 10_500)]);
        service.tick(20_000);
        let reads = |actions: Vec<TimerAction>| -> Vec<TimerAction> {
            actions.into_iter().filter(|a| !matches!(a, TimerAction::Persist(_))).collect()
        };
        assert_eq!(reads(drain(&mut service)), [TimerAction::Read { offset: 1 }]);
        // Not caught up: no slot is read, and the next read waits for an arrival (or 10 ms).
        let read = TimerEvent::Read { arrivals: vec![], next: 1, caught_up_at: None };
        service.handle(20_000, read);
        assert_eq!(reads(drain(&mut service)), []);
        assert_eq!(service.write_time(), 10_000);
        service.handle(20_001, TimerEvent::Arrived);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 1 }]);
        // A full batch that is not the queue's end reads on at once.
        let read =
            TimerEvent::Read { arrivals: vec![arrival(1, 30_000)], next: 2, caught_up_at: None };
        service.handle(20_002, read);
        assert!(matches!(drain(&mut service)[..], [TimerAction::Append(_)]));
        service.handle(20_003, TimerEvent::Appended { pos: 52 });
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 2 }]);
    }

    #[test]
    fn a_time_beyond_the_window_rolls_a_window_before_its_slot() {
        let mut service = start(90, 0);
        drain(&mut service);
        // 90 s window: 100 s rolls at 10 s, 150 s at 60 s, whenever the unit is written.
        let units = enqueue(
            &mut service,
            0,
            vec![arrival(0, 100_000), arrival(1, 150_000), arrival(2, 89_000)],
        );
        let placed: Vec<(i32, i32)> = units.iter().map(|u| (u.magic, u.delay_ms)).collect();
        assert_eq!(
            placed,
            [
                (MAGIC_DEFAULT | MAGIC_ROLL, 10_000),
                (MAGIC_DEFAULT | MAGIC_ROLL, 60_000),
                (MAGIC_DEFAULT, 89_000)
            ]
        );
        let actions = caught_up(&mut service, 46_000);
        assert!(
            matches!(actions[..], [TimerAction::ReadSlot { time_ms: 10_000, .. }]),
            "{actions:?}"
        );
        let unit = SlotUnit { magic: 3, ..first_unit(0) };
        service.handle(46_001, TimerEvent::SlotRead { units: vec![unit] });
        let roll = TimerAction::Put { offset_py: 1_000, size_py: 100, roll: true, enqueue_ms: 0 };
        assert_eq!(drain(&mut service), [roll], "a roll goes back to the timer topic");
        service.handle(46_002, TimerEvent::Put);
        assert_eq!(service.stats().rolled, 1);
    }

    #[test]
    fn after_a_roll_no_later_slot_is_read_before_the_queue_is_caught_up_again() {
        let mut service = start(6, 0);
        drain(&mut service);
        // A roll to 1 s (a window before 7 s), and a message at 5 s; the wheel falls behind
        // to 10 s.
        enqueue(&mut service, 0, vec![arrival(0, 7_000), arrival(1, 5_000)]);
        let actions = caught_up(&mut service, 10_000);
        assert!(
            matches!(actions[..], [TimerAction::ReadSlot { time_ms: 1_000, .. }]),
            "{actions:?}"
        );
        let roll = SlotUnit { magic: 3, ..first_unit(0) };
        service.handle(10_001, TimerEvent::SlotRead { units: vec![roll] });
        drain(&mut service);
        service.handle(10_002, TimerEvent::Put);
        // The rolled copy (due at 7 s) is not in the queue's units yet: slot 5 s waits.
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 2 }]);
        service.handle(
            10_003,
            TimerEvent::Read {
                arrivals: vec![Arrival { stored_ms: 10_002, ..arrival(2, 7_000) }],
                next: 3,
                caught_up_at: Some(10_003),
            },
        );
        assert!(matches!(drain(&mut service)[..], [TimerAction::Append(_)]));
        service.handle(10_004, TimerEvent::Appended { pos: 104 });
        let actions = drain(&mut service);
        assert!(
            matches!(actions[..], [TimerAction::ReadSlot { time_ms: 5_000, .. }]),
            "{actions:?}"
        );
        assert_eq!(service.slots()[&7_000].units, 1, "the copy waits in its slot");
    }

    #[test]
    fn a_unit_is_linked_where_it_was_written_and_no_slot_is_read_while_it_is_out() {
        let mut service = start(100, 0);
        drain(&mut service);
        // Slots 1 s and 2 s due; the wheel reads 1 s and puts its message.
        enqueue(&mut service, 0, vec![arrival(0, 1_500), arrival(1, 2_500)]);
        let actions = caught_up(&mut service, 5_000);
        assert!(matches!(actions[..], [TimerAction::ReadSlot { time_ms: 1_000, .. }]));
        let unit = first_unit(0);
        service.handle(5_001, TimerEvent::SlotRead { units: vec![unit] });
        assert!(matches!(drain(&mut service)[..], [TimerAction::Put { .. }]));
        // A late message is placed while the put is out: in slot 2 s, the first not read.
        service.handle(5_002, TimerEvent::Arrived);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 2 }]);
        let mut late = arrival(2, 500);
        late.offset_py = 9_000;
        service
            .handle(5_003, TimerEvent::Read { arrivals: vec![late], next: 3, caught_up_at: None });
        let actions = drain(&mut service);
        let [TimerAction::Append(unit)] = &actions[..] else { panic!("{actions:?}") };
        assert_eq!(unit.slot_time(), 2_000);
        assert_eq!(unit.prev_pos, 52, "behind slot 2 s's head");
        // The put ends slot 1 s; slot 2 s waits for the unit, then holds it.
        service.handle(5_004, TimerEvent::Put);
        assert!(drain(&mut service).iter().all(|a| !matches!(a, TimerAction::ReadSlot { .. })));
        service.handle(5_005, TimerEvent::Appended { pos: 104 });
        assert_eq!(service.slots()[&2_000].units, 2);
        let actions = drain(&mut service);
        let read = actions.iter().find(|a| matches!(a, TimerAction::ReadSlot { .. }));
        let slot = SlotRef { first_pos: 52, last_pos: 104, num: 2, units: 2 };
        assert_eq!(read, Some(&TimerAction::ReadSlot { time_ms: 2_000, slot }));
    }

    #[test]
    fn slots_of_a_failed_persist_are_handed_out_again() {
        let mut service = start(100, 0);
        drain(&mut service);
        enqueue(&mut service, 0, vec![arrival(0, 30_000)]);
        service.tick(10_000);
        let persisted = |actions: Vec<TimerAction>| {
            actions.into_iter().find_map(|a| match a {
                TimerAction::Persist(progress) => Some(progress.slots),
                _ => None,
            })
        };
        let slots = persisted(drain(&mut service)).expect("a persist");
        assert_eq!(slots.len(), 1);
        service.handle(10_001, TimerEvent::Persisted { written: false });
        service.tick(20_000);
        assert_eq!(persisted(drain(&mut service)), Some(slots), "the slot goes again");
    }

    /// A follower places what its master places, passes over the slots its master read
    /// without a put, and drops a message whose slot it passed (its master put it).
    #[test]
    fn a_follower_passes_over_what_its_master_read_and_puts_nothing() {
        let mut service = start(100, 10_000);
        service.follow(9_000);
        drain(&mut service);
        enqueue(&mut service, 10_000, vec![arrival(0, 12_000), arrival(1, 15_000)]);
        assert!(caught_up(&mut service, 20_000).is_empty(), "the master has not read them");
        service.follow(13_000);
        service.tick(20_001);
        let slot = SlotRef { first_pos: 0, last_pos: 0, num: 1, units: 1 };
        assert_eq!(drain(&mut service), [TimerAction::ReadSlot { time_ms: 12_000, slot }]);
        let unit = first_unit(10_000);
        service.handle(20_002, TimerEvent::SlotRead { units: vec![unit] });
        assert!(drain(&mut service).is_empty(), "no put, and nothing past the master");
        assert_eq!((service.read_time(), service.pending()), (13_000, 1));
        assert_eq!(service.waiting()[&7], 1);
        service.tick(21_000);
        assert_eq!(drain(&mut service), [TimerAction::Read { offset: 2 }]);
        let read = TimerEvent::Read {
            arrivals: vec![arrival(2, 12_500)],
            next: 3,
            caught_up_at: Some(21_000),
        };
        service.handle(21_000, read);
        drain(&mut service);
        assert_eq!((service.stats().passed, service.queue_offset()), (1, 3), "passed: dropped");
        assert_eq!(service.pending(), 1);
    }

    /// A follower's checkpoint, opened by the promoted broker: a message due before its read
    /// position was put already by the old master and is dropped, also after the first
    /// caught-up read; one due after it is placed.
    #[test]
    fn a_message_due_before_the_checkpoints_read_position_is_not_placed_again() {
        let resume =
            TimerResume { read_time_ms: 13_000, queue_offset: 2, delivered_before: Some(13_000) };
        let mut service = TimerService::new(config(100), resume, [], 20_000);
        drain(&mut service);
        let read = TimerEvent::Read {
            arrivals: vec![arrival(2, 12_500), arrival(3, 14_000)],
            next: 4,
            caught_up_at: None,
        };
        service.handle(20_000, read);
        let appended = drain(&mut service);
        assert!(matches!(appended[..], [TimerAction::Append(u)] if u.offset_py == 1_003));
        service.handle(20_001, TimerEvent::Appended { pos: 0 });
        assert_eq!(service.stats().passed, 1);
        caught_up(&mut service, 20_002);
        service.tick(21_000);
        drain(&mut service);
        let late = enqueue(&mut service, 21_000, vec![arrival(4, 12_000), arrival(5, 16_000)]);
        assert_eq!(service.stats().passed, 2, "still due before the checkpoint's position");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].write_time_ms + i64::from(late[0].delay_ms), 16_000, "in its slot");
    }

    #[test]
    fn a_cancel_in_the_slot_keeps_its_message_from_going() {
        let mut service = start(100, 0);
        drain(&mut service);
        let mut cancel = arrival(1, 5_000);
        cancel.delete = true;
        let units = enqueue(&mut service, 0, vec![arrival(0, 5_000), cancel, arrival(2, 5_000)]);
        assert_eq!(units[1].magic, MAGIC_DEFAULT | MAGIC_DELETE);
        assert_eq!(units[1].prev_pos, 0, "linked behind the message");
        assert_eq!(service.slots()[&5_000].num, 1, "a cancel counts down");
        assert_eq!(service.waiting()[&7], 1, "and so does its topic's count");
        caught_up(&mut service, 6_000);
        let target = first_unit(0);
        let other = SlotUnit { pos: 104, keys: keys("T+B"), offset_py: 1_002, ..target.clone() };
        let delete = SlotUnit {
            pos: 52,
            magic: 5,
            topic_hash: 7,
            keys: Some(UnitKeys { delete_key: Some("T+A".into()), key: None }),
            offset_py: 1_001,
            ..target.clone()
        };
        service.handle(6_001, TimerEvent::SlotRead { units: vec![target, delete, other] });
        let put = TimerAction::Put { offset_py: 1_002, size_py: 100, roll: false, enqueue_ms: 0 };
        assert_eq!(drain(&mut service), [put]);
        assert_eq!(service.stats().cancelled, 1);
        assert_eq!(service.waiting()[&7], 0, "a slot being read waits no more");
    }

    #[test]
    fn a_time_already_passed_waits_in_the_first_slot_not_read_with_its_cancel() {
        let mut service = start(100, 50_000);
        drain(&mut service);
        let mut cancel = arrival(1, 10_000);
        cancel.delete = true;
        let units = enqueue(&mut service, 50_000, vec![arrival(0, 10_000), cancel]);
        let placed: Vec<(i64, i32, i32)> =
            units.iter().map(|u| (u.write_time_ms, u.delay_ms, u.magic)).collect();
        assert_eq!(placed, [(50_000, 0, MAGIC_DEFAULT), (50_000, 0, MAGIC_DEFAULT | MAGIC_DELETE)]);
        assert_eq!(service.queue_offset(), 2);
        assert_eq!(service.slots()[&50_000].units, 2, "the cancel meets its message");
    }

    #[test]
    fn progress_is_persisted_between_enqueue_steps_with_the_slots_it_changed() {
        let mut service = start(100, 0);
        drain(&mut service);
        service.handle(
            0,
            TimerEvent::Read { arrivals: vec![arrival(0, 30_000)], next: 1, caught_up_at: Some(0) },
        );
        assert!(matches!(drain(&mut service)[..], [TimerAction::Append(_)]));
        service.tick(10_000);
        assert!(drain(&mut service).is_empty(), "no persist while a unit is out");
        service.handle(10_000, TimerEvent::Appended { pos: 0 });
        let slot = SlotRef { first_pos: 0, last_pos: 0, num: 1, units: 1 };
        let progress = TimerProgress {
            read_time_ms: 0,
            queue_offset: 1,
            slots: vec![(30_000, slot)],
            reading_slot: false,
            oldest_pos: Some(0),
            waiting: BTreeMap::from([(7, 1)]),
        };
        let actions = drain(&mut service);
        assert!(actions.contains(&TimerAction::Persist(progress)), "{actions:?}");
        service.handle(10_001, TimerEvent::Persisted { written: false });
        service.tick(20_000);
        let again = drain(&mut service);
        assert!(
            again.iter().any(|a| matches!(a, TimerAction::Persist(_))),
            "a failed write goes again"
        );
    }

    #[test]
    fn a_restart_rebuilds_the_wheel_from_the_units_of_slots_not_read() {
        let logged =
            |pos, slot_time, magic, topic_hash| LoggedUnit { pos, slot_time, magic, topic_hash };
        let units = [
            logged(0, 5_000, 1, 7),
            logged(52, 9_000, 1, 8),
            logged(104, 9_000, 5, 8),
            logged(156, 4_000, 1, 7),
        ];
        let resume = TimerResume { read_time_ms: 5_000, queue_offset: 4, delivered_before: None };
        let service = TimerService::new(config(100), resume, units, 8_000);
        let waiting: Vec<(i32, i64)> = service.waiting().iter().map(|(h, n)| (*h, *n)).collect();
        assert_eq!(waiting, [(7, 1), (8, 0)], "a cancel counts against its topic; a read slot not");
        let slots: Vec<(i64, SlotRef)> = service.slots().iter().map(|(t, s)| (*t, *s)).collect();
        assert_eq!(
            slots,
            [
                (5_000, SlotRef { first_pos: 0, last_pos: 0, num: 1, units: 1 }),
                (9_000, SlotRef { first_pos: 52, last_pos: 104, num: 0, units: 2 }),
            ]
        );
        assert_eq!(service.queue_offset(), 4);
        service.check_invariants();
    }

    #[test]
    fn a_failed_put_goes_again_and_the_read_position_waits() {
        let mut service = start(100, 0);
        drain(&mut service);
        enqueue(&mut service, 0, vec![arrival(0, 1_500)]);
        caught_up(&mut service, 2_000);
        let unit = first_unit(0);
        service.handle(2_001, TimerEvent::SlotRead { units: vec![unit] });
        drain(&mut service);
        service.handle(2_002, TimerEvent::Failed(Pipe::Dequeue));
        assert_eq!(service.poll_timeout(), Some(2_502));
        service.tick(2_501);
        assert!(drain(&mut service).is_empty());
        service.tick(2_502);
        assert!(matches!(drain(&mut service)[..], [TimerAction::Put { .. }]));
        assert_eq!(service.read_time(), 1_000);
    }
}
