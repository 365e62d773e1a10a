//! `petrel bench consumer` and `petrel bench e2e`, on `petrel-client`'s push consumer.
//!
//! - consumer: a push consumer reads a topic from its first message for a duration and reports
//!   messages per second; with `--orderly`, an orderly consumer of another fresh group reads
//!   it again after it, and with `--pop` POP consumers (`SimpleConsumer`: receive 32, ack
//!   each) do, and the two rates are compared.
//! - e2e: a producer sends at a fixed rate, each body stamped with its send time; a push consumer
//!   of a fresh group receives them; the report gives produce-to-consume latency percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, OrderlyContext, OrderlyResult, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig, ReceivedMessage, SimpleConsumer, SimpleConsumerConfig,
};
use serde::Serialize;

use super::latency_histogram;

/// What to run.
#[derive(Debug, Clone)]
pub struct ConsumeBench {
    pub namesrv: String,
    pub topic: String,
    pub group: String,
    pub duration: Duration,
    /// e2e only: messages per second to send (0: consume only).
    pub rate: u64,
    pub message_bytes: usize,
    /// How to consume.
    pub kind: ConsumeKind,
}

/// The consumer a bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeKind {
    Push,
    /// In order, under queue locks (`PushConsumer::start_orderly`).
    Orderly,
    /// POP: [`POP_RECEIVERS`] `SimpleConsumer` loops, each receiving up to 32 messages and
    /// acknowledging each before it receives again.
    Pop,
}

/// Receive loops of the POP bench.
pub const POP_RECEIVERS: usize = 4;
/// What a POP bench receive asks for.
const POP_BATCH: usize = 32;

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    pub receive_tps: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub e2e_p999_ms: f64,
    pub e2e_max_ms: f64,
}

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Messages received, when the last one came (µs since the epoch), produce-to-consume latency.
type Seen = (AtomicU64, AtomicU64, Mutex<Histogram<u64>>);

fn consumer(
    bench: &ConsumeBench,
    from: ConsumeFrom,
    seen: Arc<Seen>,
) -> Result<PushConsumer, String> {
    let config = PushConsumerConfig {
        namesrv_addrs: vec![bench.namesrv.clone()],
        group: bench.group.clone(),
        subscriptions: [(bench.topic.clone(), "*".into())].into_iter().collect(),
        consume_from: from,
        rebalance_interval: Duration::from_secs(2),
        ..PushConsumerConfig::default()
    };
    let started = if bench.kind == ConsumeKind::Orderly {
        PushConsumer::start_orderly(config, move |message: &ReceivedMessage, _: &OrderlyContext| {
            record(&seen, message);
            OrderlyResult::Success
        })
    } else {
        PushConsumer::start(config, move |message: &ReceivedMessage| {
            record(&seen, message);
            ConsumeResult::Success
        })
    };
    started.map_err(|e| e.to_string())
}

/// Counts a message, when it came, and its produce-to-consume latency.
fn record(seen: &Seen, message: &ReceivedMessage) {
    seen.0.fetch_add(1, Ordering::Relaxed);
    let now = micros_now();
    seen.1.fetch_max(now, Ordering::Relaxed);
    if let Some(stamp) = message.body.get(..8) {
        let sent = u64::from_be_bytes(stamp.try_into().unwrap_or_default());
        let latency = now.saturating_sub(sent).max(1);
        if let Ok(mut histogram) = seen.2.lock() {
            let _ = histogram.record(latency.min(60_000_000));
        }
    }
}

/// `petrel bench consumer --orderly` or `--pop`: the push consumer reads the topic, then the
/// other kind reads it again in another fresh group (`{group}-orderly`, `{group}-pop`); both
/// reports.
pub async fn run_against_push(
    bench: ConsumeBench,
) -> Result<(ConsumeReport, ConsumeReport), String> {
    let push = run(ConsumeBench { kind: ConsumeKind::Push, ..bench.clone() }).await?;
    let suffix = if bench.kind == ConsumeKind::Pop { "pop" } else { "orderly" };
    let group = format!("{}-{suffix}", bench.group);
    let other = run(ConsumeBench { group, ..bench }).await?;
    Ok((push, other))
}

