//! `petrel bench producer`: RocketMQ's benchmark producer, on `petrel-client`'s producer, with
//! its option letters. Every worker sends for `duration`; sync workers wait for each answer,
//! async workers keep up to `ASYNC_WINDOW` sends in flight, oneway workers wait for none, and
//! transaction workers send a half message, run a local transaction that commits, and end
//! it (RocketMQ's `TransactionProducer` benchmark, with no check-back).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use petrel_client::{
    LocalTransactionState, Message, Producer, ProducerConfig, ReceivedMessage, SendResult,
    TransactionListener, TransactionProducer,
};
use serde::Serialize;

use super::latency_histogram;

/// Sends each async worker keeps in flight.
const ASYNC_WINDOW: usize = 64;

/// How sends are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Async,
    Oneway,
    /// Transaction messages: a half message, then END_TRANSACTION committing it.
    Transaction,
}

/// Commits every local transaction at once: what a transactional send costs the broker.
struct CommitAll;

impl TransactionListener for CommitAll {
    fn execute(&self, _: &Message, _: &SendResult) -> LocalTransactionState {
        LocalTransactionState::Commit
    }

    fn check(&self, _: &ReceivedMessage) -> LocalTransactionState {
        LocalTransactionState::Commit
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ProducerBench {
    pub namesrv: String,
    pub topic: String,
    pub threads: usize,
    pub message_bytes: usize,
    pub keys: bool,
    pub tag_count: usize,
    pub mode: Mode,
    /// Messages per SEND_BATCH_MESSAGE; 1 sends them one by one.
    pub batch: usize,
    pub duration: Duration,
    pub report_interval: Duration,
}

impl ProducerBench {
    /// Plain sync sends of `message_bytes` from `threads` workers for `duration`, one report at
    /// the end: the baseline other benches measure against.
    pub fn plain_sync(
        namesrv: &str,
        topic: &str,
        threads: usize,
        message_bytes: usize,
        duration: Duration,
    ) -> ProducerBench {
        ProducerBench {
            namesrv: namesrv.to_owned(),
            topic: topic.to_owned(),
            threads,
            message_bytes,
            keys: false,
            tag_count: 0,
            mode: Mode::Sync,
            batch: 1,
            duration,
            report_interval: duration,
        }
    }
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerReport {
    pub messages: u64,
    pub failures: u64,
    pub seconds: f64,
    pub send_tps: f64,
    pub megabytes_per_second: f64,
    pub rt_avg_ms: f64,
    pub rt_max_ms: f64,
    pub rt_p50_ms: f64,
    pub rt_p99_ms: f64,
    pub rt_p999_ms: f64,
}

struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

fn message(bench: &ProducerBench, body: &Bytes, n: u64) -> Message {
    let mut message = Message::new(bench.topic.clone(), body.clone());
    if bench.keys {
        message.keys = vec![format!("key-{n}")];
    }
    if bench.tag_count > 0 {
        message.tags = Some(format!("tag{}", n % bench.tag_count as u64));
    }
    message
}

async fn worker(
    producer: Producer,
    transactional: Option<Arc<TransactionProducer>>,
    bench: Arc<ProducerBench>,
    counters: Arc<Counters>,
    worker: u64,
    deadline: Instant,
) -> Histogram<u64> {
    let mut histogram = latency_histogram();
    let body = Bytes::from(vec![b'x'; bench.message_bytes.max(1)]);
    let mut in_flight = VecDeque::new();
    let mut n = worker << 40;
    let record = |histogram: &mut Histogram<u64>, started: Instant, ok: bool, count: u64| {
        let micros = started.elapsed().as_micros().max(1) as u64;
        let _ = histogram.record(micros.min(60_000_000));
        let counter = if ok { &counters.sent } else { &counters.failed };
        counter.fetch_add(count, Ordering::Relaxed);
    };
    while Instant::now() < deadline {
        n += 1;
        let started = Instant::now();
        if bench.batch > 1 {
            let batch: Vec<Message> =
                (0..bench.batch as u64).map(|i| message(&bench, &body, n * 4096 + i)).collect();
            let ok = producer.send_batch(&batch).await.is_ok();
            record(&mut histogram, started, ok, bench.batch as u64);
            continue;
        }
        let one = message(&bench, &body, n);
        match bench.mode {
            Mode::Sync => {
                let ok = producer.send(&one).await.is_ok();
                record(&mut histogram, started, ok, 1);
            }
            Mode::Oneway => {
                let ok = producer.send_oneway(&one).await.is_ok();
                record(&mut histogram, started, ok, 1);
            }
            Mode::Transaction => {
                let sender = transactional.as_ref().expect("a transaction bench has its producer");
                let ok = sender.send(&one).await.is_ok();
                record(&mut histogram, started, ok, 1);
            }
            Mode::Async => {
                in_flight.push_back((started, producer.send_async(one)));
                if in_flight.len() >= ASYNC_WINDOW {
                    if let Some((started, handle)) = in_flight.pop_front() {
                        let ok = matches!(handle.await, Ok(Ok(_)));
                        record(&mut histogram, started, ok, 1);
                    }
                }
            }
        }
    }
    for (started, handle) in in_flight {
        let ok = matches!(handle.await, Ok(Ok(_)));
        record(&mut histogram, started, ok, 1);
    }
    histogram
}

/// Hands a progress line to `report` every `interval` until `deadline`.
async fn progress(
    counters: Arc<Counters>,
    interval: Duration,
    deadline: Instant,
    report: impl Fn(String) + Send + 'static,
) {
    let mut last = 0;
    while Instant::now() + interval <= deadline {
        tokio::time::sleep(interval).await;
        let sent = counters.sent.load(Ordering::Relaxed);
        let rate = (sent - last) as f64 / interval.as_secs_f64();
        let failed = counters.failed.load(Ordering::Relaxed);
        report(format!("send tps {rate:.0} | sent {sent} | failed {failed}"));
        last = sent;
    }
}

/// Runs the bench; `report` receives a progress line every `report_interval`.
pub async fn run(
    bench: ProducerBench,
    report: impl Fn(String) + Send + 'static,
) -> Result<ProducerReport, String> {
    let config =
        ProducerConfig { namesrv_addrs: vec![bench.namesrv.clone()], ..ProducerConfig::default() };
    let transactional = match bench.mode {
        Mode::Transaction => {
            let config =
                ProducerConfig { group: "BenchTransactionProducer".into(), ..config.clone() };
            let producer = TransactionProducer::start(config, CommitAll);
            Some(Arc::new(producer.map_err(|e| e.to_string())?))
        }
        _ => None,
    };
    let producer = Producer::start(config).map_err(|e| e.to_string())?;
    // One send first: it creates the topic and caches its route.
    let body = Bytes::from(vec![b'x'; bench.message_bytes.max(1)]);
    producer
        .send(&message(&bench, &body, 0))
        .await
        .map_err(|e| format!("first send failed: {e}"))?;
    let counters = Arc::new(Counters { sent: AtomicU64::new(0), failed: AtomicU64::new(0) });
    let bench = Arc::new(bench);
    let started = Instant::now();
    let deadline = started + bench.duration;
    let reporter =
        tokio::spawn(progress(counters.clone(), bench.report_interval, deadline, report));
    let workers: Vec<_> = (0..bench.threads.max(1) as u64)
        .map(|w| {
            let (producer, transactional) = (producer.clone(), transactional.clone());
            tokio::spawn(worker(
                producer,
                transactional,
                bench.clone(),
                counters.clone(),
                w,
                deadline,
            ))
        })
        .collect();
    let mut histogram = latency_histogram();
    for handle in workers {
        let part = handle.await.map_err(|e| format!("a worker failed: {e}"))?;
        histogram.add(&part).map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    reporter.abort();
    producer.shutdown().await;
    if let Some(transactional) = transactional {
        transactional.shutdown().await;
    }
    let messages = counters.sent.load(Ordering::Relaxed);
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(ProducerReport {
        messages,
        failures: counters.failed.load(Ordering::Relaxed),
        seconds,
        send_tps: messages as f64 / seconds,
        megabytes_per_second: (messages as f64 * bench.message_bytes as f64) / seconds / 1e6,
        rt_avg_ms: histogram.mean() / 1000.0,
        rt_max_ms: ms(histogram.max()),
        rt_p50_ms: ms(histogram.value_at_quantile(0.50)),
        rt_p99_ms: ms(histogram.value_at_quantile(0.99)),
        rt_p999_ms: ms(histogram.value_at_quantile(0.999)),
    })
}

impl ProducerReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        format!(
            "send tps {:.0} | {:.1} MB/s | messages {} | failures {} | {:.1} s | rt avg {:.2} ms | max {:.2} ms | p50 {:.2} ms | p99 {:.2} ms | p999 {:.2} ms",
            self.send_tps,
            self.megabytes_per_second,
            self.messages,
            self.failures,
            self.seconds,
            self.rt_avg_ms,
            self.rt_max_ms,
            self.rt_p50_ms,
            self.rt_p99_ms,
            self.rt_p999_ms,
        )
    }
}
