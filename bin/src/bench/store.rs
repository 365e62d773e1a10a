//! `petrel bench store`: the store's append throughput against this disk's own ceiling, and
//! its recovery time, measured in one run so the ratios compare like with like.
//!
//! - Ceilings: one thread `pwrite`s records of the same size sequentially into a preallocated
//!   file, without syncing (the page-cache ceiling, for ASYNC_FLUSH), and with one fdatasync
//!   after every `k` records for k = 1, 8, 64 (the ideal group commit of k waiting producers,
//!   for SYNC_FLUSH).
//! - Appends: `writers` tasks each calling `StoreService::put` in a loop for `seconds`, under
//!   ASYNC_FLUSH and SYNC_FLUSH; each result is printed beside its ceiling as a ratio.
//! - Recovery: a commit log of `recovery_gib` GiB is written, shut down cleanly and opened
//!   (normal recovery), then opened again after removing the checkpoint and leaving `abort`
//!   (abnormal recovery with nothing to go on: every record is checked and re-dispatched).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel_core::record::{encode_record, RecordInput, RecordPlace};
use petrel_storage::disk::{Disk, FsDisk};
use petrel_storage::{FlushDiskType, Store, StoreConfig, StoreService};

/// What to measure.
#[derive(Debug, Clone)]
pub struct StoreBench {
    /// A scratch directory; everything under it is deleted first.
    pub dir: PathBuf,
    pub message_bytes: usize,
    pub writers: Vec<usize>,
    pub seconds: f64,
    /// Size of the commit log for the recovery measurement; 0 skips it.
    pub recovery_gib: u64,
}

/// One measured rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rate {
    pub name: String,
    pub messages_per_second: f64,
    pub megabytes_per_second: f64,
    /// The rate divided by its ceiling's, when it has one.
    pub ratio_of_ceiling: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreReport {
    pub rates: Vec<Rate>,
    pub recovery_gib: u64,
    pub recovery_normal_seconds: Option<f64>,
    pub recovery_abnormal_seconds: Option<f64>,
}

impl StoreReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        let mut out = String::new();
        for rate in &self.rates {
            let ratio =
                rate.ratio_of_ceiling.map_or(String::new(), |r| format!("  {r:.2}x ceiling"));
            out.push_str(&format!(
                "{:<28} {:>10.0} msg/s {:>8.1} MB/s{ratio}\n",
                rate.name, rate.messages_per_second, rate.megabytes_per_second
            ));
        }
        if let (Some(normal), Some(abnormal)) =
            (self.recovery_normal_seconds, self.recovery_abnormal_seconds)
        {
            out.push_str(&format!(
                "recovery of {} GiB: normal {normal:.2} s, abnormal (full scan) {abnormal:.2} s\n",
                self.recovery_gib
            ));
        }
        out
    }
}

fn record(body: &[u8]) -> RecordInput<'_> {
    RecordInput {
        topic: "BenchmarkTest",
        queue_id: 0,
        flag: 0,
        sys_flag: 0,
        born_timestamp: 0,
        born_host: "127.0.0.1:50000".parse().expect("a literal address"),
        store_host: "127.0.0.1:10911".parse().expect("a literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: b"",
    }
}

fn rate(name: String, messages: u64, bytes: u64, elapsed: Duration, ceiling: Option<f64>) -> Rate {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let messages_per_second = messages as f64 / seconds;
    Rate {
        name,
        messages_per_second,
        megabytes_per_second: bytes as f64 / seconds / 1e6,
        ratio_of_ceiling: ceiling.map(|c| messages_per_second / c),
    }
}

