//! Dispatch (RocketMQ's reput): records below the confirm offset become consume-queue units
//! and index entries.

use super::*;
use petrel_core::record::sys_flag;

impl Store {
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

    pub(super) fn dispatch_to(
        &self,
        dispatcher: &mut Dispatcher,
        end: u64,
    ) -> Result<u64, StoreError> {
        let mut touched = std::mem::take(&mut dispatcher.unwritten);
        let mut replaced = 0;
        let (mut position, mut timestamp) = (dispatcher.position, dispatcher.timestamp);
        let walked = self.walk_log(&mut position, end, |record| {
            replaced += self.dispatch_record(record, &mut touched)?;
            timestamp = record.store_timestamp;
            Ok(())
        });
        // Records handed over before a failure stay handed over: their units are pending, and
        // their queues are written first by the next round.
        (dispatcher.position, dispatcher.timestamp) = (position, timestamp);
        if let Err(error) = walked {
            dispatcher.unwritten = touched;
            return Err(error);
        }
        while let Some(queue) = touched.last() {
            let written = lock(queue).write_pending(self.disk.as_ref());
            if let Err(error) = written {
                dispatcher.unwritten = touched;
                return Err(error);
            }
            touched.pop();
        }
        if let Some(index) = &self.index {
            lock(index).write_pending()?;
        }
        Ok(replaced)
    }

    /// Calls `visit` for each record from `*position` (a record boundary) up to `end`, moving
    /// `*position` past each record visited and past blank fillers. Stops at the first error.
    pub(super) fn walk_log(
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
    pub(super) fn read_verified(
        &self,
        segment: &Segment,
        from: u64,
        to: u64,
    ) -> Result<Bytes, StoreError> {
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

    pub(super) fn dispatch_record(
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
    pub(super) fn tags_code(&self, record: &Record<'_>) -> i64 {
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
    pub(super) fn index_record(&self, record: &Record<'_>) -> Result<(), StoreError> {
        let Some(index) = &self.index else { return Ok(()) };
        if record.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_ROLLBACK {
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

    pub(super) fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<Mutex<ConsumeQueue>>> {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        queues.get(topic)?.get(&queue_id).cloned()
    }

    pub(super) fn queue_or_create(
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
}

pub(super) fn verify_records(bytes: &[u8], base: u64, crc: bool) -> Result<(), String> {
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
