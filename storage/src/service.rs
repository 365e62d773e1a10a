//! The store's shell: the confirm machine (`petrel_core::confirm`) bound to the store and its
//! background tasks: the flush task (the group commit under SYNC_FLUSH, the periodic flush
//! under ASYNC_FLUSH), dispatch, the consume-queue checkpoint, and cleanup.
//!
//! `StoreService::append` appends and hands the machine `Appended`; the machine says when to
//! persist (the flush task runs `flush_log` and reports `Persisted`), up to where producers
//! may be acknowledged (`wait_acknowledged` waits for that, or answers
//! FLUSH_DISK_TIMEOUT after `syncFlushTimeout`) and up to where consumers may see records
//! (`Store::confirm`, then the dispatch task). Producers waiting together share one
//! fdatasync: the machine keeps one persist outstanding, and appends made while it runs
//! wait for the next. `dispatched()` lets long-polling pulls wait for new records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use petrel_core::confirm::{ConfirmAction, ConfirmEvent, ConfirmMachine};
use petrel_core::ha::epoch::EpochEntry;
use petrel_core::record::RecordInput;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::error::StoreError;
use crate::store::{Appended, Store};

/// How long a task waits before trying again after an error that did not stop the store.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// How long the flush task sleeps when the machine has no timer (SYNC_FLUSH): events wake it.
const IDLE: Duration = Duration::from_secs(3600);

fn store_stopped(store: &Store) -> bool {
    store.check_running().is_err()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs store work that may block (fdatasync) off the async workers. The simulator has no
/// blocking pool; there the work runs in place after a random pause of up to 2 ms, the time a
/// real disk takes to sync, so that a simulated crash can fall between an append and its sync.
#[cfg(not(madsim))]
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(work).await
}

#[cfg(madsim)]
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    use madsim::rand::Rng;
    let pause = madsim::rand::thread_rng().gen_range(50..2_000);
    tokio::time::sleep(Duration::from_micros(pause)).await;
    Ok(work())
}

/// Runs store work that writes mostly to the page cache (dispatch: consume-queue units and
/// index entries; only creating a new file syncs its directory) in place on the async worker: the hop to the blocking pool and back costs more
/// than the work (two thread wake-ups per dispatch round). The simulator pauses first, as for
/// [`blocking`], so that the interleavings it explores stay the same.
#[cfg(not(madsim))]
async fn in_page_cache<T>(work: impl FnOnce() -> T) -> Result<T, tokio::task::JoinError> {
    Ok(work())
}

#[cfg(madsim)]
async fn in_page_cache<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    blocking(work).await
}

/// An offset that only grows (flushed, dispatched), published by one task and awaited by
/// many. Built on `Notify` rather than `tokio::sync::watch`: watch spreads its waiters over
/// several notifiers chosen by a thread-local random number, which makes the order they wake
/// in differ between two runs of the same simulation seed.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<ProgressInner>,
}

struct ProgressInner {
    value: std::sync::atomic::AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl Progress {
    fn new(value: u64) -> Progress {
        let inner = ProgressInner {
            value: std::sync::atomic::AtomicU64::new(value),
            closed: std::sync::atomic::AtomicBool::new(false),
            changed: Notify::new(),
        };
        Progress { inner: Arc::new(inner) }
    }

    /// The offset now.
    pub fn get(&self) -> u64 {
        self.inner.value.load(std::sync::atomic::Ordering::Acquire)
    }

    fn publish(&self, value: u64) {
        if self.inner.value.fetch_max(value, std::sync::atomic::Ordering::AcqRel) < value {
            self.inner.changed.notify_waiters();
        }
    }

    /// Brings the offset back to `value` if it is past it (a truncation took the log back).
    fn lower(&self, value: u64) {
        if self.inner.value.fetch_min(value, std::sync::atomic::Ordering::AcqRel) > value {
            self.inner.changed.notify_waiters();
        }
    }

    /// No more progress will come (the task that published it ended).
    fn close(&self) {
        self.inner.closed.store(true, std::sync::atomic::Ordering::Release);
        self.inner.changed.notify_waiters();
    }

    /// Waits until the offset satisfies `ready`; false if progress stopped first.
    pub async fn wait_for(&self, ready: impl Fn(u64) -> bool) -> bool {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if ready(self.get()) {
                return true;
            }
            if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                return false;
            }
            changed.await;
        }
    }
}

