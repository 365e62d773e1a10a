//! Durability: the commit log's flush, the consume queues' flush and the checkpoint, and the
//! clean shutdown.

use super::*;

impl Store {
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

    /// Syncs every consume queue, then writes the checkpoint.
    pub fn flush_queues(&self) -> Result<(), StoreError> {
        self.check_running()?;
        self.fatal(self.write_checkpoint())
    }

    pub(super) fn write_checkpoint(&self) -> Result<(), StoreError> {
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
        // A truncation since the position was read lowered it (under this lock).
        let dispatched = dispatched.min(self.dispatched_offset());
        let checkpoint = Checkpoint {
            physic_msg_timestamp: durable.physic_timestamp,
            logics_msg_timestamp: logics_timestamp,
            index_msg_timestamp: logics_timestamp,
            confirm_phy_offset: self.confirm_offset() as i64,
            commit_log_flushed_offset: Some(self.checkpoint_flushed(flushed)),
            dispatched_flushed_offset: Some(dispatched),
            ..Checkpoint::default()
        };
        self.write_checkpoint_file(&mut durable, &checkpoint)
    }

    /// Writes and syncs `checkpoint`; the caller holds the `durable` lock.
    pub(super) fn write_checkpoint_file(
        &self,
        durable: &mut Durable,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
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

    /// The first half of a clean shutdown: refuses appends from here on and makes everything
    /// appended durable; returns the end of the log. The caller confirms what it may (a lone
    /// master: all of it), then calls [`Store::shutdown`].
    pub fn close(&self) -> Result<u64, StoreError> {
        self.closing.store(true, Ordering::Release);
        // Every append checks the flag under this lock, so once it is taken and released no
        // append can land after the flush below.
        drop(lock(&self.writer));
        self.flush_log()
    }

    /// Clean shutdown: closes (if not yet closed), dispatches up to the confirm offset,
    /// writes the checkpoint and removes `abort`.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.close()?;
        self.fatal(self.shutdown_flushed())
    }

    pub(super) fn shutdown_flushed(&self) -> Result<(), StoreError> {
        let mut dispatcher = lock(&self.dispatcher);
        self.dispatch_to(&mut dispatcher, self.confirm_offset())?;
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
}

/// Opens the checkpoint, replacing one a crash left short (created but not yet extended).
pub(super) fn open_or_create(
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
