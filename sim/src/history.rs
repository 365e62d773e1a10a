//! The recorded history of a run: every send and what became of it, every delivery, every
//! resume and every fault, in the order they happened on the simulated clock. Workloads record
//! into one [`History`]; the [`checkers`](crate::checkers) read it after the run.
//!
//! A message is named by the id its body carries ([`workload::body`](crate::workload::body)),
//! so a delivery names the send it came from, and its body hash says whether it came intact.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// Where a message is stored: a broker's queue of a topic, and the offset in that queue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub broker: String,
    pub topic: String,
    pub queue: i32,
    pub offset: i64,
}

/// How a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SendMode {
    Sync,
    Async,
    Oneway,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message was sent. `due_wall` is the wall time (ms) before which a delayed message
    /// must not be delivered.
    Sent { id: u64, mode: SendMode, body_hash: u32, due_wall: Option<i64> },
    /// The broker acknowledged the send: under SYNC_FLUSH the message is durable at `place`,
    /// its record at `stored_at` in the commit log. A delayed message's place is where it
    /// waits, not where it is delivered: `None`.
    Acked { id: u64, place: Option<Place>, stored_at: Option<u64> },
    /// The broker refused the send with this code: the message was not stored.
    Refused { id: u64, code: i32 },
    /// Stored or not, nobody can tell: no answer came (a timeout, a lost connection, a oneway
    /// send), or one that does not promise durability (FLUSH_DISK_TIMEOUT).
    InDoubt { id: u64 },
    /// A consumer got message `id` from `place`, stored at `stored_wall` (ms).
    Delivered { consumer: String, place: Place, id: u64, body_hash: u32, stored_wall: i64 },
    /// An orderly consumer consumed the message at `place` relying on the queue lock it asked
    /// its broker for at `lock_asked`, whose grant reached it at `lock_answered`.
    UnderLock { consumer: String, place: Place, lock_asked: Instant, lock_answered: Instant },
    /// A consumer lost its position in a queue and resumed at `resumed`; it had read up to
    /// `before`.
    Resumed {
        consumer: String,
        broker: String,
        topic: String,
        queue: i32,
        before: i64,
        resumed: i64,
    },
    /// A consumer committed `offset` of a queue at `sent`. If `answered`, the broker took it
    /// at some moment between `sent` and this entry's time; if not, it may take it at any
    /// later moment, or never (the request may still be on its way).
    Committed {
        consumer: String,
        broker: String,
        topic: String,
        queue: i32,
        offset: i64,
        sent: Instant,
        answered: bool,
    },
    /// A node lost power (its disk crashed with it) at wall time `wall` (ms).
    Crashed { node: String, wall: i64 },
    /// A node stopped itself (a failed fsync) at wall time `wall` (ms), to be restarted
    /// without losing its page cache.
    Stopped { node: String, wall: i64 },
    /// A broker's store recovered: its commit log ends at `end` (what survived the crash).
    Recovered { node: String, end: u64 },
    /// Broker `node` made the records at these commit-log offsets visible to consumers
    /// (dispatched them: past its confirm offset), each a message of the workload (its id).
    Confirmed { node: String, records: Vec<(u64, u64)> },
    /// A transaction producer's application decided transaction `id` for good: commit (its
    /// message must be delivered) or roll back (it must never be).
    Decided { id: u64, commit: bool },
    /// A transaction producer answered a check of transaction `id`, whose copy of the half
    /// message carried check count `times` and was stored at `stored_wall` (ms).
    Checked { id: u64, times: i32, stored_wall: i64 },
    /// A cancel of timer message `id` was sent; the broker acknowledged it at wall time
    /// `acked_wall` (ms), or `None`: refused, or no answer (it may have landed).
    Cancelled { id: u64, acked_wall: Option<i64> },
    /// A POP consumer's delivery from `place` is hidden from its group from `popped` until
    /// `until` (the broker's pop time and invisible time, as the handle it came with says, or
    /// an answered change of its invisible time).
    Invisible { consumer: String, place: Place, popped: Instant, until: Instant },
    /// A POP consumer is about to acknowledge its delivery from `place` (`change: false`) or to
    /// change its invisible time (`change: true`): from here the broker may have it.
    PopAsked { consumer: String, place: Place, change: bool },
    /// A POP consumer acknowledged its delivery from `place` (`change: false`) or changed its
    /// invisible time (`change: true`); `answered`: the broker answered SUCCESS (`Some(true)`),
    /// refused (`Some(false)`), or no answer came (`None`).
    PopAnswered { consumer: String, place: Place, change: bool, answered: Option<bool> },
    /// A POP consumer's receive failed: the broker may have handed out messages nobody got.
    PopLost { consumer: String },
    /// The last fault is over: the cluster is whole from here on.
    Healed,
}

/// An event and when it happened on the simulated clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at: Instant,
    pub event: Event,
}