/// Closes a task's progress however the task ends, so nobody waits on it for ever.
struct CloseOnDrop(Progress);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Why a put did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The message is stored but was not acknowledged within `syncFlushTimeout` (RocketMQ's
    /// FLUSH_DISK_TIMEOUT): it may yet become durable and be delivered.
    #[error("message stored but not flushed within {timeout_ms} ms")]
    FlushTimeout { appended: Appended, timeout_ms: u64 },
    /// Stored and flushed as configured, but no slave reported holding it within
    /// `syncFlushTimeout` (RocketMQ's FLUSH_SLAVE_TIMEOUT): it is on the master only.
    #[error("message stored but not replicated within {timeout_ms} ms")]
    SlaveTimeout { appended: Appended, timeout_ms: u64 },
    /// The message is in the page cache, but the sync meant to make it durable failed and
    /// the store stopped: it survives a restart of the process, not a power loss.
    #[error("message stored but not durable: {reason}")]
    NotDurable { appended: Appended, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the service's tasks share: the store, the confirm machine and what its actions set.
struct Shared {
    store: Arc<Store>,
    confirm: Mutex<ConfirmMachine>,
    /// Producers whose records end at or below this may be answered.
    acknowledged: Progress,
    dispatched: Progress,
    /// How far the commit log is durable: what a master may send its slaves.
    durable: Progress,
    /// The end of the newest persist the machine asked for.
    persist_asked: AtomicU64,
    /// Raised by each truncation, under the machine's lock: a persist that began before one
    /// reports an end the truncated log no longer has, and is not told to the new machine.
    truncations: AtomicU64,
    /// The epoch appends are written in: the last record's, until a broker made master by
    /// its controller begins its own (`StoreService::begin_epoch`).
    epoch: std::sync::atomic::AtomicU32,
    wake_flush: Notify,
    wake_dispatch: Notify,
    /// Goes from 0 to 1 when the service stops (a `Progress`, for its reproducible wake order).
    stop: Progress,
    /// The machine's clock starts here: it is handed milliseconds since.
    started: Instant,
    /// How long each commit-log flush took (the broker's metrics).
    flush_latency: petrel_core::metrics::Histogram,
}

impl Shared {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Hands the machine `event` (or a tick) and carries out what it asks for. The actions run
    /// under the machine's lock, so the store's confirm offset and the acknowledged offset are
    /// the machine's whenever the lock is free.
    fn drive(&self, event: Option<ConfirmEvent>) {
        self.drive_locked(&mut lock(&self.confirm), event);
    }

    /// [`Shared::drive`] with the machine's lock already taken.
    fn drive_locked(&self, machine: &mut ConfirmMachine, event: Option<ConfirmEvent>) {
        let now = self.now();
        match event {
            Some(event) => machine.handle(now, event),
            None => machine.tick(now),
        }
        while let Some(action) = machine.poll_action() {
            match action {
                ConfirmAction::Persist { up_to } => {
                    self.persist_asked.fetch_max(up_to, Ordering::AcqRel);
                    self.wake_flush.notify_one();
                }
                ConfirmAction::Acknowledge { up_to } => self.acknowledged.publish(up_to),
                ConfirmAction::Confirm { up_to } => {
                    self.store.confirm(up_to);
                    self.wake_dispatch.notify_one();
                }
            }
        }
    }

    /// Flushes the commit log and tells the machine.
    fn persist(&self) -> Result<u64, StoreError> {
        let truncations = self.truncations.load(Ordering::Acquire);
        let began = Instant::now();
        let flushed = self.store.flush_log()?;
        self.flush_latency.record_us(began.elapsed().as_micros() as u64);
        let mut machine = lock(&self.confirm);
        if self.truncations.load(Ordering::Acquire) != truncations {
            return Ok(self.store.flushed_offset());
        }
        self.drive_locked(&mut machine, Some(ConfirmEvent::Persisted { offset: flushed }));
        self.durable.publish(flushed);
        Ok(flushed)
    }
}

/// The running store: the `Store`, its confirm machine and its tasks.
pub struct StoreService {
    shared: Arc<Shared>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl StoreService {
    /// Starts the tasks for `store` on the current runtime. Everything recovery left is
    /// durable, and confirmed up to the store's confirm offset (all of it, but in controller
    /// mode); appends continue the epoch of the last record.
    pub fn start(store: Arc<Store>) -> StoreService {
        let (end, confirmed) = (store.written_offset(), store.confirm_offset());
        let epoch = store.last_epoch().map_or(0, |e| e.epoch.max(0) as u32);
        let config = store.config().confirm_config();
        let shared = Arc::new(Shared {
            confirm: Mutex::new(ConfirmMachine::resume(config, end, confirmed, epoch, 0)),
            acknowledged: Progress::new(confirmed),
            dispatched: Progress::new(store.dispatched_offset()),
            durable: Progress::new(end),
            persist_asked: AtomicU64::new(end),
            truncations: AtomicU64::new(0),
            epoch: std::sync::atomic::AtomicU32::new(epoch),
            wake_flush: Notify::new(),
            wake_dispatch: Notify::new(),
            stop: Progress::new(0),
            started: Instant::now(),
            flush_latency: petrel_core::metrics::Histogram::default(),
            store,
        });
        let tasks = vec![
            tokio::spawn(flush_task(shared.clone())),
            tokio::spawn(dispatch_task(shared.clone())),
            tokio::spawn(checkpoint_task(shared.clone())),
            tokio::spawn(cleanup_task(shared.clone())),
        ];
        StoreService { shared, tasks: std::sync::Mutex::new(tasks) }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// Changes whenever dispatch hands new records to consume queues.
    pub fn dispatched(&self) -> Progress {
        self.shared.dispatched.clone()
    }

    /// How long the commit log's flushes took.
    pub fn flush_latency(&self) -> &petrel_core::metrics::Histogram {
        &self.shared.flush_latency
    }

    /// How far the commit log is durable, as flushes move it: what a master sends its slaves.
    pub fn durable(&self) -> Progress {
        self.shared.durable.clone()
    }

    /// Appends one record: [`StoreService::append_batch`] of one.
    pub fn append(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, StoreError> {
        self.append_batch(std::slice::from_ref(input), now, &mut |_, _| {})
    }

    /// Appends the records of one request as one unit (`Store::append_batch`) and tells the
    /// confirm machine, without waiting: a caller that must not hold its records' borrow
    /// across a wait appends here, then awaits [`StoreService::wait_acknowledged`].
    pub fn append_batch(
        &self,
        inputs: &[RecordInput<'_>],
        now: i64,
        record_offset: &mut dyn FnMut(u64, i64),
    ) -> Result<Appended, StoreError> {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let appended = self.shared.store.append_batch(inputs, now, epoch, record_offset)?;
        let mut machine = lock(&self.shared.confirm);
        // A truncation since the append took its records back and restarted the machine.
        if self.shared.store.truncations() == appended.truncations {
            let event = ConfirmEvent::Appended { end: appended.end_offset, epoch };
            self.shared.drive_locked(&mut machine, Some(event));
        }
        Ok(appended)
    }

    /// Appends records a master replicated (`Store::append_replicated`) and tells the confirm
    /// machine; an empty store whose log begins past 0 tells it that first, as persisted.
    /// Returns the new end.
    pub fn append_replicated(
        &self,
        offset: u64,
        records: &[u8],
        epoch: Option<EpochEntry>,
    ) -> Result<u64, StoreError> {
        let store = &self.shared.store;
        let began = store.written_offset() == 0 && offset > 0;
        let appended = store.append_replicated(offset, records, epoch);
        if began && store.written_offset() >= offset {
            self.shared.drive(Some(ConfirmEvent::Persisted { offset }));
        }
        let end = appended?;
        // The records are of the master's epochs, which the store took from the frames.
        let epoch = store.last_epoch().map_or(0, |e| e.epoch.max(0) as u32);
        self.shared.drive(Some(ConfirmEvent::Appended { end, epoch }));
        Ok(end)
    }

    /// Cuts the log back to `offset` (`Store::truncate_to`), for a slave whose log went past
    /// the point it shares with its new master. The confirm machine starts again there, with
    /// everything below durable and confirmed; producers still waiting past it are not
    /// acknowledged. The caller is the log's only writer.
    pub fn truncate_to(&self, offset: u64) -> Result<(), StoreError> {
        let shared = &self.shared;
        shared.persist()?;
        let mut machine = lock(&shared.confirm);
        shared.store.truncate_to(offset)?;
        shared.truncations.fetch_add(1, Ordering::AcqRel);
        let (end, confirmed) = (shared.store.written_offset(), shared.store.confirm_offset());
        let epoch = shared.store.last_epoch().map_or(0, |e| e.epoch.max(0) as u32);
        *machine = ConfirmMachine::resume(*machine.config(), end, confirmed, epoch, shared.now());
        shared.acknowledged.lower(confirmed);
        shared.dispatched.lower(shared.store.dispatched_offset());
        shared.durable.lower(end);
        shared.persist_asked.fetch_min(end, Ordering::AcqRel);
        Ok(())
    }

    /// Appends from now on are written in `epoch` (a broker the controller made master, with
    /// the epoch it was elected in); the store writes the epoch file before its first record.
    /// An epoch below the current one is refused.
    pub fn begin_epoch(&self, epoch: u32) -> Result<(), StoreError> {
        let current = self.shared.epoch.fetch_max(epoch, Ordering::AcqRel);
        match epoch < current {
            true => Err(StoreError::StaleEpoch { epoch, current }),
            false => Ok(()),
        }
    }

    /// The epoch appends are written in.
    pub fn epoch(&self) -> u32 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// A replica (a slave, by its connection) holds the log up to `offset`.
    pub fn replica_acked(&self, replica: u64, offset: u64) {
        self.shared.drive(Some(ConfirmEvent::ReplicaAcked { replica, offset }));
    }

    /// A controller-mode slave's master confirmed its log up to `offset`.
    pub fn upstream_confirmed(&self, offset: u64) {
        self.shared.drive(Some(ConfirmEvent::UpstreamConfirmed { offset }));
    }

    /// The broker's role changed: acks and confirms are counted as `config` says from now on
    /// (`ConfirmMachine::reconfigure`).
    pub fn reconfigure(&self, config: petrel_core::confirm::ConfirmConfig) {
        let shared = &self.shared;
        let mut machine = lock(&shared.confirm);
        machine.reconfigure(shared.now(), config);
        shared.drive_locked(&mut machine, None);
    }

    /// How far the log was promised: the end of the last record a producer may be
    /// acknowledged for or consumers may see, as the confirm machine decided.
    pub fn promised(&self) -> u64 {
        let machine = lock(&self.shared.confirm);
        machine.acknowledged().max(machine.confirmed())
    }

    /// How the confirm machine counts now.
    pub fn confirm_config(&self) -> petrel_core::confirm::ConfirmConfig {
        *lock(&self.shared.confirm).config()
    }

    /// A replica left: its acks count no more.
    pub fn replica_gone(&self, replica: u64) {
        self.shared.drive(Some(ConfirmEvent::ReplicaGone { replica }));
    }

    /// Whether a SYNC_MASTER may wait for its slaves for a record ending at `end` (RocketMQ's
    /// `isSlaveOK`): one is connected and the furthest is less than `max_gap` bytes behind.
    pub fn slave_ok(&self, end: u64, max_gap: u64) -> bool {
        let (count, furthest) = lock(&self.shared.confirm).replicas();
        count > 0 && end.saturating_sub(furthest) < max_gap
    }

    /// Whether the producer of `appended` may be answered now (under ASYNC_FLUSH, at once).
    pub fn is_acknowledged(&self, appended: &Appended) -> bool {
        self.shared.acknowledged.get() >= appended.end_offset && !self.cut_since(appended)
    }

    /// Whether the log was cut back since `appended` was written: its records may be gone,
    /// and other records stand where they were.
    fn cut_since(&self, appended: &Appended) -> bool {
        self.shared.store.truncations() != appended.truncations
    }

    /// Appends and waits until the producer may be answered.
    pub async fn put(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, PutError> {
        let appended = self.append(input, now)?;
        self.wait_acknowledged(appended).await
    }

    /// Waits until the confirm machine acknowledges `appended` (under SYNC_FLUSH, once the
    /// group commit covered it), or `syncFlushTimeout` passed.
    pub async fn wait_acknowledged(&self, appended: Appended) -> Result<Appended, PutError> {
        let shared = &self.shared;
        let end = appended.end_offset;
        let timeout_ms = shared.store.config().sync_flush_timeout_ms;
        let limit = Duration::from_millis(timeout_ms);
        let waited = timeout(limit, shared.acknowledged.wait_for(|a| a >= end)).await;
        let stopped = |appended| match shared.store.check_running() {
            Err(stopped) => PutError::NotDurable { appended, reason: stopped.to_string() },
            Ok(()) => PutError::NotDurable { appended, reason: "the flush task ended".into() },
        };
        match waited {
            Ok(true) if self.cut_since(&appended) => {
                let reason = "the log was cut back after the append (this broker is no longer \
                              the master): the message may be lost"
                    .to_owned();
                Err(PutError::NotDurable { appended, reason })
            }
            Ok(true) => Ok(appended),
            Ok(false) => Err(stopped(appended)),
            // The flush task ends when the store stops; say so rather than "timeout".
            Err(_) if store_stopped(&shared.store) => Err(stopped(appended)),
            Err(_) => {
                // The flush did its part: what did not come is a replica's report.
                let machine = lock(&shared.confirm);
                match machine.config().acks_required > 0 && machine.durable_bound() >= end {
                    true => Err(PutError::SlaveTimeout { appended, timeout_ms }),
                    false => Err(PutError::FlushTimeout { appended, timeout_ms }),
                }
            }
        }
    }

    /// Flushes the commit log now (for a caller that must know its appends are durable
    /// before it writes something that accounts for them).
    pub fn persist(&self) -> Result<u64, StoreError> {
        self.shared.persist()
    }

    /// The confirm machine's, the store's and the shell's invariants: the store's confirm
    /// offset and the acknowledged offset are the machine's, and under SYNC_FLUSH nothing is
    /// acknowledged or confirmed that the store has not flushed.
    pub fn check_invariants(&self) {
        let shared = &self.shared;
        let machine = lock(&shared.confirm);
        machine.check_invariants();
        shared.store.check_invariants();
        assert_eq!(
            shared.store.confirm_offset(),
            machine.confirmed(),
            "the store's confirm offset"
        );
        assert_eq!(shared.acknowledged.get(), machine.acknowledged(), "the acknowledged offset");
        if machine.config().flush == petrel_core::confirm::FlushPolicy::Sync {
            let flushed = shared.store.flushed_offset();
            assert!(machine.acknowledged() <= flushed, "acknowledged past the flushed offset");
            assert!(machine.confirmed() <= flushed, "confirmed past the flushed offset");
        }
    }

    /// Stops the tasks and shuts the store down cleanly: flush, confirm what the flush made
    /// durable, dispatch, checkpoint, remove `abort`.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.shared.stop.publish(1);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            let _ = task.await;
        }
        let shared = self.shared.clone();
        blocking(move || {
            let end = shared.store.close()?;
            shared.drive(Some(ConfirmEvent::Persisted { offset: end }));
            shared.store.shutdown()
        })
        .await
        .map_err(|error| StoreError::Stopped(format!("shutdown task failed: {error}")))?
    }
}

impl Drop for StoreService {
    /// The tasks end with the service, whether or not it was shut down.
    fn drop(&mut self) {
        self.shared.stop.publish(1);
    }
}

/// Persists when the confirm machine asks (and ticks it on its timer under ASYNC_FLUSH),
/// until the service stops or a flush fails.
async fn flush_task(shared: Arc<Shared>) {
    let _closing = CloseOnDrop(shared.acknowledged.clone());
    loop {
        let timer = lock(&shared.confirm).poll_timeout();
        let deadline =
            timer.map_or(Instant::now() + IDLE, |at| shared.started + Duration::from_millis(at));
        tokio::select! {
            biased;
            _ = shared.stop.wait_for(|stop| stop > 0) => return,
            _ = shared.wake_flush.notified() => {}
            () = sleep_until(deadline) => {}
        }
        shared.drive(None);
        // Whoever flushed past what was asked told the machine.
        let asked = shared.persist_asked.load(Ordering::Acquire);
        if asked <= shared.store.flushed_offset() {
            continue;
        }
        let task_shared = shared.clone();
        match blocking(move || task_shared.persist()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "flush failed; the store accepts no more writes");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "flush task failed");
                return;
            }
        }
    }
}

/// Hands records below the confirm offset to their consume queues whenever the machine
/// confirms more.
async fn dispatch_task(shared: Arc<Shared>) {
    let _closing = CloseOnDrop(shared.dispatched.clone());
    loop {
        tokio::select! {
            biased;
            _ = shared.stop.wait_for(|stop| stop > 0) => return,
            _ = shared.wake_dispatch.notified() => {}
            // Without a wake-up a round still runs every second: it retries a failed round
            // (nothing else would wake it for records already confirmed) and picks up a
            // record confirmed by another path (a shutdown's flush).
            _ = sleep(Duration::from_secs(1)) => {}
        }
        let store = shared.store.clone();
        match in_page_cache(move || store.dispatch()).await {
            Ok(Ok(position)) => shared.dispatched.publish(position),
            Ok(Err(error)) => {
                tracing::error!(%error, "dispatch failed");
                if store_stopped(&shared.store) {
                    return;
                }
                sleep(RETRY_DELAY).await;
            }
            Err(error) => {
                tracing::error!(%error, "dispatch task failed");
                return;
            }
        }
    }
}

async fn checkpoint_task(shared: Arc<Shared>) {
    let period = Duration::from_millis(shared.store.config().flush_cq_interval_ms.max(1));
    periodically(shared, period, "checkpoint", |store| store.flush_queues()).await;
}

/// RocketMQ's `cleanResourceInterval`.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(10);

/// Measures the disk and deletes expired files every ten seconds. Wall-clock time decides
/// expiry, as file ages do in RocketMQ; under the simulator it is the simulated clock.
async fn cleanup_task(shared: Arc<Shared>) {
    periodically(shared, CLEANUP_INTERVAL, "cleanup", |store| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        store.clean(now, false).map(|_| ())
    })
    .await;
}

/// Runs `work` on the blocking pool every `period` until stopped, or until the store stops:
/// other errors are logged and the next period tries again.
async fn periodically(
    shared: Arc<Shared>,
    period: Duration,
    what: &'static str,
    work: fn(&Store) -> Result<(), StoreError>,
) {
    loop {
        tokio::select! {
            biased;
            _ = shared.stop.wait_for(|stop| stop > 0) => return,
            _ = sleep(period) => {}
        }
        let task_store = shared.store.clone();
        match blocking(move || work(&task_store)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "{what} failed");
                if store_stopped(&shared.store) {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "{what} task failed");
                return;
            }
        }
    }
}
