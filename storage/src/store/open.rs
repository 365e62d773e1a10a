//! Opening the store: reading every file's image, planning recovery from them (`recovery`),
//! applying the plan and re-dispatching what the consume queues lack.

use super::*;

impl Store {
    /// Opens the store under `config.root`, recovering it (see `recovery`), and marks it
    /// running with the `abort` file. When the disk has no room for that file and the last
    /// run stopped cleanly (no `abort` left), the store opens read-only: reads are served,
    /// appends refused as on a full disk, until a cleanup pass finds room and writes it.
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
        let abort_missing = match create_abort(disk.as_ref(), &config) {
            Ok(()) => false,
            Err(error) if error.is_no_space() && remove_half_made_abort(disk.as_ref(), &config) => {
                tracing::error!(
                    %error,
                    store = %root.display(),
                    "the disk is full: the store opens read-only, so consumers can read what it \
                     holds. Writes resume once there is room (checked every 10 s): free space on \
                     the disk"
                );
                true
            }
            Err(error) => return Err(error),
        };
        let store = Store::apply_plan(disk, config, &plan, lock)?;
        if abort_missing {
            store.abort_missing.store(true, Ordering::Relaxed);
            store.disk_full_percent.store(100, Ordering::Relaxed);
        }
        if plan.abnormal {
            store.reindex_newest(plan.redispatch_from)?;
        }
        let units_replaced = store.redispatch(plan.redispatch_from, plan.confirmed)?;
        store.finish_recovery()?;
        Ok((store, RecoveryReport { plan, units_replaced }))
    }

    pub(super) fn apply_plan(
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
        let hold = if config.hold_recovery_start { plan.scan_from } else { u64::MAX };
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
        let log_min = files.first().map_or(plan.end, |s| s.base);
        let epochs = super::epochs::load(disk.as_ref(), &config.root, log_min, plan.end)?;
        let writer = Writer {
            segments,
            write_offset: plan.end,
            queue_next: BTreeMap::new(),
            buffer: Vec::new(),
            store_timestamp_max: plan.store_timestamp_max,
            epochs,
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
                unwritten: Vec::new(),
            }),
            durable: Mutex::new(Durable {
                checkpoint_file: None,
                physic_timestamp: plan.store_timestamp_max,
            }),
            written: AtomicU64::new(plan.end),
            flushed: AtomicU64::new(plan.end),
            confirmed: AtomicU64::new(plan.confirmed),
            dispatched: AtomicU64::new(plan.redispatch_from),
            truncations: AtomicU64::new(0),
            recovery_hold: AtomicU64::new(hold),
            stopped: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
            disk_full_percent: AtomicU64::new(0),
            manual_passes: AtomicU64::new(0),
            abort_missing: std::sync::atomic::AtomicBool::new(false),
            abort_making: Mutex::new(()),
            _lock: lock,
        })
    }

    /// After a crash, rebuilds the newest index file from the log up to `to` (dispatch covers
    /// the rest); see `Index::drop_newest`.
    pub(super) fn reindex_newest(&self, to: u64) -> Result<(), StoreError> {
        let Some(index) = &self.index else { return Ok(()) };
        let from = lock(index).drop_newest(self.disk.as_ref())?;
        let mut position = (from.max(0) as u64).max(self.min_physical_offset());
        self.walk_log(&mut position, to, |record| match is_valid_topic(record.topic) {
            true => self.index_record(record),
            false => Ok(()),
        })?;
        lock(index).write_pending()
    }

    /// Dispatches `[from, end)` again and returns how many units differed from the log.
    pub(super) fn redispatch(&self, from: u64, end: u64) -> Result<u64, StoreError> {
        let mut dispatcher = lock(&self.dispatcher);
        dispatcher.position = from;
        let replaced = self.dispatch_to(&mut dispatcher, end)?;
        self.dispatched.store(dispatcher.position, Ordering::Release);
        Ok(replaced)
    }

    /// Makes recovery's work durable, moves each queue's min offset past records cleanup had
    /// deleted, sets each queue's next offset (past the records not yet confirmed, too) and
    /// writes the checkpoint.
    pub(super) fn finish_recovery(&self) -> Result<(), StoreError> {
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
        drop(queues);
        let (from, end) = (self.dispatched_offset(), writer.write_offset);
        self.take_undispatched_queue_offsets(&mut writer, from, end)?;
        drop(writer);
        self.write_checkpoint()
    }
}

/// The pid the abort file holds; under the simulator the simulated node's id, so that two runs
/// of a seed write the same bytes.
fn process_id() -> u32 {
    #[cfg(not(madsim))]
    {
        std::process::id()
    }
    #[cfg(madsim)]
    {
        madsim::plugin::node().to_string().parse().unwrap_or(0)
    }
}

/// Creates `abort` (the PID, as RocketMQ writes it) unless a crash left one, and makes it
/// durable: its presence at the next start means this run did not end cleanly.
pub(super) fn create_abort(disk: &dyn Disk, config: &StoreConfig) -> Result<(), StoreError> {
    let abort = config.abort_path();
    if disk.exists(&abort) {
        return Ok(());
    }
    let pid = process_id().to_string();
    let file = disk
        .create(&abort, pid.len() as u64)
        .context(|| "cannot create the abort file".to_owned())?;
    file.write_at(0, pid.as_bytes()).context(|| "cannot write the abort file".to_owned())?;
    file.sync().sync_context(|| "cannot sync the abort file".to_owned())?;
    disk.sync_dir(&config.root).sync_context(|| "cannot sync the store directory".to_owned())
}

/// After a failed `create_abort` (there was no `abort` before it): removes the file it may
/// have created before its write failed (on ext4 an empty file needs no data block, so the
/// create succeeds and the write does not). Whether no `abort` is left.
pub(super) fn remove_half_made_abort(disk: &dyn Disk, config: &StoreConfig) -> bool {
    let abort = config.abort_path();
    !disk.exists(&abort) || disk.remove(&abort).is_ok()
}

pub(super) fn synced_loss_error(loss: SyncedLoss) -> StoreError {
    StoreError::Layout(format!(
        "the commit log is invalid at offset {} although the checkpoint says it was flushed up to \
         {}: flushed data is damaged. Copy the store directory for inspection; Petrel will not \
         truncate flushed data by itself",
        loss.offset, loss.flushed
    ))
}

/// Reads every image stably (`stable_slice`) and plans recovery from them.
pub(super) fn read_and_plan(
    disk: &dyn Disk,
    config: &StoreConfig,
) -> Result<RecoveryPlan, StoreError> {
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
        confirm_from_checkpoint: config.controller_mode,
    };
    Ok(recovery::plan(&image))
}

pub(super) fn read_images(segments: &Segments) -> Result<Vec<(u64, Bytes)>, StoreError> {
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
pub(super) fn list_queue_dirs(
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

pub(super) fn open_queues(
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