/// POP consumers of a fresh group read the topic from its first message for the bench's
/// duration; a message counts once its ack is answered.
async fn run_pop(bench: &ConsumeBench) -> Result<ConsumeReport, String> {
    let config = SimpleConsumerConfig {
        namesrv_addrs: vec![bench.namesrv.clone()],
        group: bench.group.clone(),
        topic: bench.topic.clone(),
        await_duration: Duration::from_secs(1),
        ..SimpleConsumerConfig::default()
    };
    let consumer = Arc::new(SimpleConsumer::start(config).map_err(|e| e.to_string())?);
    let acked = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let (started, started_micros) = (Instant::now(), micros_now());
    let loops: Vec<_> = (0..POP_RECEIVERS)
        .map(|_| {
            let (consumer, acked, last) = (consumer.clone(), acked.clone(), last.clone());
            let duration = bench.duration;
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let Ok(batch) = consumer.receive(POP_BATCH, Duration::from_secs(60)).await
                    else {
                        continue;
                    };
                    for popped in &batch {
                        if consumer.ack(popped).await.is_ok() {
                            acked.fetch_add(1, Ordering::Relaxed);
                            last.fetch_max(micros_now(), Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for receiving in loops {
        receiving.await.map_err(|e| e.to_string())?;
    }
    let received = acked.load(Ordering::Relaxed);
    let last = last.load(Ordering::Relaxed);
    let seconds = match last > started_micros {
        true => (last - started_micros) as f64 / 1e6,
        false => started.elapsed().as_secs_f64(),
    };
    if let Ok(consumer) = Arc::try_unwrap(consumer) {
        consumer.shutdown().await;
    }
    Ok(ConsumeReport {
        sent: 0,
        received,
        seconds,
        receive_tps: received as f64 / seconds,
        e2e_p50_ms: 0.0,
        e2e_p99_ms: 0.0,
        e2e_p999_ms: 0.0,
        e2e_max_ms: 0.0,
    })
}

pub async fn run(bench: ConsumeBench) -> Result<ConsumeReport, String> {
    if bench.kind == ConsumeKind::Pop {
        return run_pop(&bench).await;
    }
    let seen: Arc<Seen> =
        Arc::new((AtomicU64::new(0), AtomicU64::new(0), Mutex::new(latency_histogram())));
    let from = if bench.rate > 0 { ConsumeFrom::Last } else { ConsumeFrom::First };
    let producer = if bench.rate > 0 {
        let config = ProducerConfig {
            namesrv_addrs: vec![bench.namesrv.clone()],
            ..ProducerConfig::default()
        };
        let producer = Producer::start(config).map_err(|e| e.to_string())?;
        // The topic must exist before the consumer looks for its queues.
        producer
            .send(&Message::new(bench.topic.clone(), vec![0u8; 8]))
            .await
            .map_err(|e| e.to_string())?;
        Some(producer)
    } else {
        None
    };
    let started = Instant::now();
    let started_micros = micros_now();
    let consumer = consumer(&bench, from, seen.clone())?;
    if producer.is_some() {
        // Joined and rebalanced before the first timed send.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let started = if producer.is_some() { Instant::now() } else { started };
    let mut sent = 0u64;
    if let Some(producer) = &producer {
        let interval = Duration::from_secs_f64(1.0 / bench.rate as f64);
        let mut next = tokio::time::Instant::now();
        while started.elapsed() < bench.duration {
            let mut body = micros_now().to_be_bytes().to_vec();
            body.resize(bench.message_bytes.max(8), b'x');
            let message = Message::new(bench.topic.clone(), body);
            // Detached: the consumer side measures the outcome.
            drop(producer.send_async(message));
            sent += 1;
            next += interval;
            tokio::time::sleep_until(next).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // the last ones arrive
    } else {
        tokio::time::sleep(bench.duration).await;
    }
    let received = seen.0.load(Ordering::Relaxed);
    // Reading a topic from its start ends when the topic is read: time it to the last message.
    let last = seen.1.load(Ordering::Relaxed);
    let seconds = if producer.is_none() && last > started_micros {
        (last - started_micros) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    consumer.shutdown().await;
    if let Some(producer) = producer {
        producer.shutdown().await;
    }
    let histogram = seen.2.lock().map_err(|_| "latency histogram poisoned".to_owned())?.clone();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let measured = bench.rate > 0 && !histogram.is_empty();
    let at = |q: f64| if measured { ms(histogram.value_at_quantile(q)) } else { 0.0 };
    Ok(ConsumeReport {
        sent,
        received,
        seconds,
        receive_tps: received as f64 / seconds,
        e2e_p50_ms: at(0.5),
        e2e_p99_ms: at(0.99),
        e2e_p999_ms: at(0.999),
        e2e_max_ms: if measured { ms(histogram.max()) } else { 0.0 },
    })
}

impl ConsumeReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        format!(
            "sent {} | received {} | {:.1} s | receive tps {:.0} | e2e p50 {:.2} ms | p99 {:.2} ms | p999 {:.2} ms | max {:.2} ms",
            self.sent,
            self.received,
            self.seconds,
            self.receive_tps,
            self.e2e_p50_ms,
            self.e2e_p99_ms,
            self.e2e_p999_ms,
            self.e2e_max_ms
        )
    }
}
