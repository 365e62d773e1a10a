//! Appends: one record or a batch under the put-message lock, at the end of the commit log.

use super::*;

impl Store {
    /// Appends one message at time `now`, assigning its queue offset and physical place.
    /// The record is in the page cache when this returns; `flush_log` makes it durable.
    pub fn append(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, StoreError> {
        self.check_running()?;
        self.fatal(self.append_running(input, now))
    }

    pub(super) fn append_running(
        &self,
        input: &RecordInput<'_>,
        now: i64,
    ) -> Result<Appended, StoreError> {
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
        let dispatched = record::sys_flag::is_dispatched(input.sys_flag);
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
    pub(super) fn place(&self, writer: &mut Writer, len: u64) -> Result<Segment, StoreError> {
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

    pub(super) fn segment_for_write(&self, writer: &mut Writer) -> Result<Segment, StoreError> {
        let count = writer.segments.files().len();
        let segment = writer.segments.find_or_create(self.disk.as_ref(), writer.write_offset)?;
        if writer.segments.files().len() != count {
            let files: Arc<[Segment]> = writer.segments.files().to_vec().into();
            *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
        }
        Ok(segment)
    }
}

/// `encoded` without property `name`.
pub(super) fn without_property(encoded: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    for (key, value) in record::properties(encoded).filter(|(key, _)| *key != name) {
        out.extend_from_slice(key);
        out.push(record::NAME_VALUE_SEPARATOR);
        out.extend_from_slice(value);
        out.push(record::PROPERTY_SEPARATOR);
    }
    out
}
