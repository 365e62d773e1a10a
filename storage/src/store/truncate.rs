//! A slave's truncation to the consistent point (`docs/failover.md`, "Truncation"): the
//! commit log, its consume queues and its epochs cut back to an offset both logs share, in an
//! order that a crash at any step leaves a state recovery accepts.

use super::*;

impl Store {
    /// Cuts the store back to `offset`: every record at or past it leaves the commit log, its
    /// units leave the consume queues, its epochs leave the epoch file. `offset` must be a
    /// record boundary between the log's first offset and its end.
    ///
    /// The steps, each durable before the next:
    /// 1. the log is flushed, then the checkpoint is written saying nothing past `offset` is
    ///    flushed or dispatched: a crash from here on recovers by scanning from `offset`'s
    ///    file and dispatching again from `offset`, whatever the later steps did;
    /// 2. the commit log is zeroed from `offset` to its file's end, and later files removed:
    ///    recovery finds the end at `offset`, or (the zeroes only partly on disk) at a later
    ///    record boundary of the same old log;
    /// 3. the consume queues lose their units at or past `offset`;
    /// 4. the epoch file loses the epochs starting at or past `offset`. Only now: an epoch
    ///    file cut while records of a removed epoch were still on disk would give them the
    ///    epoch before, and they would pass as records of a shared epoch. Recovery cuts the
    ///    epochs to the recovered log itself, so a crash before this step is harmless.
    ///
    /// Nothing else may append meanwhile (a slave's only writer is its HA link, which is the
    /// caller); a failed sync stops the store.
    pub fn truncate_to(&self, offset: u64) -> Result<(), StoreError> {
        self.check_running()?;
        self.check_not_read_only()?;
        self.fatal(self.flush_log().and_then(|_| self.truncate_flushed(offset)))
    }

    fn truncate_flushed(&self, offset: u64) -> Result<(), StoreError> {
        let mut dispatcher = lock(&self.dispatcher);
        let mut durable = lock(&self.durable);
        let mut writer = lock(&self.writer);
        let writer = &mut *writer;
        self.check_cut_point(writer, offset)?;
        if offset == writer.write_offset {
            return Ok(());
        }
        if self.flushed_offset() < offset {
            let why = format!("appended past {offset} during a truncation: a second writer");
            return Err(StoreError::Config(why));
        }
        let dispatched = dispatcher.position.min(offset);
        let checkpoint = Checkpoint {
            physic_msg_timestamp: durable.physic_timestamp,
            logics_msg_timestamp: dispatcher.timestamp,
            index_msg_timestamp: dispatcher.timestamp,
            confirm_phy_offset: offset as i64,
            commit_log_flushed_offset: Some(self.checkpoint_flushed(offset)),
            dispatched_flushed_offset: Some(dispatched),
            ..Checkpoint::default()
        };
        // A checkpoint that cannot be written leaves everything as it was: try again later.
        self.write_checkpoint_file(&mut durable, &checkpoint)?;
        self.truncations.fetch_add(1, Ordering::AcqRel);
        for position in [&self.written, &self.flushed, &self.confirmed, &self.dispatched] {
            position.fetch_min(offset, Ordering::AcqRel);
        }
        dispatcher.position = dispatched;
        // From here on a failure leaves the files cut part of the way: the store stops, and
        // recovery at the next start finishes the cut (see the steps above).
        let cut = self.cut_log(writer, offset).and_then(|()| {
            self.cut_queues(&mut dispatcher, writer, offset)?;
            let mut epochs = writer.epochs.clone();
            epochs.truncate_suffix(offset as i64);
            if epochs != writer.epochs {
                epochs::save(self.disk.as_ref(), &self.config.root, &epochs)?;
                writer.epochs = epochs;
            }
            Ok(())
        });
        if let Err(error) = cut {
            let reason = format!("a truncation to {offset} failed part of the way: {error}");
            tracing::error!(%reason, "store stopping");
            lock(&self.stopped).get_or_insert(reason.clone());
            return Err(StoreError::Stopped(reason));
        }
        tracing::info!(offset, "store truncated");
        Ok(())
    }

