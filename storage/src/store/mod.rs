//! `Store`: the commit log, its consume queues and the checkpoint, over a `Disk`.
//!
//! Synchronous and thread-safe: the broker's tasks call `append`, the flush service calls
//! `flush_log`, the dispatch service `dispatch`, and readers `get_messages` and friends, all
//! concurrently. Appends serialise on one lock (as RocketMQ's put-message lock); readers take
//! a snapshot of the file list and read through zero-copy slices.
//!
//! Durability is an explicit step: `append` only writes to the page cache; `flush_log` makes
//! everything appended so far durable and publishes the flushed offset; only then may a
//! SYNC_FLUSH producer be acknowledged, and only records below the confirm offset are
//! dispatched to consumers.
//!
//! By concern: `open` (read the images, plan and apply recovery), `append`, `dispatch` (consume
//! queues and the index), `read` (queues, keys, offsets, times), `clean` (disk fill and expired
//! files), `flush` (the commit log's flush, the checkpoint, the clean shutdown). This file
//! holds the types they share and the offsets the store publishes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use petrel_core::broker::SCHEDULE_TOPIC;
use petrel_core::ha::epoch::{EpochCache, EpochEntry as CoreEpoch};
use petrel_core::record::{
    self, encode_record, encoded_len, is_valid_topic, scan_record, Checks, Record, RecordInput,
    RecordPlace, Scanned, BLANK_BYTES_MIN, MAGIC_BLANK, PROPERTY_CRC32,
};

use crate::checkpoint::{Checkpoint, CHECKPOINT_BYTES};
use crate::cleanup;
use crate::config::{StoreConfig, CQ_UNIT_BYTES};
use crate::consume_queue::{ConsumeQueue, PutOutcome};
use crate::disk::{self, Disk, DiskFile, DiskLock};
use crate::error::{IoContext, StoreError};
use crate::index::{key_hash, Index};
use crate::recovery::{self, FileImage, QueueImage, RecoveryPlan, StoreImage, SyncedLoss, Unit};
use crate::segments::{Segment, Segments};

mod append;
mod clean;
mod dispatch;
mod epochs;
mod flush;
mod open;
mod read;
pub use read::RecordFilter;
mod replicate;
mod truncate;

/// Ordered maps: iteration order decides the order of syncs, which must not vary between runs.
type QueueMap<T> = BTreeMap<Box<str>, BTreeMap<i32, T>>;

/// Where an append went: one record, or the records of one batch, stored together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The first record's offset in the commit log.
    pub physical_offset: u64,
    /// The bytes of every record.
    pub size: u32,
    /// The first record's queue offset; the others follow it one by one.
    pub queue_offset: i64,
    /// How many records.
    pub count: u32,
    pub store_timestamp: i64,
    /// The offset after the last record: it is acknowledged, durable or confirmed once the
    /// offset concerned reaches this.
    pub end_offset: u64,
    /// The epoch the records were written in.
    pub epoch: u32,
    /// The broker address in the record, for `msg_id`.
    pub store_host: std::net::SocketAddr,
    /// How many truncations the store had seen when the records were written: one since
    /// means they may be gone (`Store::truncations`).
    pub truncations: u64,
}

/// Where an epoch's writes begin in the commit log (an entry of RocketMQ's epoch file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: u32,
    pub start_offset: u64,
}

impl Appended {
    /// The first record's offset message id (`offsetMsgId`), built only when a response
    /// needs it.
    pub fn msg_id(&self) -> String {
        record::offset_msg_id(self.store_host, self.physical_offset as i64)
    }
}

/// What recovery found and did, for the log and for checkers.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub plan: RecoveryPlan,
    /// Consume-queue units that recovery found different from the log and replaced.
    pub units_replaced: u64,
}

/// What the commit log holds at an offset a reader walks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A whole record, its checks passed.
    Record(Bytes),
    /// The filler that ends a file: the next record starts in the next file.
    Blank,
    /// Nothing that reads whole: past the end, or a read that failed its checks (a faulty
    /// read may succeed when tried again).
    Unreadable,
}

/// RocketMQ's `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    NoMatchedMessage,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
    /// The first message is damaged: read after read, it fails its CRC or is not the record its
    /// queue unit names. Not RocketMQ's (which would serve it); the reader cannot get past it.
    ReadFailed,
}

