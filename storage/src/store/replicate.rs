//! A slave's appends: commit-log bytes its master replicated, written as they are
//! (`docs/replication.md`).

use super::*;

impl Store {
    /// Appends `records`, whole records and blank fillers a master wrote and the HA slave core
    /// checked, at `offset`: this store's end, or for an empty store a file boundary where its
    /// log then begins (a new slave copies from the master's newest file). The bytes are
    /// written as they are, one write per commit-log file they fall in. Returns the new end.
    ///
    /// `epoch`, in controller mode, is the epoch the master wrote them in: one newer than the
    /// store's newest begins at its start (written to the epoch file first), an older one is
    /// refused.
    pub fn append_replicated(
        &self,
        offset: u64,
        records: &[u8],
        epoch: Option<CoreEpoch>,
    ) -> Result<u64, StoreError> {
        self.check_running()?;
        self.check_not_read_only()?;
        self.fatal(self.append_replicated_running(offset, records, epoch))
    }

    fn append_replicated_running(
        &self,
        offset: u64,
        records: &[u8],
        epoch: Option<CoreEpoch>,
    ) -> Result<u64, StoreError> {
        let file_bytes = self.config.commit_log_file_bytes;
        let mut writer = lock(&self.writer);
        if self.closing.load(Ordering::Acquire) {
            return Err(StoreError::Stopped("the store is shutting down".into()));
        }
        let writer = &mut *writer;
        if offset != writer.write_offset {
            let empty = writer.write_offset == 0 && writer.segments.files().is_empty();
            if !empty || !offset.is_multiple_of(file_bytes) {
                let end = writer.write_offset;
                let why = format!("replicated bytes from {offset} do not start at the end {end}");
                return Err(StoreError::InvalidBatch(why));
            }
            self.begin_at(writer, offset);
        }
        if let Some(epoch) = epoch {
            if let Some(last) = writer.epochs.last_epoch().filter(|last| epoch.epoch < *last) {
                return Err(StoreError::StaleEpoch {
                    epoch: epoch.epoch as u32,
                    current: last as u32,
                });
            }
            if epoch.start < 0 || epoch.start as u64 > writer.write_offset {
                let why = format!(
                    "epoch {} starts past the log's end {}",
                    epoch.epoch, writer.write_offset
                );
                return Err(StoreError::InvalidBatch(why));
            }
            self.begin_epoch(writer, epoch.epoch, epoch.start as u64)?;
        }
        let mut done = 0usize;
        while done < records.len() {
            let at = writer.write_offset;
            let room = (file_bytes - at % file_bytes) as usize;
            let chunk = &records[done..done + room.min(records.len() - done)];
            // Checked before anything is written: whole records at their own offsets.
            let metadata = replicated_records(chunk, at, file_bytes)?;
            let segment = self.segment_for_write(writer)?;
            segment
                .file
                .write_at(at - segment.base, chunk)
                .context(|| "cannot append replicated records to the commit log".to_owned())?;
            for (topic, queue_id, queue_offset, store_timestamp) in metadata {
                // Looked up by &str first: `entry` would allocate its key for every record.
                if !writer.queue_next.contains_key(topic) {
                    writer.queue_next.insert(topic.into(), BTreeMap::new());
                }
                let by_id = writer.queue_next.get_mut(topic).expect("inserted just above");
                let next = by_id.entry(queue_id).or_insert(0);
                *next = (*next).max(queue_offset + 1);
                writer.store_timestamp_max = writer.store_timestamp_max.max(store_timestamp);
            }
            writer.write_offset += chunk.len() as u64;
            done += chunk.len();
            self.written.store(writer.write_offset, Ordering::Release);
        }
        if writer.epochs.entries().is_empty() && !records.is_empty() {
            // Classic replication copies a master of epoch 0.
            writer.epochs =
                EpochCache::from_entries(vec![CoreEpoch { epoch: 0, start: offset as i64 }])
                    .expect("one entry is in order");
        }
        Ok(writer.write_offset)
    }

    /// An empty store's log begins at `offset`: every position starts there.
    fn begin_at(&self, writer: &mut Writer, offset: u64) {
        writer.write_offset = offset;
        for position in [&self.written, &self.flushed, &self.confirmed, &self.dispatched] {
            position.store(offset, Ordering::Release);
        }
        lock(&self.dispatcher).position = offset;
    }
}

/// The (topic, queue, queue offset, store time) of each record in `chunk` (which starts at
/// `at` and lies within one file), or why the bytes are not whole records placed there.
fn replicated_records(
    chunk: &[u8],
    at: u64,
    file_bytes: u64,
) -> Result<Vec<(&str, i32, i64, i64)>, StoreError> {
    let mut found = Vec::new();
    let mut offset = 0usize;
    while offset < chunk.len() {
        let position = at + offset as u64;
        let bad =
            |why: &str| StoreError::InvalidBatch(format!("replicated bytes at {position}: {why}"));
        let total = chunk
            .get(offset..offset + 4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| bad("a record cut short"))?;
        let end = usize::try_from(total)
            .ok()
            .and_then(|t| offset.checked_add(t))
            .filter(|&end| end <= chunk.len() && end > offset)
            .ok_or_else(|| bad("a record cut short"))?;
        let checks = Checks { physical_offset: Some(position as i64), crc: false };
        match scan_record(&chunk[offset..end], checks) {
            Scanned::Record(record) => {
                if record::sys_flag::is_dispatched(record.sys_flag) {
                    found.push((
                        record.topic_str(),
                        record.queue_id,
                        record.queue_offset,
                        record.store_timestamp,
                    ));
                }
            }
            Scanned::Blank if (at + end as u64).is_multiple_of(file_bytes) => {}
            Scanned::Blank => return Err(bad("a blank filler short of its file's end")),
            Scanned::Invalid(invalid) => return Err(bad(&format!("{invalid:?}"))),
        }
        offset = end;
    }
    Ok(found)
}
