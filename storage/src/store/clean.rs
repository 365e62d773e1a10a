//! Cleanup: measuring the disk, refusing writes when it is full, deleting expired files.

use super::*;

/// The passes an operator's request covers, as RocketMQ's `executeDeleteFilesManually`.
const MANUAL_PASSES: u64 = 20;

impl Store {
    /// An operator's request to delete expired files now (mqadmin deleteExpiredCommitLog):
    /// the next passes delete commit-log files older than `fileReservedTime` whatever the hour
    /// `deleteWhen` names.
    pub fn delete_expired_manually(&self) {
        self.manual_passes.store(MANUAL_PASSES, Ordering::Relaxed);
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
        let asked = self
            .manual_passes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
            .is_ok();
        let decision = cleanup::decide(&self.config, hour, used, manual || asked);
        let refuse = decision.refuse_writes || !self.abort_written();
        let full = if refuse { used.max(1) } else { 0 };
        let was_full = self.disk_full_percent.swap(full, Ordering::Relaxed) > 0;
        match (was_full, refuse) {
            (false, true) => tracing::error!(
                used_percent = used,
                limit_percent = self.config.disk_warning_ratio,
                store = %root.display(),
                "the disk is full: writes are refused, reads go on. Free space on it; the \
                 broker deletes commit-log files older than fileReservedTime as they come due"
            ),
            (true, false) => {
                tracing::warn!(used_percent = used, "the disk has room again: writes resume")
            }
            _ => {}
        }
        if !decision.delete_expired {
            return Ok(0);
        }
        let deleted = self.fatal(self.delete_expired(now, decision.force))?;
        if deleted == 0 && decision.refuse_writes && !was_full {
            tracing::error!(
                reserved_hours = self.config.file_reserved_hours,
                "no commit-log file is old enough to delete: the disk stays full until space is \
                 freed or fileReservedTime is lowered"
            );
        }
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

    /// Whether the `abort` file is there, writing it now if a read-only start left it out.
    fn abort_written(&self) -> bool {
        if !self.abort_missing.load(Ordering::Relaxed) {
            return true;
        }
        let _making = lock(&self.abort_making);
        if !self.abort_missing.load(Ordering::Relaxed) {
            return true;
        }
        // An `abort` here is one an earlier attempt created but could not write: not durable,
        // so it is made again rather than taken as written.
        let (disk, config) = (self.disk.as_ref(), &self.config);
        let created = super::open::remove_half_made_abort(disk, config)
            && super::open::create_abort(disk, config)
                .inspect_err(|error| {
                    tracing::warn!(%error, "still no room for the abort file: writes stay refused");
                    super::open::remove_half_made_abort(disk, config);
                })
                .is_ok();
        if created {
            self.abort_missing.store(false, Ordering::Relaxed);
        }
        created
    }

    /// Refuses what would change the store while a read-only open has no `abort` file (a
    /// crash then would be taken for a clean stop), trying first to write it: a write that
    /// failed for want of space at the open may find room a moment later.
    pub(super) fn check_not_read_only(&self) -> Result<(), StoreError> {
        match !self.abort_written() {
            true => Err(StoreError::DiskFull {
                used_percent: 100,
                limit_percent: self.config.disk_warning_ratio,
            }),
            false => Ok(()),
        }
    }

    /// Deletes up to `deleteFileBatchMax` of the oldest commit-log files that are
    /// expired (or, forced, any), never the newest nor one not yet flushed and dispatched,
    /// and the epochs that ended in them.
    pub(super) fn delete_expired(&self, now: i64, force: bool) -> Result<usize, StoreError> {
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
            // The epochs whose records all went go too (a crash before this is pruned at open).
            let mut epochs = writer.epochs.clone();
            epochs.truncate_prefix(self.min_physical_offset() as i64);
            if epochs != writer.epochs {
                epochs::save(self.disk.as_ref(), &self.config.root, &epochs)?;
                writer.epochs = epochs;
            }
            tracing::info!(
                files = expired,
                min_offset = self.min_physical_offset(),
                "deleted expired commit-log files"
            );
        }
        Ok(expired)
    }

    /// The store time of the file's first record (see [`super::read::agreed_store_time`]: a misread
    /// time could delete a file before it expires).
    pub(super) fn first_store_time(&self, segment: &Segment) -> Option<i64> {
        let read = || self.message_at(segment.base);
        super::read::agreed_store_time(read, || format!("the store time at {}", segment.base))
    }
}