/// Messages read from one queue.
#[derive(Debug, Clone)]
pub struct GetMessages {
    pub status: GetStatus,
    /// Whole records, each a zero-copy slice of the commit log.
    pub messages: Vec<Bytes>,
    /// Where the consumer should read next.
    pub next_begin_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// Commit-log bytes written after the last record this read looked at (RocketMQ's
    /// `maxOffsetPy - maxPhyOffsetPulling`), 0 when it looked at none: how far behind the
    /// writer this reader is, which decides whether it is told to read from a slave.
    pub behind_bytes: u64,
}

/// How much one read may return.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub messages_max: usize,
    pub bytes_max: usize,
    /// Units looked at while filtering before giving up (`maxFilterMessageCount`).
    pub scan_units_max: u64,
}

impl Default for ReadLimits {
    /// RocketMQ's in-memory transfer limits: 32 messages, 256 KiB.
    fn default() -> Self {
        ReadLimits { messages_max: 32, bytes_max: 256 << 10, scan_units_max: 16_000 }
    }
}

struct Writer {
    segments: Segments,
    write_offset: u64,
    queue_next: QueueMap<i64>,
    buffer: Vec<u8>,
    store_timestamp_max: i64,
    /// Where each epoch seen began, oldest first (`epochs`).
    epochs: EpochCache,
}

struct Dispatcher {
    position: u64,
    /// Store timestamp of the last record dispatched.
    timestamp: i64,
    /// Queues holding units of records already handed over whose write failed: the next
    /// round writes them before it reports its position, so that a dispatched offset always
    /// names readable units.
    unwritten: Vec<Arc<Mutex<ConsumeQueue>>>,
}

struct Durable {
    checkpoint_file: Option<Arc<dyn DiskFile>>,
    /// Store timestamp of the newest record at the last commit-log flush.
    physic_timestamp: i64,
}

