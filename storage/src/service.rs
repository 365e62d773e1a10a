//! The store's background work as tasks: flushing (group commit under SYNC_FLUSH, the periodic
//! flush under ASYNC_FLUSH), dispatch, the consume-queue checkpoint, and cleanup.
//!
//! `StoreService::put` is the append a broker calls: under SYNC_FLUSH it returns only after the
//! group commit's fdatasync covered the record (or with `PutError::FlushTimeout` after
//! `syncFlushTimeout`); under ASYNC_FLUSH at once. Producers waiting together share one
//! fdatasync: each append wakes the flush task, whose wake-ups coalesce while it syncs.
//! `dispatched()` lets long-polling pulls wait for new records.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::record::RecordInput;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, timeout, Instant, MissedTickBehavior};

use crate::config::FlushDiskType;
use crate::error::StoreError;
use crate::store::{Appended, Store};

/// How long a task waits before trying again after an error that did not stop the store.
const RETRY_DELAY: Duration = Duration::from_millis(100);

fn store_stopped(store: &Store) -> bool {
    store.check_running().is_err()
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

/// A dirty page as RocketMQ counts them for `flushCommitLogLeastPages`.
const PAGE_BYTES: u64 = 4096;

/// Why a put did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The message is stored but was not flushed within `syncFlushTimeout` (RocketMQ's
    /// FLUSH_DISK_TIMEOUT): it may yet become durable and be delivered.
    #[error("message stored but not flushed within {timeout_ms} ms")]
    FlushTimeout { appended: Appended, timeout_ms: u64 },
    /// The message is in the page cache, but the sync meant to make it durable failed and
    /// the store stopped: it survives a restart of the process, not a power loss.
    #[error("message stored but not durable: {reason}")]
    NotDurable { appended: Appended, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running store: the `Store` plus its tasks.
pub struct StoreService {
    store: Arc<Store>,
    flushed: Progress,
    dispatched: Progress,
    wake_flush: Arc<Notify>,
    wake_dispatch: Arc<Notify>,
    /// Goes from 0 to 1 when the service stops (a `Progress`, for its reproducible wake order).
    stop: Progress,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl StoreService {
    /// Starts the tasks for `store` on the current runtime.
    pub fn start(store: Arc<Store>) -> StoreService {
        let flushed = Progress::new(store.flushed_offset());
        let dispatched = Progress::new(store.dispatched_offset());
        let stop = Progress::new(0);
        let stopped = stop.clone();
        let wake_flush = Arc::new(Notify::new());
        let wake_dispatch = Arc::new(Notify::new());
        let flush = FlushTask {
            store: store.clone(),
            wake: wake_flush.clone(),
            wake_dispatch: wake_dispatch.clone(),
            flushed: flushed.clone(),
            stopped: stopped.clone(),
        };
        let dispatch = DispatchTask {
            store: store.clone(),
            wake: wake_dispatch.clone(),
            dispatched: dispatched.clone(),
            stopped: stopped.clone(),
        };
        let tasks = vec![
            tokio::spawn(flush.run()),
            tokio::spawn(dispatch.run()),
            tokio::spawn(checkpoint_task(store.clone(), stopped.clone())),
            tokio::spawn(cleanup_task(store.clone(), stopped)),
        ];
        let tasks = std::sync::Mutex::new(tasks);
        StoreService { store, flushed, dispatched, wake_flush, wake_dispatch, stop, tasks }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Changes whenever dispatch hands new records to consume queues.
    pub fn dispatched(&self) -> Progress {
        self.dispatched.clone()
    }

    /// Appends and, under SYNC_FLUSH, waits for the group commit.
    pub async fn put(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, PutError> {
        let appended = self.append(input, now)?;
        self.durable(appended).await
    }

    /// Appends and wakes the task that acts next (flush or dispatch), without waiting: a
    /// caller that must not hold its record's borrow across a wait appends here, then awaits
    /// [`StoreService::durable`].
    pub fn append(&self, input: &RecordInput<'_>, now: i64) -> Result<Appended, StoreError> {
        let appended = self.store.append(input, now)?;
        if self.store.config().flush_disk_type == FlushDiskType::AsyncFlush {
            self.wake_dispatch.notify_one();
        } else {
            self.wake_flush.notify_one();
        }
        Ok(appended)
    }

    /// True when appends are acknowledged at once (ASYNC_FLUSH), so [`StoreService::durable`]
    /// has nothing to wait for.
    pub fn acks_at_once(&self) -> bool {
        self.store.config().flush_disk_type == FlushDiskType::AsyncFlush
    }

    /// Under SYNC_FLUSH, waits until the group commit covered `appended` (or
    /// `syncFlushTimeout` passed); under ASYNC_FLUSH returns at once.
    pub async fn durable(&self, appended: Appended) -> Result<Appended, PutError> {
        let config = self.store.config();
        if config.flush_disk_type == FlushDiskType::AsyncFlush {
            return Ok(appended);
        }
        let flushed = self.flushed.clone();
        let end = appended.end_offset;
        let limit = Duration::from_millis(config.sync_flush_timeout_ms);
        let waited = timeout(limit, flushed.wait_for(|f| f >= end)).await;
        let stopped = |appended| match self.store.check_running() {
            Err(stopped) => PutError::NotDurable { appended, reason: stopped.to_string() },
            Ok(()) => PutError::NotDurable { appended, reason: "the flush task ended".into() },
        };
        match waited {
            Ok(true) => Ok(appended),
            Ok(false) => Err(stopped(appended)),
            Err(_) => {
                // The flush task ends when the store stops; say so rather than "timeout".
                if self.store.check_running().is_err() {
                    return Err(stopped(appended));
                }
                let timeout_ms = config.sync_flush_timeout_ms;
                Err(PutError::FlushTimeout { appended, timeout_ms })
            }
        }
    }

    /// Stops the tasks and shuts the store down cleanly (flush, dispatch, checkpoint, abort).
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.stop.publish(1);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let store = self.store.clone();
        blocking(move || store.shutdown())
            .await
            .map_err(|error| StoreError::Stopped(format!("shutdown task failed: {error}")))?
    }
}

impl Drop for StoreService {
    /// The tasks end with the service, whether or not it was shut down.
    fn drop(&mut self) {
        self.stop.publish(1);
    }
}

struct FlushTask {
    store: Arc<Store>,
    wake: Arc<Notify>,
    wake_dispatch: Arc<Notify>,
    flushed: Progress,
    stopped: Progress,
}

impl FlushTask {
    async fn run(self) {
        let _closing = CloseOnDrop(self.flushed.clone());
        let config = self.store.config().clone();
        let mut tick = interval(Duration::from_millis(config.flush_interval_ms.max(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_thorough = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.stopped.wait_for(|stop| stop > 0) => return,
                _ = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            let dirty = self.store.written_offset() - self.store.flushed_offset();
            let thorough =
                last_thorough.elapsed().as_millis() as u64 >= config.flush_thorough_interval_ms;
            let due = match config.flush_disk_type {
                FlushDiskType::SyncFlush => dirty > 0,
                FlushDiskType::AsyncFlush => {
                    dirty > 0 && (dirty >= config.flush_least_pages * PAGE_BYTES || thorough)
                }
            };
            if !due {
                continue;
            }
            let store = self.store.clone();
            match blocking(move || store.flush_log()).await {
                Ok(Ok(flushed)) => {
                    last_thorough = Instant::now();
                    self.flushed.publish(flushed);
                    if config.confirms_on_flush() {
                        self.wake_dispatch.notify_one();
                    }
                }
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
}

struct DispatchTask {
    store: Arc<Store>,
    wake: Arc<Notify>,
    dispatched: Progress,
    stopped: Progress,
}

impl DispatchTask {
    async fn run(self) {
        let _closing = CloseOnDrop(self.dispatched.clone());
        loop {
            tokio::select! {
                biased;
                _ = self.stopped.wait_for(|stop| stop > 0) => return,
                _ = self.wake.notified() => {}
                // A record written by another path (a recovery, a flush on shutdown) is still
                // dispatched within a second.
                _ = sleep(Duration::from_secs(1)) => {}
            }
            let store = self.store.clone();
            match blocking(move || store.dispatch()).await {
                Ok(Ok(position)) => {
                    self.dispatched.publish(position);
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "dispatch failed");
                    if store_stopped(&self.store) {
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
}

async fn checkpoint_task(store: Arc<Store>, stopped: Progress) {
    let period = Duration::from_millis(store.config().flush_cq_interval_ms.max(1));
    periodically(store, stopped, period, "checkpoint", |store| store.flush_queues()).await;
}

/// RocketMQ's `cleanResourceInterval`.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(10);

/// Measures the disk and deletes expired files every ten seconds. Wall-clock time decides
/// expiry, as file ages do in RocketMQ; under the simulator it is the simulated clock.
async fn cleanup_task(store: Arc<Store>, stopped: Progress) {
    periodically(store, stopped, CLEANUP_INTERVAL, "cleanup", |store| {
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
    store: Arc<Store>,
    stopped: Progress,
    period: Duration,
    what: &'static str,
    work: fn(&Store) -> Result<(), StoreError>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| stop > 0) => return,
            _ = sleep(period) => {}
        }
        let task_store = store.clone();
        match blocking(move || work(&task_store)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "{what} failed");
                if store_stopped(&store) {
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