    /// Refuses a cut point outside the log or inside a record.
    fn check_cut_point(&self, writer: &Writer, offset: u64) -> Result<(), StoreError> {
        let log_min = writer.segments.files().first().map_or(writer.write_offset, |s| s.base);
        let refuse = |why: &str| {
            let end = writer.write_offset;
            Err(StoreError::Config(format!(
                "cannot truncate to {offset} (log {log_min}-{end}): {why}"
            )))
        };
        if offset < log_min || offset > writer.write_offset {
            return refuse("outside the log");
        }
        let file_bytes = self.config.commit_log_file_bytes;
        if offset == writer.write_offset || offset.is_multiple_of(file_bytes) {
            return Ok(());
        }
        let Some(segment) = writer.segments.find(offset) else {
            return refuse("no file holds it");
        };
        // A record there names its own offset (`storage-format.md` §3).
        const AT: usize = petrel_core::record::offset::PHYSICAL_OFFSET;
        let mut header = [0u8; AT + 8];
        let readable = (file_bytes - offset % file_bytes).min(header.len() as u64) as usize;
        let read = segment.file.read_at(offset - segment.base, &mut header[..readable]);
        let claims = (readable == header.len() && read.is_ok())
            .then(|| i64::from_be_bytes(header[AT..].try_into().expect("8 bytes")));
        match claims == Some(offset as i64) {
            true => Ok(()),
            false => refuse("no record starts there"),
        }
    }

    /// Zeroes the commit log from `offset` and removes the files after it.
    fn cut_log(&self, writer: &mut Writer, offset: u64) -> Result<(), StoreError> {
        let file_bytes = self.config.commit_log_file_bytes;
        if let Some(segment) = writer.segments.find(offset).filter(|s| s.base < offset) {
            segment
                .file
                .zero_from(offset - segment.base)
                .context(|| "cannot cut the commit log".to_owned())?;
            segment.file.sync().sync_context(|| "cannot sync the commit log".to_owned())?;
        }
        let keep_to = offset.div_ceil(file_bytes) * file_bytes;
        writer.segments.remove_from(self.disk.as_ref(), keep_to)?;
        *self.files.write().unwrap_or_else(|p| p.into_inner()) =
            writer.segments.files().to_vec().into();
        writer.write_offset = offset;
        Ok(())
    }

    /// Drops the units of records at or past `offset` and sets each queue's next offset.
    fn cut_queues(
        &self,
        dispatcher: &mut Dispatcher,
        writer: &mut Writer,
        offset: u64,
    ) -> Result<(), StoreError> {
        dispatcher.unwritten.clear();
        writer.queue_next.clear();
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        for (topic, by_id) in queues.iter() {
            for (queue_id, queue) in by_id {
                let mut queue = lock(queue);
                queue.cut_to_log(self.disk.as_ref(), offset)?;
                let next = queue.max_offset() as i64;
                writer.queue_next.entry(topic.clone()).or_default().insert(*queue_id, next);
            }
        }
        drop(queues);
        // The records kept but not dispatched yet (a slave dispatches up to its master's
        // confirm offset) have no units: their queue offsets are taken too.
        self.take_undispatched_queue_offsets(writer, dispatcher.position, offset)
    }

    /// Raises each queue's next offset past the records in `[from, to)`, which have no units
    /// yet (not confirmed, so not dispatched): their queue offsets are theirs already.
    pub(super) fn take_undispatched_queue_offsets(
        &self,
        writer: &mut Writer,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let mut position = from;
        self.walk_log(&mut position, to, |record| {
            if record::sys_flag::is_dispatched(record.sys_flag) {
                let topic = record.topic_str();
                if !writer.queue_next.contains_key(topic) {
                    writer.queue_next.insert(topic.into(), BTreeMap::new());
                }
                let by_id = writer.queue_next.get_mut(topic).expect("inserted just above");
                let next = by_id.entry(record.queue_id).or_insert(0);
                *next = (*next).max(record.queue_offset + 1);
            }
            Ok(())
        })
    }
}
