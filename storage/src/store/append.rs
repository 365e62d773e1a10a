//! Appends: one record or a batch under the put-message lock, at the end of the commit log.

use std::borrow::Cow;

use super::*;

impl Store {
    /// Appends one message at time `now`, written in `epoch`, assigning its queue offset and
    /// physical place. The record is in the page cache when this returns; `flush_log` makes it
    /// durable.
    pub fn append(
        &self,
        input: &RecordInput<'_>,
        now: i64,
        epoch: u32,
    ) -> Result<Appended, StoreError> {
        self.append_batch(std::slice::from_ref(input), now, epoch, &mut |_, _| {})
    }

    /// Appends the records of one request as one unit (RocketMQ's batch put): under one lock,
    /// in one write, into one commit-log file; each record dispatched to a consume queue
    /// takes the next offset of its topic and queue, so a batch of one queue sits at
    /// consecutive offsets (a transaction's commit and its op message are one unit of two
    /// queues). Either every record is appended or, with an error, none counts as stored
    /// (bytes a failed write left past the end are overwritten by the next append).
    /// `record_offset` is called with each record's physical and queue offsets (0 for one
    /// without a unit), in order; they name stored records only if the append returns `Ok`.
    pub fn append_batch(
        &self,
        inputs: &[RecordInput<'_>],
        now: i64,
        epoch: u32,
        record_offset: &mut dyn FnMut(u64, i64),
    ) -> Result<Appended, StoreError> {
        self.check_running()?;
        self.fatal(self.append_running(inputs, now, epoch, record_offset))
    }

    /// The first record of a new epoch goes at `at`: the epoch is added, and written to the
    /// epoch file before the record is (every epoch but 0, which needs no file).
    pub(super) fn begin_epoch(
        &self,
        writer: &mut Writer,
        epoch: i32,
        at: u64,
    ) -> Result<(), StoreError> {
        if writer.epochs.last_epoch().is_some_and(|last| last >= epoch) {
            return Ok(());
        }
        let mut next = writer.epochs.clone();
        let at = i64::try_from(at).map_err(|_| StoreError::Config("offset beyond int64".into()))?;
        next.append(epoch, at).map_err(|refused| StoreError::Config(refused.to_string()))?;
        if epoch > 0 {
            epochs::save(self.disk.as_ref(), &self.config.root, &next)?;
        }
        writer.epochs = next;
        Ok(())
    }

    /// Checks a record before the lock is taken and returns its encoded length.
    fn checked_len(&self, input: &RecordInput<'_>) -> Result<u64, StoreError> {
        if input.body.len() > self.config.message_bytes_max {
            let max = self.config.message_bytes_max;
            return Err(StoreError::MessageTooLarge { size: input.body.len(), max });
        }
        if !is_valid_topic(input.topic.as_bytes()) {
            return Err(StoreError::InvalidTopic(input.topic.to_owned()));
        }
        let properties = stored_properties(input.properties);
        Ok(encoded_len(&self.stored(input, &properties), self.config.append_record_crc)? as u64)
    }

    /// The record as stored: this broker's store host, and the properties `stored_properties`
    /// made. Measured and encoded from this one place, so the length reserved is the length
    /// written.
    fn stored<'a>(&self, input: &RecordInput<'a>, properties: &'a [u8]) -> RecordInput<'a> {
        RecordInput { store_host: self.config.store_host, properties, ..*input }
    }

    /// Checks a batch before the lock is taken and returns the bytes it will take. Two passes
    /// (this, then the encoding) rather than a list of prepared records: no allocation per
    /// append.
    fn checked_batch_len(&self, inputs: &[RecordInput<'_>]) -> Result<u64, StoreError> {
        if self.abort_missing.load(Ordering::Relaxed) {
            self.check_not_read_only()?;
            // The abort file is written now: the fill set at the open was not measured.
            self.disk_full_percent.store(0, Ordering::Relaxed);
        }
        let used_percent = self.disk_full_percent.load(Ordering::Relaxed);
        if used_percent > 0 {
            let limit_percent = self.config.disk_warning_ratio;
            return Err(StoreError::DiskFull { used_percent, limit_percent });
        }
        if inputs.is_empty() {
            return Err(StoreError::InvalidBatch("a batch of no messages".into()));
        }
        let mut total = 0u64;
        for input in inputs {
            total += self.checked_len(input)?;
        }
        let room = self.config.commit_log_file_bytes - BLANK_BYTES_MIN as u64;
        if total > room {
            return Err(StoreError::MessageTooLarge { size: total as usize, max: room as usize });
        }
        Ok(total)
    }

    fn append_running(
        &self,
        inputs: &[RecordInput<'_>],
        now: i64,
        epoch: u32,
        record_offset: &mut dyn FnMut(u64, i64),
    ) -> Result<Appended, StoreError> {
        let total = self.checked_batch_len(inputs)?;
        let mut writer = lock(&self.writer);
        // Checked under the lock: shutdown sets the flag, then takes this lock before flushing.
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Stopped("the store is shutting down".into()));
        }
        let writer = &mut *writer;
        let Ok(epoch_number) = i32::try_from(epoch) else {
            return Err(StoreError::Config(format!("epoch {epoch} is beyond int32")));
        };
        if let Some(last) = writer.epochs.last_epoch().filter(|last| epoch_number < *last) {
            return Err(StoreError::StaleEpoch { epoch, current: last as u32 });
        }
        let store_timestamp = now.max(writer.store_timestamp_max);
        let segment = self.place(writer, total)?;
        self.begin_epoch(writer, epoch_number, writer.write_offset)?;
        let physical_offset = writer.write_offset;
        let mut taken = 0;
        let written = self
            .encode_unit(
                writer,
                inputs,
                physical_offset,
                store_timestamp,
                record_offset,
                &mut taken,
            )
            .and_then(|queue_offset| {
                debug_assert_eq!(writer.buffer.len() as u64, total, "encoded_len is exact");
                let at = physical_offset - segment.base;
                let file = &segment.file;
                file.write_at(at, &writer.buffer)
                    .context(|| "cannot append to the commit log".to_owned())
                    .map(|()| queue_offset)
            });
        let queue_offset = match written {
            Ok(queue_offset) => queue_offset,
            Err(error) => {
                // Nothing was stored: the queue offsets taken go back.
                for input in &inputs[..taken] {
                    if record::sys_flag::is_dispatched(input.sys_flag) {
                        *next_queue_offset(&mut writer.queue_next, input.topic, input.queue_id) -=
                            1;
                    }
                }
                return Err(error);
            }
        };
        writer.write_offset += total;
        writer.store_timestamp_max = store_timestamp;
        self.written.store(writer.write_offset, Ordering::Release);
        Ok(Appended {
            physical_offset,
            size: total as u32,
            queue_offset,
            count: inputs.len() as u32,
            store_timestamp,
            end_offset: writer.write_offset,
            epoch,
            store_host: self.config.store_host,
            truncations: self.truncations(),
        })
    }

    /// Encodes `inputs` into the writer's buffer as they will sit at `physical_offset`, each
    /// dispatched record taking the next offset of its queue (`taken` counts the records
    /// whose offsets were taken); returns the first dispatched record's queue offset (0 if
    /// none is dispatched). A run of records of one queue looks its counter up once.
    fn encode_unit(
        &self,
        writer: &mut Writer,
        inputs: &[RecordInput<'_>],
        physical_offset: u64,
        store_timestamp: i64,
        record_offset: &mut dyn FnMut(u64, i64),
        taken: &mut usize,
    ) -> Result<i64, StoreError> {
        let Writer { queue_next, buffer, .. } = writer;
        let mut first = None;
        let mut current: Option<(&str, i32, &mut i64)> = None;
        buffer.clear();
        for sent in inputs {
            let properties = stored_properties(sent.properties);
            let input = self.stored(sent, &properties);
            let at = buffer.len() as u64;
            let mut queue_offset = 0;
            if record::sys_flag::is_dispatched(input.sys_flag) {
                let next = match current.take() {
                    Some((topic, id, next)) if topic == sent.topic && id == sent.queue_id => next,
                    _ => next_queue_offset(queue_next, sent.topic, sent.queue_id),
                };
                queue_offset = *next;
                *next += 1;
                first.get_or_insert(queue_offset);
                current = Some((sent.topic, sent.queue_id, next));
            }
            *taken += 1;
            let place = RecordPlace {
                queue_offset,
                physical_offset: (physical_offset + at) as i64,
                store_timestamp,
            };
            encode_record(&input, place, self.config.append_record_crc, buffer)?;
            record_offset(physical_offset + at, queue_offset);
        }
        Ok(first.unwrap_or(0))
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

/// The properties a record is stored with: a producer's own `__CRC32#` would be taken for the
/// store's, or hide it, so it is dropped (an allocation only then).
fn stored_properties(sent: &[u8]) -> Cow<'_, [u8]> {
    match record::property(sent, PROPERTY_CRC32) {
        Some(_) => Cow::Owned(without_property(sent, PROPERTY_CRC32)),
        None => Cow::Borrowed(sent),
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

/// The counter of the next queue offset of `topic`'s queue `queue_id`.
fn next_queue_offset<'a>(
    queue_next: &'a mut QueueMap<i64>,
    topic: &str,
    queue_id: i32,
) -> &'a mut i64 {
    // Look the topic up by &str first: `entry` would allocate its key on every append.
    if !queue_next.contains_key(topic) {
        queue_next.insert(topic.into(), BTreeMap::new());
    }
    queue_next.get_mut(topic).expect("inserted just above").entry(queue_id).or_insert(0)
}