/// A run's history, shared by its workloads; clones record into the same one.
#[derive(Clone, Default)]
pub struct History {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl History {
    /// Records `event` as happening now. It goes to the trace too (`cargo sim --trace`), and so
    /// into the event log whose hash two runs of a seed must agree on.
    pub fn record(&self, event: Event) {
        tracing::debug!(target: "petrel_sim::history", ?event, "history");
        self.lock().push(Entry { at: Instant::now(), event });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entries so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// Ids acknowledged so far.
    pub fn acked(&self) -> BTreeSet<u64> {
        let entries = self.lock();
        entries
            .iter()
            .filter_map(|e| if let Event::Acked { id, .. } = e.event { Some(id) } else { None })
            .collect()
    }

    /// Whether any send was acknowledged yet.
    pub fn any_acked(&self) -> bool {
        self.lock().iter().any(|e| matches!(e.event, Event::Acked { .. }))
    }

    /// Sends that have an outcome (acknowledged, refused or in doubt).
    pub fn sends_settled(&self) -> u64 {
        let entries = self.lock();
        entries
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    Event::Acked { .. } | Event::Refused { .. } | Event::InDoubt { .. }
                )
            })
            .count() as u64
    }

    /// Ids `consumer` (any consumer, when `None`) has been delivered so far.
    pub fn delivered(&self, consumer: Option<&str>) -> BTreeSet<u64> {
        let entries = self.lock();
        entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::Delivered { consumer: c, id, .. } if consumer.is_none_or(|x| x == c) => {
                    Some(*id)
                }
                _ => None,
            })
            .collect()
    }

    /// Whether every acknowledged message has been delivered to `consumer` (any, if `None`).
    pub fn all_acked_delivered(&self, consumer: Option<&str>) -> bool {
        let delivered = self.delivered(consumer);
        self.acked().iter().all(|id| delivered.contains(id))
    }

    /// Waits until every acknowledged message reached `consumer` (anyone, if `None`), or for
    /// `bound` at most: the liveness phase, whose verdict is [`live`](crate::checkers::live).
    pub async fn settle(&self, consumer: Option<&str>, bound: std::time::Duration) {
        let deadline = Instant::now() + bound;
        while !self.all_acked_delivered(consumer) && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Counts of each kind of event, for a run's summary.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        let mut delivered: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        let entries = self.lock();
        for entry in entries.iter() {
            match &entry.event {
                Event::Sent { mode, .. } => *summary.sent.entry(*mode).or_default() += 1,
                Event::Acked { .. } => summary.acked += 1,
                Event::Refused { .. } => summary.refused += 1,
                Event::InDoubt { .. } => summary.in_doubt += 1,
                Event::Delivered { consumer, id, .. } => {
                    summary.deliveries += 1;
                    if !delivered.entry(consumer).or_default().insert(*id) {
                        summary.duplicates += 1;
                    }
                }
                Event::Resumed { .. } => summary.resumes += 1,
                Event::Committed { answered, .. } => summary.commits += u64::from(*answered),
                Event::Crashed { .. } => summary.crashes += 1,
                Event::Stopped { .. } => summary.stops += 1,
                Event::Healed
                | Event::Recovered { .. }
                | Event::Confirmed { .. }
                | Event::Decided { .. }
                | Event::Checked { .. }
                | Event::Cancelled { .. }
                | Event::UnderLock { .. }
                | Event::Invisible { .. }
                | Event::PopAsked { .. }
                | Event::PopAnswered { .. }
                | Event::PopLost { .. } => {}
            }
        }
        summary
    }
}

/// How many of each event a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: BTreeMap<SendMode, u64>,
    pub acked: u64,
    pub refused: u64,
    pub in_doubt: u64,
    pub deliveries: u64,
    /// Deliveries of a message its consumer already had.
    pub duplicates: u64,
    pub resumes: u64,
    pub commits: u64,
    pub crashes: u64,
    pub stops: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent: Vec<String> =
            self.sent.iter().map(|(mode, n)| format!("{n} {mode:?}").to_lowercase()).collect();
        write!(
            f,
            "sent {}: {} acked, {} refused, {} in doubt; {} deliveries ({} duplicates), \
             {} commits, {} resumes; {} power losses, {} stops",
            if sent.is_empty() { "nothing".to_owned() } else { sent.join(", ") },
            self.acked,
            self.refused,
            self.in_doubt,
            self.deliveries,
            self.duplicates,
            self.commits,
            self.resumes,
            self.crashes,
            self.stops,
        )
    }
}

/// Wall-clock milliseconds (simulated): the clock store timestamps use.
pub fn wall_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

/// The hash a history keeps of a body: CRC-32, as a record's body CRC.
pub fn body_hash(body: &[u8]) -> u32 {
    petrel_core::record::crc32_positive(body)
}