/// The store. See the module documentation.
pub struct Store {
    disk: Arc<dyn Disk>,
    config: StoreConfig,
    writer: Mutex<Writer>,
    files: RwLock<Arc<[Segment]>>,
    queues: RwLock<QueueMap<Arc<Mutex<ConsumeQueue>>>>,
    /// `None` when `messageIndexEnable` is off.
    index: Option<Mutex<Index>>,
    dispatcher: Mutex<Dispatcher>,
    durable: Mutex<Durable>,
    written: AtomicU64,
    flushed: AtomicU64,
    /// Set from outside (the confirm machine): dispatch never passes it.
    confirmed: AtomicU64,
    dispatched: AtomicU64,
    /// Raised by each truncation, under the writer's lock.
    truncations: AtomicU64,
    /// The checkpoint's flushed offset is written no higher than this
    /// (`StoreConfig::hold_recovery_start`); `u64::MAX` when nothing is held.
    recovery_hold: AtomicU64,
    stopped: Mutex<Option<String>>,
    /// Set when shutdown begins: appends are refused from then on, while the shutdown still
    /// flushes, dispatches and checkpoints.
    closing: std::sync::atomic::AtomicBool,
    /// The disk's fill at the last cleanup pass when it was over the warning ratio, else 0
    /// (100 from a read-only start until a pass finds room).
    disk_full_percent: AtomicU64,
    /// Cleanup passes left that delete expired files whatever the hour: an operator asked
    /// (DELETE_EXPIRED_COMMITLOG; RocketMQ's `manualDeleteFileSeveralTimes`).
    manual_passes: AtomicU64,
    /// The store opened read-only: the disk had no room for the `abort` file, so nothing is
    /// appended until a cleanup pass finds room and writes it.
    abort_missing: std::sync::atomic::AtomicBool,
    /// Held while the `abort` file is being made after a read-only open: one maker at a time.
    abort_making: Mutex<()>,
    /// The store directory's `lock`, held for the store's life.
    _lock: DiskLock,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The offset after the last appended record.
    pub fn written_offset(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Everything below this offset is durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Consumers may see records below this offset: recovery confirms what it recovered, and
    /// then only [`Store::confirm`] moves it.
    pub fn confirm_offset(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Lets dispatch hand records below `up_to` to consumers. The confirm machine decides
    /// when (`petrel_core::confirm`); it never confirms past what was appended.
    pub fn confirm(&self, up_to: u64) {
        let written = self.written_offset();
        assert!(up_to <= written, "confirm {up_to} past the end of the log {written}");
        self.confirmed.fetch_max(up_to, Ordering::AcqRel);
    }

    /// Lets the checkpoint move the next recovery's start past where this run's began
    /// (`StoreConfig::hold_recovery_start`): the owner is done with that range.
    pub fn release_recovery_start(&self) {
        self.recovery_hold.store(u64::MAX, Ordering::Release);
    }

    /// The flushed offset a checkpoint may name: the flushed offset, but not past a held
    /// recovery start. Every byte below it was synced all the same.
    pub(super) fn checkpoint_flushed(&self, flushed: u64) -> u64 {
        flushed.min(self.recovery_hold.load(Ordering::Acquire))
    }

    /// Where each epoch's writes begin, oldest first: what the epoch file is written from.
    pub fn epochs(&self) -> Vec<EpochEntry> {
        epochs::entries(&lock(&self.writer).epochs)
    }

    /// The epochs as the AutoSwitch handshake and the consistent point use them.
    pub fn epoch_cache(&self) -> EpochCache {
        lock(&self.writer).epochs.clone()
    }

    /// The newest epoch and where it began, without copying the others.
    pub fn last_epoch(&self) -> Option<CoreEpoch> {
        lock(&self.writer).epochs.last()
    }

    /// How many times the log was cut back since the store opened: an append made before a
    /// truncation may be gone, and is never to be acknowledged.
    pub fn truncations(&self) -> u64 {
        self.truncations.load(Ordering::Acquire)
    }

    /// Records below this offset have their consume-queue units.
    pub fn dispatched_offset(&self) -> u64 {
        self.dispatched.load(Ordering::Acquire)
    }

    /// No record at or past this offset has a consume-queue unit a reader may have seen. It is
    /// [`Store::dispatched_offset`] but after a round that failed part of the way: the queues
    /// it wrote before the failure (an index write failing last) are readable past the
    /// dispatched offset, up to here.
    pub fn handed_over_offset(&self) -> u64 {
        lock(&self.dispatcher).position
    }

    /// The offset of the oldest byte still in the commit log.
    pub fn min_physical_offset(&self) -> u64 {
        self.files.read().unwrap_or_else(|p| p.into_inner()).first().map_or(0, |s| s.base)
    }

    /// `Err(Stopped)` once a failed sync has stopped the store.
    pub fn check_running(&self) -> Result<(), StoreError> {
        match lock(&self.stopped).as_ref() {
            Some(reason) => Err(StoreError::Stopped(reason.clone())),
            None => Ok(()),
        }
    }

    /// A sync of a file beside the store failed (a timer file): nothing about the disk is
    /// known any more, so the store stops for good, as after a failed sync of its own.
    pub fn stop_after_failed_sync(&self, what: &str, error: std::io::Error) -> StoreError {
        self.stop(what, error)
    }

    /// A failed sync: nothing about the disk is known any more. Stop for good.
    fn stop(&self, what: &str, error: std::io::Error) -> StoreError {
        let reason = format!("{what}: {error}");
        tracing::error!(%reason, "store stopping: a disk sync failed");
        lock(&self.stopped).get_or_insert(reason.clone());
        StoreError::Stopped(reason)
    }

    /// Turns a failed sync anywhere below into the store's stop.
    fn fatal<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.map_err(|error| match error {
            StoreError::SyncFailed { what, source } => self.stop(&what, source),
            other => other,
        })
    }

    /// Internal consistency, for tests and the simulator: offsets in order, queues sane.
    pub fn check_invariants(&self) {
        let (written, flushed) = (self.written_offset(), self.flushed_offset());
        assert!(flushed <= written, "flushed {flushed} past written {written}");
        let confirmed = self.confirm_offset();
        assert!(confirmed <= written, "confirmed {confirmed} past written {written}");
        let dispatched = self.dispatched_offset();
        assert!(dispatched <= confirmed, "dispatched {dispatched} past confirmed {confirmed}");
        let writer = lock(&self.writer);
        writer.epochs.check_invariants();
        let past_end = writer.epochs.last().filter(|e| e.start as u64 > writer.write_offset);
        assert!(
            past_end.is_none(),
            "epoch {past_end:?} starts past the log's end {}",
            writer.write_offset
        );
        drop(writer);
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        for by_id in queues.values() {
            for queue in by_id.values() {
                lock(queue).check_invariants();
            }
        }
    }
}

/// How many times a read of bytes this store wrote is made before a failing check is taken
/// for damage rather than a read error (a flipped bit comes and goes, with at most one read in
/// fifty in the simulator).
const READS_MAX: usize = 8;
