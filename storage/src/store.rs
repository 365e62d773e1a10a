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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use petrel_core::broker::SCHEDULE_TOPIC;
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

/// Ordered maps: iteration order decides the order of syncs, which must not vary between runs.
type QueueMap<T> = BTreeMap<Box<str>, BTreeMap<i32, T>>;

/// Where an appended message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub physical_offset: u64,
    pub size: u32,
    pub queue_offset: i64,
    pub store_timestamp: i64,
    /// The offset after the record: wait for `flushed >= end_offset` to know it is durable.
    pub end_offset: u64,
    /// The broker address in the record, for `msg_id`.
    pub store_host: std::net::SocketAddr,
}

impl Appended {
    /// The offset message id (`offsetMsgId`), built only when a response needs it.
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
}

struct Dispatcher {
    position: u64,
    /// Store timestamp of the last record dispatched.
    timestamp: i64,
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
    dispatched: AtomicU64,
    stopped: Mutex<Option<String>>,
    /// Set when shutdown begins: appends are refused from then on, while the shutdown still
    /// flushes, dispatches and checkpoints.
    closing: std::sync::atomic::AtomicBool,
    /// The disk's fill at the last cleanup pass when it was over the warning ratio, else 0.
    disk_full_percent: AtomicU64,
    /// The store directory's `lock`, held for the store's life.
    _lock: DiskLock,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Opens the store under `config.root`, recovering it (see `recovery`), and marks it
    /// running with the `abort` file.
    pub fn open(
        disk: Arc<dyn Disk>,
        config: StoreConfig,
    ) -> Result<(Store, RecoveryReport), StoreError> {
        config.validate().map_err(StoreError::Config)?;
        let root = config.root.clone();
        disk.create_dir_all(&root).context(|| format!("cannot create {}", root.display()))?;
        let lock_path = root.join("lock");
        let lock = disk.lock(&lock_path).map_err(|error| match error.kind() {
            std::io::ErrorKind::WouldBlock => StoreError::Layout(format!(
                "{error}: another broker is using this store directory; stop it or choose \
                 another storePathRootDir"
            )),
            _ => StoreError::io(format!("cannot lock {}", lock_path.display()), error),
        })?;
        let plan = read_and_plan(disk.as_ref(), &config)?;
        if let Some(loss) = plan.synced_loss {
            return Err(synced_loss_error(loss));
        }
        // From here on the store changes files, so a crash must be seen as one.
        create_abort(disk.as_ref(), &config)?;
        let store = Store::apply_plan(disk, config, &plan, lock)?;
        if plan.abnormal {
            store.reindex_newest(plan.redispatch_from)?;
        }
        let units_replaced = store.redispatch(plan.redispatch_from, plan.end)?;
        store.finish_recovery()?;
        Ok((store, RecoveryReport { plan, units_replaced }))
    }