/// Sequential pwrites of `record_bytes`, with an fdatasync after every `sync_every` (0: never).
pub(super) fn ceiling(
    dir: &Path,
    record_bytes: usize,
    sync_every: usize,
    seconds: f64,
) -> std::io::Result<f64> {
    let path = dir.join(format!("ceiling-{sync_every}"));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let file_bytes: u64 = 1 << 30;
    file.set_len(file_bytes)?;
    let data = vec![b'c'; record_bytes];
    let (start, mut offset, mut records) = (Instant::now(), 0u64, 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        if offset + record_bytes as u64 > file_bytes {
            offset = 0;
        }
        file.write_all_at(&data, offset)?;
        offset += record_bytes as u64;
        records += 1;
        if sync_every > 0 && records.is_multiple_of(sync_every as u64) {
            file.sync_data()?;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(records as f64 / elapsed)
}

/// The pattern a write buffer (RocketMQ's TransientStorePool) would give: records copied into
/// a 1 MiB buffer, written with one pwrite per MiB. Printed against the per-record ceiling, it
/// bounds what such a buffer could gain.
fn buffered_ceiling(dir: &Path, record_bytes: usize, seconds: f64) -> std::io::Result<f64> {
    let path = dir.join("ceiling-buffered");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let file_bytes: u64 = 1 << 30;
    file.set_len(file_bytes)?;
    let record = vec![b'c'; record_bytes];
    let mut buffer = Vec::with_capacity(1 << 20);
    let (start, mut offset, mut records) = (Instant::now(), 0u64, 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        buffer.extend_from_slice(&record);
        records += 1;
        if buffer.len() + record_bytes > buffer.capacity() {
            if offset + buffer.len() as u64 > file_bytes {
                offset = 0;
            }
            file.write_all_at(&buffer, offset)?;
            offset += buffer.len() as u64;
            buffer.clear();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(records as f64 / elapsed)
}

fn open(dir: &Path, flush: FlushDiskType) -> Result<Store, String> {
    let mut config = StoreConfig::new(dir);
    config.flush_disk_type = flush;
    config.message_index_enable = false;
    Store::open(Arc::new(FsDisk), config).map(|(store, _)| store).map_err(|e| e.to_string())
}

/// `writers` tasks putting for `seconds`; returns messages stored.
async fn appends(
    service: Arc<StoreService>,
    writers: usize,
    message_bytes: usize,
    seconds: f64,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (service, stop, count) = (service.clone(), stop.clone(), count.clone());
            tokio::spawn(async move {
                let body = vec![b'p'; message_bytes];
                let input = RecordInput { queue_id: (writer % 8) as i32, ..record(&body) };
                while !stop.load(Ordering::Relaxed) {
                    if service.put(&input, 1_700_000_000_000).await.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // An ASYNC_FLUSH put completes without waiting, so without this the
                    // writers would hold every worker thread and the timer that stops them
                    // would never run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    count.load(Ordering::Relaxed)
}

/// Runs every measurement; see the module documentation.
pub async fn run(bench: StoreBench) -> Result<StoreReport, String> {
    let dir = &bench.dir;
    prepare(dir, bench.recovery_gib)?;
    let record_bytes = {
        let mut buffer = Vec::new();
        let place = RecordPlace { queue_offset: 0, physical_offset: 0, store_timestamp: 0 };
        let body = vec![b'p'; bench.message_bytes];
        encode_record(&record(&body), place, true, &mut buffer).map_err(|e| e.to_string())?
    };
    let io = |e: std::io::Error| format!("ceiling measurement failed: {e}");
    let write_ceiling = ceiling(dir, record_bytes, 0, bench.seconds).map_err(io)?;
    let buffered = buffered_ceiling(dir, record_bytes, bench.seconds).map_err(io)?;
    let per_second = |name: &str, rate_per_second: f64, ceiling: Option<f64>| {
        let bytes = (rate_per_second * record_bytes as f64) as u64;
        rate(name.into(), rate_per_second as u64, bytes, Duration::from_secs(1), ceiling)
    };
    let mut rates = vec![
        per_second("ceiling: pwrite", write_ceiling, None),
        per_second("ceiling: copy, 1 MiB pwrites", buffered, Some(write_ceiling)),
    ];
    for (flush, name) in
        [(FlushDiskType::AsyncFlush, "ASYNC_FLUSH"), (FlushDiskType::SyncFlush, "SYNC_FLUSH")]
    {
        for &writers in &bench.writers {
            let ceiling_rate = match flush {
                FlushDiskType::AsyncFlush => write_ceiling,
                FlushDiskType::SyncFlush => {
                    let sync = ceiling(dir, record_bytes, writers, bench.seconds).map_err(io)?;
                    rates.push(per_second(
                        &format!("ceiling: pwrite x{writers}+fdatasync"),
                        sync,
                        None,
                    ));
                    sync
                }
            };
            let case = AppendCase { flush, name, writers, record_bytes, ceiling: ceiling_rate };
            rates.push(measure_appends(&bench, case).await?);
        }
    }
    let (normal, abnormal) = match bench.recovery_gib {
        0 => (None, None),
        gib => {
            let (normal, abnormal) = recovery(&dir.join("recovery"), gib, bench.message_bytes)?;
            (Some(normal), Some(abnormal))
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    Ok(StoreReport {
        rates,
        recovery_gib: bench.recovery_gib,
        recovery_normal_seconds: normal,
        recovery_abnormal_seconds: abnormal,
    })
}

/// Empties `dir` and checks there is room for the run's files.
fn prepare(dir: &Path, recovery_gib: u64) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let free = FsDisk.space(dir).map_err(|e| format!("cannot measure {}: {e}", dir.display()))?;
    let needed = (recovery_gib + 8) << 30;
    if free.free_bytes < needed {
        return Err(format!(
            "{} has {} GiB free; this run needs about {} GiB",
            dir.display(),
            free.free_bytes >> 30,
            needed >> 30
        ));
    }
    Ok(())
}

/// One line of the append table.
struct AppendCase {
    flush: FlushDiskType,
    name: &'static str,
    writers: usize,
    record_bytes: usize,
    ceiling: f64,
}

/// Puts from `case.writers` tasks into a fresh store for the bench's duration.
async fn measure_appends(bench: &StoreBench, case: AppendCase) -> Result<Rate, String> {
    let store_dir = bench.dir.join(format!("store-{}-{}", case.name, case.writers));
    let service = Arc::new(StoreService::start(Arc::new(open(&store_dir, case.flush)?)));
    let start = Instant::now();
    let stored = appends(service.clone(), case.writers, bench.message_bytes, bench.seconds).await;
    let elapsed = start.elapsed();
    let plural = if case.writers == 1 { "" } else { "s" };
    let label = format!("{} {} writer{plural}", case.name, case.writers);
    let bytes = stored * case.record_bytes as u64;
    let measured = rate(label, stored, bytes, elapsed, Some(case.ceiling));
    if let Ok(service) = Arc::try_unwrap(service) {
        service.shutdown().await.map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(&store_dir);
    Ok(measured)
}

/// Writes `gib` GiB, then times a normal and an abnormal recovery of it.
fn recovery(dir: &Path, gib: u64, message_bytes: usize) -> Result<(f64, f64), String> {
    let store = open(dir, FlushDiskType::AsyncFlush)?;
    let body = vec![b'p'; message_bytes];
    let input = record(&body);
    while store.written_offset() < gib << 30 {
        for queue_id in 0..8 {
            let input = RecordInput { queue_id, ..input };
            store.append(&input, 1_700_000_000_000, 0).map_err(|e| e.to_string())?;
        }
        // No confirm machine here: a lone ASYNC_FLUSH store confirms what it appended.
        if store.written_offset() % (64 << 20) < 8 * 2048 {
            let flushed = store.flush_log().map_err(|e| e.to_string())?;
            store.confirm(flushed);
            store.dispatch().map_err(|e| e.to_string())?;
        }
    }
    let end = store.close().map_err(|e| e.to_string())?;
    store.confirm(end);
    store.shutdown().map_err(|e| e.to_string())?;
    drop(store);
    let start = Instant::now();
    let store = open(dir, FlushDiskType::AsyncFlush)?;
    let normal = start.elapsed().as_secs_f64();
    drop(store);
    std::fs::remove_file(dir.join("checkpoint")).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let store = open(dir, FlushDiskType::AsyncFlush)?;
    let abnormal = start.elapsed().as_secs_f64();
    drop(store);
    Ok((normal, abnormal))
}
