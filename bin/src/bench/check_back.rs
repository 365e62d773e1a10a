//! `petrel bench check-back`: what the transaction check service costs with many unresolved
//! half messages. It measures plain sync sends, leaves `half` transactions unresolved (a
//! transaction producer whose local transactions and check answers all say UNKNOWN), then
//! measures the same sends again while the broker checks them, and how fast the checks
//! arrive: sends/s under checking as a ratio to the baseline of the same run.
//!
//! The broker must check soon: start it with a short `transactionTimeOut` and
//! `transactionCheckInterval` (README, Performance). Every transaction stays unresolved until
//! the broker gives it up after `transactionCheckMax` checks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use petrel_client::{
    LocalTransactionState, Message, ProducerConfig, ReceivedMessage, SendResult,
    TransactionListener, TransactionProducer,
};
use serde::Serialize;

use super::producer::{self, ProducerBench};

/// The longest the bench waits for the first check, and for a whole pass.
const PATIENCE: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct CheckBackBench {
    pub namesrv: String,
    pub topic: String,
    /// Unresolved transactions to leave.
    pub half: u64,
    /// Workers of the send phases and of the fill.
    pub threads: usize,
    pub message_bytes: usize,
    /// How long each send phase runs.
    pub duration: Duration,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckBackReport {
    pub half_messages: u64,
    pub fill_seconds: f64,
    pub baseline_send_tps: f64,
    pub checked_send_tps: f64,
    /// `checked_send_tps / baseline_send_tps`.
    pub ratio: f64,
    /// Checks the producer received per second while the second send phase ran.
    pub checks_per_second: f64,
    /// From the first check to the last half message's first check.
    pub first_pass_seconds: f64,
}

/// Leaves every transaction open, counting the checks and the transactions checked.
#[derive(Default)]
struct Undecided {
    checks: AtomicU64,
    seen: Mutex<Seen>,
}

/// The transactions checked, when the first check came and when the last of them did.
#[derive(Default)]
struct Seen {
    checked: HashSet<String>,
    first_check: Option<Instant>,
    pass_done: Option<Instant>,
}

impl Undecided {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn first_check(&self) -> Option<Instant> {
        self.seen().first_check
    }

    fn pass_done(&self) -> Option<Instant> {
        self.seen().pass_done
    }
}

/// The listener the producer owns, sharing its counts with the bench.
struct Listener {
    undecided: Arc<Undecided>,
    half: u64,
}

impl TransactionListener for Listener {
    fn execute(&self, _: &Message, _: &SendResult) -> LocalTransactionState {
        LocalTransactionState::Unknown
    }

    fn check(&self, message: &ReceivedMessage) -> LocalTransactionState {
        self.undecided.checks.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut seen = self.undecided.seen();
        seen.first_check.get_or_insert(now);
        if seen.checked.insert(message.msg_id.clone()) && seen.checked.len() as u64 == self.half {
            seen.pass_done = Some(now);
        }
        LocalTransactionState::Unknown
    }
}

fn sends(bench: &CheckBackBench) -> ProducerBench {
    let (threads, bytes) = (bench.threads, bench.message_bytes);
    ProducerBench::plain_sync(&bench.namesrv, &bench.topic, threads, bytes, bench.duration)
}

/// Sends `bench.half` half messages from `bench.threads` workers; how long it took.
async fn fill(bench: &CheckBackBench, producer: &Arc<TransactionProducer>) -> Result<f64, String> {
    let started = Instant::now();
    let body = Bytes::from(vec![b'x'; bench.message_bytes.max(1)]);
    let workers = bench.threads.max(1) as u64;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (producer, message) =
                (producer.clone(), Message::new(bench.topic.clone(), body.clone()));
            let count = bench.half / workers + u64::from(w < bench.half % workers);
            tokio::spawn(async move {
                for _ in 0..count {
                    producer.send(&message).await.map_err(|e| format!("half message: {e}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| format!("a fill worker failed: {e}"))??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!(
                "no {what} within {PATIENCE:?}: is the broker's transactionTimeOut short?"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub async fn run(bench: CheckBackBench) -> Result<CheckBackReport, String> {
    let quiet = |_: String| {};
    let baseline = producer::run(sends(&bench), quiet).await?;
    let undecided = Arc::new(Undecided::default());
    let config = ProducerConfig {
        namesrv_addrs: vec![bench.namesrv.clone()],
        group: "BenchCheckBack".into(),
        ..ProducerConfig::default()
    };
    let listener = Listener { undecided: undecided.clone(), half: bench.half };
    let producer = TransactionProducer::start(config, listener).map_err(|e| e.to_string())?;
    let producer = Arc::new(producer);
    let fill_seconds = fill(&bench, &producer).await?;
    wait_for("check", || undecided.first_check().is_some()).await?;
    let before = (undecided.checks.load(Ordering::Relaxed), Instant::now());
    let checked = producer::run(sends(&bench), quiet).await?;
    let window = before.1.elapsed().as_secs_f64();
    let checks = undecided.checks.load(Ordering::Relaxed) - before.0;
    wait_for("whole pass", || undecided.pass_done().is_some()).await?;
    producer.shutdown().await;
    let first = undecided.first_check().unwrap_or(before.1);
    let done = undecided.pass_done().unwrap_or(first);
    Ok(CheckBackReport {
        half_messages: bench.half,
        fill_seconds,
        baseline_send_tps: baseline.send_tps,
        checked_send_tps: checked.send_tps,
        ratio: checked.send_tps / baseline.send_tps.max(f64::MIN_POSITIVE),
        checks_per_second: checks as f64 / window,
        first_pass_seconds: done.duration_since(first).as_secs_f64(),
    })
}

impl CheckBackReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        format!(
            "{} unresolved half messages (sent in {:.1} s) | sends/s {:.0} before, {:.0} while checked (ratio {:.2}) | {:.0} checks/s | first pass {:.1} s\n",
            self.half_messages,
            self.fill_seconds,
            self.baseline_send_tps,
            self.checked_send_tps,
            self.ratio,
            self.checks_per_second,
            self.first_pass_seconds,
        )
    }
}
