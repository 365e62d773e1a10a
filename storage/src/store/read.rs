//! Reads: messages of a queue, by key, by physical offset and by time; every record served is
//! checked to be the one its unit names, whole.

use super::*;

impl Store {
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
                Scanned::Record(record) => record.topic == topic.as_bytes() && record.has_key(key),
                _ => false,
            };
            if matches {
                out.push(bytes);
            }
        }
        out
    }

    pub(super) fn segment_at(&self, offset: u64) -> Option<Segment> {
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
        match self.entry_at(physical_offset) {
            LogEntry::Record(bytes) => Some(bytes),
            LogEntry::Blank | LogEntry::Unreadable => None,
        }
    }

    /// What the commit log holds at `physical_offset`: a record, a file's closing blank, or
    /// nothing that reads whole. The size is read apart from the record, so a misread size
    /// would take in the next records too (or part of them) though the record checks: the
    /// record must end where the size read first said.
    pub fn entry_at(&self, physical_offset: u64) -> LogEntry {
        let Some(head) = self.read_at(physical_offset, 4) else { return LogEntry::Unreadable };
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let size =
            u32::try_from(size).ok().filter(|s| u64::from(*s) <= self.config.commit_log_file_bytes);
        let Some(bytes) = size.and_then(|size| self.read_at(physical_offset, size)) else {
            return LogEntry::Unreadable;
        };
        let checks = Checks { physical_offset: Some(physical_offset as i64), crc: true };
        match scan_record(&bytes, checks) {
            Scanned::Record(record) if record.bytes.len() == bytes.len() => LogEntry::Record(bytes),
            Scanned::Record(_) => LogEntry::Unreadable,
            Scanned::Blank => LogEntry::Blank,
            Scanned::Invalid(_) => LogEntry::Unreadable,
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

    /// Up to `count` units of `(topic, queue_id)` from queue offset `from`, no further than
    /// the end of the file holding `from` (as RocketMQ's QUERY_CONSUME_QUEUE reads one mapped
    /// file): none when `from` is outside the queue; `None` when the store has no such queue.
    pub fn queue_units(
        &self,
        topic: &str,
        queue_id: i32,
        from: u64,
        count: u64,
    ) -> Option<Vec<Unit>> {
        let queue = self.queue(topic, queue_id)?;
        let queue = lock(&queue);
        if from < queue.min_offset() {
            return Some(Vec::new());
        }
        let slices = queue.units(from, count);
        let first = slices.first().map_or(&[][..], |bytes| &bytes[..]);
        Some(first.chunks_exact(CQ_UNIT_BYTES as usize).map(Unit::decode).collect())
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
        self.get_messages_matching(topic, queue_id, offset, limits, filter, None)
    }

    /// As [`Store::get_messages`], and each record read must also pass `by_record` (an SQL92
    /// filter over its properties); one that does not is passed over like a tag mismatch.
    pub fn get_messages_matching(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        limits: ReadLimits,
        filter: &dyn Fn(i64) -> bool,
        by_record: Option<RecordFilter<'_>>,
    ) -> GetMessages {
        let mut result = GetMessages {
            status: GetStatus::NoMatchedLogicQueue,
            messages: Vec::new(),
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            behind_bytes: 0,
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
            let filters = Filters { by_code: filter, by_record };
            self.collect(&mut result, (topic, queue_id, offset), &units, limits, filters);
        }
        result
    }

    /// Reads the records `units` name, from queue offset `start.2` on, into `result`. Each
    /// record is checked to be the one its unit names, whole (CRC); a read that is not ends
    /// the batch before it, so that the reader asks for that offset again.
    pub(super) fn collect(
        &self,
        result: &mut GetMessages,
        start: (&str, i32, u64),
        units: &[Bytes],
        limits: ReadLimits,
        filters: Filters<'_>,
    ) {
        let (topic, queue_id, offset) = start;
        let mut next = offset;
        let mut bytes = 0usize;
        let log_min = self.min_physical_offset();
        let mut found_null = false;
        let mut read_failed = false;
        let mut last_looked_at = None;
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
                if unit.is_filler() {
                    continue;
                }
                last_looked_at = Some(unit.offset.max(0) as u64);
                if !(filters.by_code)(unit.tags_code) {
                    continue;
                }
                if (unit.offset as u64) < log_min {
                    found_null = true;
                    continue;
                }
                match self.read_record(&unit, (topic, queue_id, next - 1)) {
                    Ok(Some(message)) if filters.by_record.is_some_and(|f| !f(&message)) => {}
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
                            "the record a consume-queue unit names is damaged (it fails its CRC \
                             or is another record, read after read) or the unit was misread; \
                             consumers stop before it"
                        );
                        next -= 1;
                        read_failed = true;
                        break 'units;
                    }
                }
            }
        }
        result.next_begin_offset = next;
        result.behind_bytes =
            last_looked_at.map_or(0, |at| self.written_offset().saturating_sub(at));
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
    /// bit). `Ok(None)` when the log no longer holds it (its file was removed); `Err` when every
    /// read was wrong, or when the unit names bytes no record can be (a size no record has,
    /// past the log's end, or across a file's end): the unit itself was misread, and the reader
    /// must ask again rather than skip a message the log holds.
    pub(super) fn read_record(
        &self,
        unit: &Unit,
        expected: (&str, i32, u64),
    ) -> Result<Option<Bytes>, ()> {
        let offset = unit.offset as u64;
        let size = u32::try_from(unit.size)
            .ok()
            .filter(|&size| size > 0 && u64::from(size) <= self.config.commit_log_file_bytes)
            .ok_or(())?;
        if offset.saturating_add(u64::from(size)) > self.written_offset() {
            return Err(());
        }
        for _ in 0..READS_MAX {
            let Some(message) = self.read_at(offset, size) else {
                return if offset < self.min_physical_offset() { Ok(None) } else { Err(()) };
            };
            if holds(&message, unit.offset, expected) {
                return Ok(Some(message));
            }
        }
        Err(())
    }

    /// The store timestamp of the message at queue offset `q` (see [`agreed_store_time`]: a
    /// misread time would move a search by time past the message it should find).
    pub(super) fn store_time_at(&self, queue: &ConsumeQueue, q: u64) -> Option<i64> {
        let unit = queue.unit(q)?;
        if unit.is_filler() {
            return None;
        }
        let read = || self.read_at(unit.offset as u64, unit.size as u32);
        agreed_store_time(read, || format!("the store time of queue offset {q}"))
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

    /// The store time of the message at queue offset `offset` of a queue, if it is readable:
    /// what mqadmin shows as a queue's last update (`offset` = max - 1) and a group's last
    /// consumed time.
    pub fn message_time(&self, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
        let queue = self.queue(topic, queue_id)?;
        let queue = lock(&queue);
        if offset < queue.min_offset() || offset >= queue.readable_max_offset() {
            return None;
        }
        self.store_time_at(&queue, offset)
    }

    /// The store time of the oldest record the commit log keeps, if it keeps one (the
    /// runtime info's `earliestMessageTimeStamp`).
    pub fn earliest_message_time(&self) -> Option<i64> {
        let read = || self.message_at(self.min_physical_offset());
        agreed_store_time(read, || "the store time of the log's first record".to_owned())
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
}

/// The store timestamp of the record `read` returns, once three reads agree on it: a
/// record's header carries no checksum (unless `enabledAppendPropCRC`), and a bit flipped on
/// read would go unnoticed. `None` when the reads never agree or hold no record.
pub(super) fn agreed_store_time(
    read: impl Fn() -> Option<Bytes>,
    what: impl FnOnce() -> String,
) -> Option<i64> {
    let checks = Checks { physical_offset: None, crc: false };
    let time = || {
        Ok(read().and_then(|bytes| match scan_record(&bytes, checks) {
            Scanned::Record(record) => Some(record.store_timestamp),
            _ => None,
        }))
    };
    crate::disk::agreed(time, |a, b| a == b, what).ok().flatten()
}

/// Whether `bytes`, read at `physical_offset`, are the whole record of `(topic, queue id,
/// queue offset)`, its CRCs intact.
pub(super) fn holds(
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

/// What a read selects by: the consume-queue tag code, then, if given, the record itself.
#[derive(Clone, Copy)]
pub(super) struct Filters<'a> {
    pub by_code: &'a dyn Fn(i64) -> bool,
    pub by_record: Option<RecordFilter<'a>>,
}

/// A filter over a whole record (the consume queue's tag code could not decide).
pub type RecordFilter<'a> = &'a dyn Fn(&[u8]) -> bool;