    fn apply_plan(
        disk: Arc<dyn Disk>,
        config: StoreConfig,
        plan: &RecoveryPlan,
        lock: DiskLock,
    ) -> Result<Store, StoreError> {
        let mut segments =
            Segments::load(disk.as_ref(), &config.commit_log_dir(), config.commit_log_file_bytes)?;
        if let Some(segment) = segments.find(plan.end).filter(|s| s.base < plan.end) {
            let at = plan.end - segment.base;
            segment.file.zero_from(at).context(|| "cannot cut the commit log".to_owned())?;
            segment.file.sync().sync_context(|| "cannot sync the commit log".to_owned())?;
        }
        let file_bytes = config.commit_log_file_bytes;
        let keep_to = if plan.end.is_multiple_of(file_bytes) {
            plan.end
        } else {
            plan.end - plan.end % file_bytes + file_bytes
        };
        segments.remove_from(disk.as_ref(), keep_to)?;
        // Recovery trusts what it read, and the page cache can hold writes a failed sync never
        // made durable (a restart without power loss): make all of it durable before the
        // checkpoint says so. Files with nothing dirty sync at almost no cost.
        for segment in segments.files() {
            segment.file.sync().sync_context(|| "cannot sync the commit log".to_owned())?;
        }
        let queues = open_queues(disk.as_ref(), &config, plan)?;
        let index = match config.message_index_enable {
            true => Some(Mutex::new(Index::open(
                disk.as_ref(),
                &config.root.join("index"),
                config.max_hash_slots,
                config.max_index_entries,
            )?)),
            false => None,
        };
        let files: Arc<[Segment]> = segments.files().to_vec().into();
        let writer = Writer {
            segments,
            write_offset: plan.end,
            queue_next: BTreeMap::new(),
            buffer: Vec::new(),
            store_timestamp_max: plan.store_timestamp_max,
        };
        Ok(Store {
            disk,
            config,
            writer: Mutex::new(writer),
            files: RwLock::new(files),
            queues: RwLock::new(queues),
            index,
            dispatcher: Mutex::new(Dispatcher {
                position: plan.redispatch_from,
                timestamp: plan.store_timestamp_max,
            }),
            durable: Mutex::new(Durable {
                checkpoint_file: None,
                physic_timestamp: plan.store_timestamp_max,
            }),
            written: AtomicU64::new(plan.end),
            flushed: AtomicU64::new(plan.end),
            dispatched: AtomicU64::new(plan.redispatch_from),
            stopped: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
            disk_full_percent: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// After a crash, rebuilds the newest index file from the log up to `to` (dispatch covers
    /// the rest); see `Index::drop_newest`.
    fn reindex_newest(&self, to: u64) -> Result<(), StoreError> {
        let Some(index) = &self.index else { return Ok(()) };
        let from = lock(index).drop_newest(self.disk.as_ref())?;
        let mut position = (from.max(0) as u64).max(self.min_physical_offset());
        self.walk_log(&mut position, to, |record| match is_valid_topic(record.topic) {
            true => self.index_record(record),
            false => Ok(()),
        })?;
        lock(index).write_headers()
    }

    /// Dispatches `[from, end)` again and returns how many units differed from the log.
    fn redispatch(&self, from: u64, end: u64) -> Result<u64, StoreError> {
        let mut dispatcher = lock(&self.dispatcher);
        dispatcher.position = from;
        let replaced = self.dispatch_to(&mut dispatcher, end)?;
        self.dispatched.store(dispatcher.position, Ordering::Release);
        Ok(replaced)
    }

    /// Makes recovery's work durable, moves each queue's min offset past records cleanup had
    /// deleted, sets each queue's next offset and writes the checkpoint.
    fn finish_recovery(&self) -> Result<(), StoreError> {
        let log_min = self.min_physical_offset();
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut writer = lock(&self.writer);
        for (topic, by_id) in queues.iter() {
            for (queue_id, queue) in by_id {
                let mut queue = lock(queue);
                queue.remove_before(self.disk.as_ref(), log_min)?;
                queue.flush(self.disk.as_ref())?;
                let next = queue.max_offset() as i64;
                writer.queue_next.entry(topic.clone()).or_default().insert(*queue_id, next);
            }
        }
        drop(writer);
        drop(queues);
        self.write_checkpoint()
    }

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

    /// Consumers may see records below this offset.
    pub fn confirm_offset(&self) -> u64 {
        if self.config.confirms_on_flush() {
            self.flushed_offset()
        } else {
            self.written_offset()
        }
    }

    /// Records below this offset have their consume-queue units.
    pub fn dispatched_offset(&self) -> u64 {
        self.dispatched.load(Ordering::Acquire)
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

    /// A failed sync: nothing about the disk is known any more. Stop for good.
    fn stop(&self, what: &str, error: std::io::Error) -> StoreError {
        let reason = format!("{what}: {error}");
        tracing::error!(%reason, "store stopping: a disk sync failed");
        lock(&self.stopped).get_or_insert(reason.clone());
        StoreError::Stopped(reason)
    }

    /// Appends one message at time `now`, assigning its queue offset and physical place.
    /// The record is in the page cache when this returns; `flush_log` makes it durable.
    pub fn append(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, StoreError> {
        self.check_running()?;
        self.fatal(self.append_running(input, now))
    }

    /// Turns a failed sync anywhere below into the store's stop.
    fn fatal<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.map_err(|error| match error {
            StoreError::SyncFailed { what, source } => self.stop(&what, source),
            other => other,
        })
    }

    fn append_running(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, StoreError> {
        let used_percent = self.disk_full_percent.load(Ordering::Relaxed);
        if used_percent > 0 {
            let limit_percent = self.config.disk_warning_ratio;
            return Err(StoreError::DiskFull { used_percent, limit_percent });
        }
        if input.body.len() > self.config.message_bytes_max {
            let max = self.config.message_bytes_max;
            return Err(StoreError::MessageTooLarge { size: input.body.len(), max });
        }
        if !is_valid_topic(input.topic.as_bytes()) {
            return Err(StoreError::InvalidTopic(input.topic.to_owned()));
        }
        // A producer's own `__CRC32#` would be taken for the store's, or hide it: drop it.
        let stripped;
        let properties = if record::property(input.properties, PROPERTY_CRC32).is_some() {
            stripped = without_property(input.properties, PROPERTY_CRC32);
            &stripped[..]
        } else {
            input.properties
        };
        let input = RecordInput { store_host: self.config.store_host, properties, ..*input };
        let len = encoded_len(&input, self.config.append_record_crc)? as u64;
        if len + BLANK_BYTES_MIN as u64 > self.config.commit_log_file_bytes {
            return Err(StoreError::MessageTooLarge {
                size: len as usize,
                max: self.config.commit_log_file_bytes as usize - BLANK_BYTES_MIN,
            });
        }
        let mut writer = lock(&self.writer);
        // Checked under the lock: shutdown sets the flag, then takes this lock before flushing.
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Stopped("the store is shutting down".into()));
        }
        let writer = &mut *writer;
        let store_timestamp = now.max(writer.store_timestamp_max);
        let segment = self.place(writer, len)?;
        let transaction = input.sys_flag & 0xC;
        let dispatched = transaction != 0x4 && transaction != 0xC;
        // Look the topic up by &str first: `entry` would allocate its key on every append.
        if !writer.queue_next.contains_key(input.topic) {
            writer.queue_next.insert(input.topic.into(), BTreeMap::new());
        }
        let by_id = writer.queue_next.get_mut(input.topic).expect("inserted just above");
        let next = by_id.entry(input.queue_id).or_insert(0);
        let queue_offset = if dispatched { *next } else { 0 };
        let place = RecordPlace {
            queue_offset,
            physical_offset: writer.write_offset as i64,
            store_timestamp,
        };
        writer.buffer.clear();
        encode_record(&input, place, self.config.append_record_crc, &mut writer.buffer)?;
        let at = writer.write_offset - segment.base;
        segment
            .file
            .write_at(at, &writer.buffer)
            .context(|| "cannot append to the commit log".to_owned())?;
        if dispatched {
            *next += 1;
        }
        let physical_offset = writer.write_offset;
        writer.write_offset += len;
        writer.store_timestamp_max = store_timestamp;
        self.written.store(writer.write_offset, Ordering::Release);
        Ok(Appended {
            physical_offset,
            size: len as u32,
            queue_offset,
            store_timestamp,
            end_offset: writer.write_offset,
            store_host: self.config.store_host,
        })
    }

    /// Finds room for `len` bytes: in the current file if the record and a blank filler fit,
    /// else after a blank filler in the next file.
    fn place(&self, writer: &mut Writer, len: u64) -> Result<Segment, StoreError> {
        let file_bytes = self.config.commit_log_file_bytes;
        let segment = self.segment_for_write(writer)?;
        let remaining = segment.base + file_bytes - writer.write_offset;
        if len + BLANK_BYTES_MIN as u64 <= remaining {
            return Ok(segment);
        }
        let mut blank = [0u8; BLANK_BYTES_MIN];
        blank[..4].copy_from_slice(&(remaining as i32).to_be_bytes());
        blank[4..].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
        let at = writer.write_offset - segment.base;
        segment.file.write_at(at, &blank).context(|| "cannot end a commit-log file".to_owned())?;
        writer.write_offset = segment.base + file_bytes;
        self.written.store(writer.write_offset, Ordering::Release);
        self.segment_for_write(writer)
    }

    fn segment_for_write(&self, writer: &mut Writer) -> Result<Segment, StoreError> {
        let count = writer.segments.files().len();
        let segment = writer.segments.find_or_create(self.disk.as_ref(), writer.write_offset)?;
        if writer.segments.files().len() != count {
            let files: Arc<[Segment]> = writer.segments.files().to_vec().into();
            *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
        }
        Ok(segment)
    }

    /// Makes every appended byte durable (one fdatasync per file touched) and returns the new
    /// flushed offset. A failed sync stops the store.
    pub fn flush_log(&self) -> Result<u64, StoreError> {
        self.check_running()?;
        let mut durable = lock(&self.durable);
        let (target, timestamp) = {
            let writer = lock(&self.writer);
            (writer.write_offset, writer.store_timestamp_max)
        };
        let flushed = self.flushed_offset();
        if target <= flushed {
            return Ok(flushed);
        }
        let file_bytes = self.config.commit_log_file_bytes;
        let files = self.files.read().unwrap_or_else(|p| p.into_inner()).clone();
        let first = flushed - flushed % file_bytes;
        for segment in files.iter().filter(|s| s.base >= first && s.base < target) {
            segment.file.sync().map_err(|e| self.stop("commit log sync failed", e))?;
        }
        durable.physic_timestamp = timestamp;
        self.flushed.store(target, Ordering::Release);
        Ok(target)
    }

    /// Hands records below the confirm offset to their consume queues. Returns the new
    /// dispatched offset.
    pub fn dispatch(&self) -> Result<u64, StoreError> {
        self.check_running()?;
        let mut dispatcher = lock(&self.dispatcher);
        let confirm = self.confirm_offset();
        self.fatal(self.dispatch_to(&mut dispatcher, confirm))?;
        self.dispatched.store(dispatcher.position, Ordering::Release);
        Ok(dispatcher.position)
    }

    fn dispatch_to(&self, dispatcher: &mut Dispatcher, end: u64) -> Result<u64, StoreError> {
        let mut touched: Vec<Arc<Mutex<ConsumeQueue>>> = Vec::new();
        let mut replaced = 0;
        let (mut position, mut timestamp) = (dispatcher.position, dispatcher.timestamp);
        let walked = self.walk_log(&mut position, end, |record| {
            replaced += self.dispatch_record(record, &mut touched)?;
            timestamp = record.store_timestamp;
            Ok(())
        });
        // Records handed over before a failure stay handed over: their units are pending.
        (dispatcher.position, dispatcher.timestamp) = (position, timestamp);
        walked?;
        for queue in touched {
            lock(&queue).write_pending(self.disk.as_ref())?;
        }
        if let Some(index) = &self.index {
            lock(index).write_headers()?;
        }
        Ok(replaced)
    }

    /// Calls `visit` for each record from `*position` (a record boundary) up to `end`, moving
    /// `*position` past each record visited and past blank fillers. Stops at the first error.
    fn walk_log(
        &self,
        position: &mut u64,
        end: u64,
        mut visit: impl FnMut(&Record<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let file_bytes = self.config.commit_log_file_bytes;
        while *position < end {
            let Some(segment) = self.segment_at(*position) else { break };
            let file_end = segment.base + file_bytes;
            let to = end.min(file_end);
            let bytes =
                self.read_verified(&segment, *position - segment.base, to - segment.base)?;
            let mut at = 0usize;
            while at < bytes.len() {
                let checks = Checks { physical_offset: Some(*position as i64), crc: false };
                let Scanned::Record(record) = scan_record(&bytes[at..], checks) else {
                    // A blank filler (verified above): the file ends here.
                    *position = file_end;
                    break;
                };
                visit(&record)?;
                at += record.bytes.len();
                *position += record.bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// Reads `[from, to)` of a commit-log file, re-reading when a record in it fails its
    /// checks: the bytes were written by this store, so a failure is a read error.
    fn read_verified(&self, segment: &Segment, from: u64, to: u64) -> Result<Bytes, StoreError> {
        let mut last_error = String::new();
        for _ in 0..READS_MAX {
            let bytes = segment
                .file
                .slice(from, (to - from) as usize)
                .context(|| "cannot read the commit log".to_owned())?;
            match verify_records(&bytes, segment.base + from, self.config.check_crc_on_recover) {
                Ok(()) => return Ok(bytes),
                Err(error) => last_error = error,
            }
        }
        Err(StoreError::Layout(format!("commit log unreadable: {last_error}")))
    }

    fn dispatch_record(
        &self,
        record: &Record<'_>,
        touched: &mut Vec<Arc<Mutex<ConsumeQueue>>>,
    ) -> Result<u64, StoreError> {
        if !is_valid_topic(record.topic) {
            return Ok(0);
        }
        self.index_record(record)?;
        if !recovery::is_dispatched(record) {
            return Ok(0);
        }
        let queue = self.queue_or_create(record.topic_str(), record.queue_id)?;
        let unit = Unit {
            offset: record.physical_offset,
            size: record.bytes.len() as i32,
            tags_code: self.tags_code(record),
        };
        let mut guard = lock(&queue);
        let outcome = guard.put(self.disk.as_ref(), record.queue_offset.max(0) as u64, unit)?;
        drop(guard);
        if !touched.iter().any(|q| Arc::ptr_eq(q, &queue)) {
            touched.push(queue);
        }
        match outcome {
            PutOutcome::Replaced => Ok(1),
            PutOutcome::Hole => {
                tracing::error!(
                    topic = record.topic_str(),
                    queue = record.queue_id,
                    offset = record.queue_offset,
                    "consume queue had a hole; filled"
                );
                Ok(0)
            }
            PutOutcome::Appended | PutOutcome::Present => Ok(0),
        }
    }

    /// The record's consume-queue tag code: the hash of its TAGS, except in the schedule topic,
    /// where it is the time the message is due (`checkMessageAndReturnSize`).
    fn tags_code(&self, record: &Record<'_>) -> i64 {
        if record.topic == SCHEDULE_TOPIC.as_bytes() {
            let level = record.property(b"DELAY").and_then(|l| std::str::from_utf8(l).ok());
            let levels = &self.config.delay_levels;
            if let Some(level) = level.and_then(|l| l.parse().ok()).and_then(|l| levels.clamp(l)) {
                return levels.due_time(level, record.store_timestamp);
            }
        }
        record::tags_code(record.property(b"TAGS").unwrap_or_default())
    }

    /// Index entries for the record's unique key and each of its keys (RocketMQ's
    /// `IndexService.buildIndex`; rolled-back transactional records get none).
    fn index_record(&self, record: &Record<'_>) -> Result<(), StoreError> {
        let Some(index) = &self.index else { return Ok(()) };
        if record.sys_flag & 0xC == 0xC {
            return Ok(());
        }
        let topic = record.topic_str();
        let unique = record.property(b"UNIQ_KEY").into_iter();
        let keys = record.property(b"KEYS").into_iter().flat_map(|k| k.split(|b| *b == b' '));
        let mut index = lock(index);
        for key in unique.chain(keys).filter(|k| !k.is_empty()) {
            let (offset, time) = (record.physical_offset, record.store_timestamp);
            index.put(self.disk.as_ref(), key_hash(topic, key), offset, time)?;
        }
        Ok(())
    }

    /// Messages of `topic` whose KEYS or UNIQ_KEY holds `key`, stored in `[begin, end]`, newest
    /// first, at most `max` (`QUERY_MESSAGE`). Every candidate is read and checked.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> Vec<Bytes> {
        let Some(index) = &self.index else { return Vec::new() };
        let candidates =
            lock(index).lookup(key_hash(topic, key.as_bytes()), max.saturating_mul(2), begin, end);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for offset in candidates {
            if out.len() >= max || offset < 0 || !seen.insert(offset) {
                continue;
            }
            let Some(bytes) = self.message_at(offset as u64) else { continue };
            let matches = match scan_record(&bytes, Checks { physical_offset: None, crc: false }) {
                Scanned::Record(record) => {
                    record.topic == topic.as_bytes() && has_key(&record, key)
                }
                _ => false,
            };
            if matches {
                out.push(bytes);
            }
        }
        out
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<Mutex<ConsumeQueue>>> {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        queues.get(topic)?.get(&queue_id).cloned()
    }

    fn queue_or_create(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Arc<Mutex<ConsumeQueue>>, StoreError> {
        if let Some(queue) = self.queue(topic, queue_id) {
            return Ok(queue);
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        let by_id = queues.entry(topic.into()).or_default();
        if let Some(queue) = by_id.get(&queue_id) {
            return Ok(queue.clone());
        }
        let dir = self.config.cq_root().join(topic).join(queue_id.to_string());
        let queue =
            ConsumeQueue::open(self.disk.as_ref(), &dir, self.config.cq_file_bytes(), None)?;
        let queue = Arc::new(Mutex::new(queue));
        by_id.insert(queue_id, queue.clone());
        Ok(queue)
    }

    /// One cleanup pass at time `now` (RocketMQ's `CleanCommitLogService`, run every 10 s):
    /// measures the disk, refuses or resumes writes, and deletes expired commit-log files,
    /// then the consume-queue and index files that only pointed into them. Returns how many
    /// commit-log files went.
    pub fn clean(&self, now: i64, manual: bool) -> Result<usize, StoreError> {
        self.check_running()?;
        let root = &self.config.root;
        let space =
            self.disk.space(root).context(|| format!("cannot measure {}", root.display()))?;
        let used = space.used_percent();
        let hour = (now.max(0) / 3_600_000 % 24) as u8;
        let decision = cleanup::decide(&self.config, hour, used, manual);
        let full = if decision.refuse_writes { used.max(1) } else { 0 };
        if self.disk_full_percent.swap(full, Ordering::Relaxed) != full {
            tracing::warn!(
                used_percent = used,
                refusing = decision.refuse_writes,
                "disk fill changed"
            );
        }
        if !decision.delete_expired {
            return Ok(0);
        }
        let deleted = self.fatal(self.delete_expired(now, decision.force))?;
        if deleted > 0 {
            let log_min = self.min_physical_offset();
            let queues: Vec<Arc<Mutex<ConsumeQueue>>> = {
                let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
                queues.values().flat_map(|by_id| by_id.values().cloned()).collect()
            };
            for queue in queues {
                self.fatal(lock(&queue).remove_before(self.disk.as_ref(), log_min))?;
            }
            if let Some(index) = &self.index {
                self.fatal(lock(index).remove_before(self.disk.as_ref(), log_min as i64))?;
            }
        }
        Ok(deleted)
    }

    /// Deletes up to `deleteFileBatchMax` of the oldest commit-log files that are
    /// expired (or, forced, any), never the newest nor one not yet flushed and dispatched.
    fn delete_expired(&self, now: i64, force: bool) -> Result<usize, StoreError> {
        let reserved_ms = self.config.file_reserved_hours as i64 * 3_600_000;
        let safe_end = self.flushed_offset().min(self.dispatched_offset());
        let mut writer = lock(&self.writer);
        let files = writer.segments.files().to_vec();
        let mut expired = 0;
        for pair in files.windows(2).take(self.config.delete_files_batch_max) {
            let (old, next) = (&pair[0], &pair[1]);
            if next.base > safe_end {
                break;
            }
            // A file was last written when the next one got its first record.
            let last_written = self.first_store_time(next).unwrap_or(i64::MAX);
            if !force && last_written.saturating_add(reserved_ms) > now {
                break;
            }
            debug_assert!(old.base < next.base, "files in order");
            expired += 1;
        }
        if expired > 0 {
            writer.segments.remove_first(self.disk.as_ref(), expired)?;
            let files: Arc<[Segment]> = writer.segments.files().to_vec().into();
            *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
            tracing::info!(
                files = expired,
                min_offset = self.min_physical_offset(),
                "deleted expired commit-log files"
            );
        }
        Ok(expired)
    }

    fn first_store_time(&self, segment: &Segment) -> Option<i64> {
        let bytes = self.message_at(segment.base)?;
        match scan_record(&bytes, Checks { physical_offset: None, crc: false }) {
            Scanned::Record(record) => Some(record.store_timestamp),
            _ => None,
        }
    }

    /// Syncs every consume queue, then writes the checkpoint.
    pub fn flush_queues(&self) -> Result<(), StoreError> {
        self.check_running()?;
        self.fatal(self.write_checkpoint())
    }

    fn write_checkpoint(&self) -> Result<(), StoreError> {
        let (dispatched, logics_timestamp) = {
            let dispatcher = lock(&self.dispatcher);
            (dispatcher.position, dispatcher.timestamp)
        };
        let queues: Vec<Arc<Mutex<ConsumeQueue>>> = {
            let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
            queues.values().flat_map(|by_id| by_id.values().cloned()).collect()
        };
        for queue in queues {
            lock(&queue).flush(self.disk.as_ref())?;
        }
        if let Some(index) = &self.index {
            lock(index).flush()?;
        }
        let mut durable = lock(&self.durable);
        let flushed = self.flushed_offset();
        let checkpoint = Checkpoint {
            physic_msg_timestamp: durable.physic_timestamp,
            logics_msg_timestamp: logics_timestamp,
            index_msg_timestamp: logics_timestamp,
            confirm_phy_offset: self.confirm_offset() as i64,
            commit_log_flushed_offset: Some(flushed),
            dispatched_flushed_offset: Some(dispatched),
            ..Checkpoint::default()
        };
        let file = match durable.checkpoint_file.clone() {
            Some(file) => file,
            None => {
                let file = open_or_create(self.disk.as_ref(), &self.config.checkpoint_path())?;
                durable.checkpoint_file = Some(file.clone());
                file
            }
        };
        file.write_at(0, &checkpoint.encode())
            .context(|| "cannot write the checkpoint".to_owned())?;
        file.sync().sync_context(|| "checkpoint sync failed".to_owned())
    }

    /// Clean shutdown: flush and dispatch everything, write the checkpoint, remove `abort`.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.closing.store(true, Ordering::Release);
        // Every append checks the flag under this lock, so once it is taken and released no
        // append can land after the flush below.
        drop(lock(&self.writer));
        self.flush_log()?;
        self.fatal(self.shutdown_flushed())
    }

    fn shutdown_flushed(&self) -> Result<(), StoreError> {
        let mut dispatcher = lock(&self.dispatcher);
        self.dispatch_to(&mut dispatcher, self.flushed_offset())?;
        self.dispatched.store(dispatcher.position, Ordering::Release);
        drop(dispatcher);
        self.write_checkpoint()?;
        lock(&self.stopped).get_or_insert_with(|| "the store was shut down".to_owned());
        let abort = self.config.abort_path();
        if self.disk.exists(&abort) {
            self.disk.remove(&abort).context(|| "cannot remove the abort file".to_owned())?;
        }
        self.disk
            .sync_dir(&self.config.root)
            .sync_context(|| "cannot sync the store directory".to_owned())
    }

    fn segment_at(&self, offset: u64) -> Option<Segment> {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        let first = files.first()?.base;
        let index = (offset.checked_sub(first)? / self.config.commit_log_file_bytes) as usize;
        files.get(index).cloned()
    }

    /// The record at `physical_offset` of `size` bytes, as a zero-copy slice.
    pub fn read_at(&self, physical_offset: u64, size: u32) -> Option<Bytes> {
        if physical_offset + u64::from(size) > self.written_offset() {
            return None;
        }
        let segment = self.segment_at(physical_offset)?;
        segment.file.slice(physical_offset - segment.base, size as usize).ok()
    }

    /// The record starting at `physical_offset`, reading its size from it.
    pub fn message_at(&self, physical_offset: u64) -> Option<Bytes> {
        let head = self.read_at(physical_offset, 4)?;
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let size = u32::try_from(size)
            .ok()
            .filter(|s| u64::from(*s) <= self.config.commit_log_file_bytes)?;
        let bytes = self.read_at(physical_offset, size)?;
        match scan_record(
            &bytes,
            Checks { physical_offset: Some(physical_offset as i64), crc: true },
        ) {
            Scanned::Record(_) => Some(bytes),
            _ => None,
        }
    }

    /// The store time of the last record dispatched: queues and the index are up to date to
    /// here (QUERY_MESSAGE's `indexLastUpdateTimestamp`).
    pub fn dispatched_timestamp(&self) -> i64 {
        lock(&self.dispatcher).timestamp
    }

    /// The queue's offsets: the first readable one and the one after the last.
    pub fn queue_offsets(&self, topic: &str, queue_id: i32) -> Option<(u64, u64)> {
        let queue = self.queue(topic, queue_id)?;
        let queue = lock(&queue);
        Some((queue.min_offset(), queue.readable_max_offset()))
    }

    /// Messages of `(topic, queue_id)` from `offset`, whose tag code passes `filter`.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        limits: ReadLimits,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetMessages {
        let mut result = GetMessages {
            status: GetStatus::NoMatchedLogicQueue,
            messages: Vec::new(),
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
        };
        let Some(queue) = self.queue(topic, queue_id) else { return result };
        let (min, max, units) = {
            let queue = lock(&queue);
            let (min, max) = (queue.min_offset(), queue.readable_max_offset());
            let units = if offset >= min && offset < max {
                queue.units(offset, limits.scan_units_max.min(max - offset))
            } else {
                Vec::new()
            };
            (min, max, units)
        };
        result.min_offset = min;
        result.max_offset = max;
        (result.status, result.next_begin_offset) = match () {
            _ if max == 0 => (GetStatus::NoMessageInQueue, 0),
            _ if offset < min => (GetStatus::OffsetTooSmall, min),
            _ if offset == max => (GetStatus::OffsetOverflowOne, offset),
            _ if offset > max => (GetStatus::OffsetOverflowBadly, max),
            _ => (GetStatus::NoMatchedMessage, offset),
        };
        if result.status == GetStatus::NoMatchedMessage {
            self.collect(&mut result, (topic, queue_id, offset), &units, limits, filter);
        }
        result
    }

    /// Reads the records `units` name, from queue offset `start.2` on, into `result`. Each
    /// record is checked to be the one its unit names, whole (CRC); a read that is not ends
    /// the batch before it, so that the reader asks for that offset again.
    fn collect(
        &self,
        result: &mut GetMessages,
        start: (&str, i32, u64),
        units: &[Bytes],
        limits: ReadLimits,
        filter: &dyn Fn(i64) -> bool,
    ) {
        let (topic, queue_id, offset) = start;
        let mut next = offset;
        let mut bytes = 0usize;
        let log_min = self.min_physical_offset();
        let mut found_null = false;
        let mut read_failed = false;
        'units: for chunk in units {
            for raw in chunk.chunks_exact(CQ_UNIT_BYTES as usize) {
                let unit = Unit::decode(raw);
                let full = result.messages.len() >= limits.messages_max
                    || (bytes + unit.size.max(0) as usize > limits.bytes_max
                        && !result.messages.is_empty());
                if full {
                    break 'units;
                }
                next += 1;
                if unit.is_filler() || !filter(unit.tags_code) {
                    continue;
                }
                if (unit.offset as u64) < log_min {
                    found_null = true;
                    continue;
                }
                match self.read_record(&unit, (topic, queue_id, next - 1)) {
                    Ok(Some(message)) => {
                        bytes += message.len();
                        result.messages.push(message);
                    }
                    Ok(None) => found_null = true,
                    Err(()) => {
                        tracing::error!(
                            topic,
                            queue_id,
                            queue_offset = next - 1,
                            physical_offset = unit.offset,
                            "the record a consume-queue unit names is damaged: it fails its CRC \
                             or is another record, read after read; consumers stop before it"
                        );
                        next -= 1;
                        read_failed = true;
                        break 'units;
                    }
                }
            }
        }
        result.next_begin_offset = next;
        result.status = if !result.messages.is_empty() {
            GetStatus::Found
        } else if read_failed {
            GetStatus::ReadFailed
        } else if found_null {
            GetStatus::OffsetFoundNull
        } else {
            GetStatus::NoMatchedMessage
        };
    }

    /// The record `unit` names, checked to be the record of `expected` (topic, queue, queue
    /// offset), whole; read again up to [`READS_MAX`] times while it is not (a read can flip a
    /// bit). `Ok(None)` when the log no longer holds it, `Err` when every read was wrong.
    fn read_record(&self, unit: &Unit, expected: (&str, i32, u64)) -> Result<Option<Bytes>, ()> {
        for _ in 0..READS_MAX {
            let Some(message) = self.read_at(unit.offset as u64, unit.size as u32) else {
                return Ok(None);
            };
            if holds(&message, unit.offset, expected) {
                return Ok(Some(message));
            }
        }
        Err(())
    }

    /// The store timestamp of the message at queue offset `q`.
    fn store_time_at(&self, queue: &ConsumeQueue, q: u64) -> Option<i64> {
        let unit = queue.unit(q)?;
        if unit.is_filler() {
            return None;
        }
        let bytes = self.read_at(unit.offset as u64, unit.size as u32)?;
        match scan_record(&bytes, Checks { physical_offset: None, crc: false }) {
            Scanned::Record(record) => Some(record.store_timestamp),
            _ => None,
        }
    }

    /// The first queue offset whose message was stored at or after `timestamp`; the max offset
    /// if none was (`SEARCH_OFFSET_BY_TIMESTAMP`).
    pub fn offset_by_time(&self, topic: &str, queue_id: i32, timestamp: i64) -> u64 {
        let Some(queue) = self.queue(topic, queue_id) else { return 0 };
        let queue = lock(&queue);
        let (mut low, mut high) = (queue.min_offset(), queue.readable_max_offset());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.store_time_at(&queue, middle) {
                Some(time) if time < timestamp => low = middle + 1,
                _ => high = middle,
            }
        }
        low
    }

    /// The store time of the queue's first readable message (`GET_EARLIEST_MSG_STORETIME`).
    pub fn earliest_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let queue = self.queue(topic, queue_id)?;
        let queue = lock(&queue);
        self.store_time_at(&queue, queue.min_offset())
    }

    /// The topics and queue ids that have consume queues.
    pub fn queue_ids(&self) -> Vec<(String, i32)> {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<(String, i32)> = queues
            .iter()
            .flat_map(|(topic, by_id)| by_id.keys().map(|id| (topic.to_string(), *id)))
            .collect();
        ids.sort();
        ids
    }

    /// Internal consistency, for tests and the simulator: offsets in order, queues sane.
    pub fn check_invariants(&self) {
        let (written, flushed) = (self.written_offset(), self.flushed_offset());
        assert!(flushed <= written, "flushed {flushed} past written {written}");
        assert!(self.dispatched_offset() <= written, "dispatched past written");
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        for by_id in queues.values() {
            for queue in by_id.values() {
                lock(queue).check_invariants();
            }
        }
    }
}

/// How many times a read of bytes this store wrote is made before a failing check is taken
/// for damage rather than a read error (a flipped bit comes and goes); as many as a stable
/// read allows (`disk::STABLE_READS_MAX`).
const READS_MAX: usize = 8;

/// Whether `bytes`, read at `physical_offset`, are the whole record of `(topic, queue id,
/// queue offset)`, its CRCs intact.
fn holds(
    bytes: &[u8],
    physical_offset: i64,
    (topic, queue_id, queue_offset): (&str, i32, u64),
) -> bool {
    let checks = Checks { physical_offset: Some(physical_offset), crc: true };
    match scan_record(bytes, checks) {
        Scanned::Record(record) => {
            record.bytes.len() == bytes.len()
                && record.queue_offset == queue_offset as i64
                && record.queue_id == queue_id
                && record.topic == topic.as_bytes()
        }
        _ => false,
    }
}

/// Whether the record's UNIQ_KEY or one of its KEYS is `key`.
fn has_key(record: &Record<'_>, key: &str) -> bool {
    let key = key.as_bytes();
    record.property(b"UNIQ_KEY") == Some(key)
        || record.property(b"KEYS").is_some_and(|keys| keys.split(|b| *b == b' ').any(|k| k == key))
}

/// `encoded` without property `name`.
fn without_property(encoded: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    for (key, value) in record::properties(encoded).filter(|(key, _)| *key != name) {
        out.extend_from_slice(key);
        out.push(record::NAME_VALUE_SEPARATOR);
        out.extend_from_slice(value);
        out.push(record::PROPERTY_SEPARATOR);
    }
    out
}

fn verify_records(bytes: &[u8], base: u64, crc: bool) -> Result<(), String> {
    let mut at = 0usize;
    while at < bytes.len() {
        let checks = Checks { physical_offset: Some((base + at as u64) as i64), crc };
        match scan_record(&bytes[at..], checks) {
            Scanned::Record(record) => at += record.bytes.len(),
            Scanned::Blank => return Ok(()),
            Scanned::Invalid(why) => {
                // The tail of a file region can hold a blank that a slice cut short.
                let rest = &bytes[at..];
                let blank = rest.len() >= 8 && rest[4..8] == MAGIC_BLANK.to_be_bytes();
                if blank {
                    return Ok(());
                }
                return Err(format!("record at {} is invalid: {why:?}", base + at as u64));
            }
        }
    }
    Ok(())
}

/// Opens the checkpoint, replacing one a crash left short (created but not yet extended).
fn open_or_create(
    disk: &dyn Disk,
    path: &std::path::Path,
) -> Result<Arc<dyn DiskFile>, StoreError> {
    if disk.exists(path) {
        let file = disk.open(path).context(|| format!("cannot open {}", path.display()))?;
        if file.len() == CHECKPOINT_BYTES as u64 {
            return Ok(file);
        }
        drop(file);
        disk.remove(path).context(|| format!("cannot remove {}", path.display()))?;
    }
    let file = disk
        .create(path, CHECKPOINT_BYTES as u64)
        .context(|| format!("cannot create {}", path.display()))?;
    file.sync().sync_context(|| format!("cannot sync {}", path.display()))?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    disk.sync_dir(&dir).sync_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(file)
}

/// Creates `abort` (the PID, as RocketMQ writes it) unless a crash left one, and makes it
/// durable: its presence at the next start means this run did not end cleanly.
fn create_abort(disk: &dyn Disk, config: &StoreConfig) -> Result<(), StoreError> {
    let abort = config.abort_path();
    if disk.exists(&abort) {
        return Ok(());
    }
    let pid = std::process::id().to_string();
    let file = disk
        .create(&abort, pid.len() as u64)
        .context(|| "cannot create the abort file".to_owned())?;
    file.write_at(0, pid.as_bytes()).context(|| "cannot write the abort file".to_owned())?;
    file.sync().sync_context(|| "cannot sync the abort file".to_owned())?;
    disk.sync_dir(&config.root).sync_context(|| "cannot sync the store directory".to_owned())
}

fn synced_loss_error(loss: SyncedLoss) -> StoreError {
    StoreError::Layout(format!(
        "the commit log is invalid at offset {} although the checkpoint says it was flushed up to \
         {}: flushed data is damaged. Copy the store directory for inspection; Petrel will not \
         truncate flushed data by itself",
        loss.offset, loss.flushed
    ))
}

/// Reads every image stably (`stable_slice`) and plans recovery from them.
fn read_and_plan(disk: &dyn Disk, config: &StoreConfig) -> Result<RecoveryPlan, StoreError> {
    let log = Segments::load(disk, &config.commit_log_dir(), config.commit_log_file_bytes)?;
    let log_bytes = read_images(&log)?;
    let queue_dirs = list_queue_dirs(disk, config)?;
    let mut queue_bytes = Vec::new();
    for (_, _, dir) in &queue_dirs {
        let segments = Segments::load(disk, dir, config.cq_file_bytes())?;
        queue_bytes.push(read_images(&segments)?);
    }
    let checkpoint_path = config.checkpoint_path();
    let checkpoint = if disk.exists(&checkpoint_path) {
        let file =
            disk.open(&checkpoint_path).context(|| "cannot open the checkpoint".to_owned())?;
        let len = file.len().min(CHECKPOINT_BYTES as u64) as usize;
        let page = disk::slice_stable(file.as_ref(), 0, len)
            .context(|| "cannot read the checkpoint".to_owned())?;
        Checkpoint::decode(&page)
    } else {
        Checkpoint::default()
    };
    let image = StoreImage {
        commit_log: log_bytes.iter().map(|(base, b)| FileImage { base: *base, bytes: b }).collect(),
        queues: queue_dirs
            .iter()
            .zip(&queue_bytes)
            .map(|((topic, queue_id, _), files)| QueueImage {
                topic,
                queue_id: *queue_id,
                files: files.iter().map(|(base, b)| FileImage { base: *base, bytes: b }).collect(),
            })
            .collect(),
        checkpoint,
        abort: disk.exists(&config.abort_path()),
        check_crc: config.check_crc_on_recover,
    };
    Ok(recovery::plan(&image))
}

fn read_images(segments: &Segments) -> Result<Vec<(u64, Bytes)>, StoreError> {
    segments
        .files()
        .iter()
        .map(|s| {
            let bytes = disk::slice_stable(s.file.as_ref(), 0, s.file.len() as usize);
            bytes
                .map(|b| (s.base, b))
                .context(|| format!("cannot read {}", segments.dir().display()))
        })
        .collect()
}

/// `consumequeue/{topic}/{queueId}` directories, sorted.
fn list_queue_dirs(
    disk: &dyn Disk,
    config: &StoreConfig,
) -> Result<Vec<(String, i32, PathBuf)>, StoreError> {
    let root = config.cq_root();
    let mut dirs = Vec::new();
    for topic in disk.list(&root).context(|| format!("cannot list {}", root.display()))? {
        if !is_valid_topic(topic.as_bytes()) {
            continue;
        }
        let topic_dir = root.join(&topic);
        for id in
            disk.list(&topic_dir).context(|| format!("cannot list {}", topic_dir.display()))?
        {
            if let Ok(queue_id) = id.parse::<i32>() {
                dirs.push((topic.clone(), queue_id, topic_dir.join(id)));
            }
        }
    }
    Ok(dirs)
}

fn open_queues(
    disk: &dyn Disk,
    config: &StoreConfig,
    plan: &RecoveryPlan,
) -> Result<QueueMap<Arc<Mutex<ConsumeQueue>>>, StoreError> {
    let mut queues: QueueMap<Arc<Mutex<ConsumeQueue>>> = BTreeMap::new();
    for ((topic, queue_id, dir), keep) in
        list_queue_dirs(disk, config)?.into_iter().zip(&plan.queue_keep_bytes)
    {
        let queue = ConsumeQueue::open(disk, &dir, config.cq_file_bytes(), Some(*keep))?;
        queues.entry(topic.into()).or_default().insert(queue_id, Arc::new(Mutex::new(queue)));
    }
    Ok(queues)
}
