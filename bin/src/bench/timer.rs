//! `petrel bench timer`: timer messages with many pending. It measures plain sync sends, then
//! sends `pending` timer messages each due `delay` after its send (so all of them wait in the
//! wheel when the last is sent), then reads them from their topic as they come due: timer
//! sends/s as a ratio to the plain ones of the same run, deliveries per second, how late each
//! was stored after its `TIMER_DELIVER_MS` (p50, p99, max), and with `--broker-pid` the
//! broker's resident memory before and after the fill.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use petrel_client::{
    ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};
use serde::Serialize;

use super::idle::rss_kib;
use super::producer::{self, ProducerBench};

/// What to run.
#[derive(Debug, Clone)]
pub struct TimerBench {
    pub namesrv: String,
    pub topic: String,
    /// Timer messages to leave pending.
    pub pending: u64,
    pub threads: usize,
    pub message_bytes: usize,
    /// How long the plain send phase runs.
    pub duration: Duration,
    /// Each timer message is due this long after its send.
    pub delay: Duration,
    /// The broker's process, to read its resident memory.
    pub broker_pid: Option<u32>,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TimerReport {
    pub pending: u64,
    pub baseline_send_tps: f64,
    pub timer_send_tps: f64,
    /// `timer_send_tps / baseline_send_tps`.
    pub ratio: f64,
    pub delivered: u64,
    /// From the first delivery to the last.
    pub delivered_per_second: f64,
    pub late_p50_ms: i64,
    pub late_p99_ms: i64,
    pub late_max_ms: i64,
    pub rss_before_mib: Option<f64>,
    pub rss_pending_mib: Option<f64>,
}

/// Sends the timer messages from `bench.threads` workers, each due `delay` after its send;
/// how long it took.
async fn fill(bench: &TimerBench, producer: &Arc<Producer>, topic: &str) -> Result<f64, String> {
    let started = Instant::now();
    let body = Bytes::from(vec![b'x'; bench.message_bytes.max(1)]);
    let workers = bench.threads.max(1) as u64;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (producer, body, topic) = (producer.clone(), body.clone(), topic.to_owned());
            let (count, delay) =
                (bench.pending / workers + u64::from(w < bench.pending % workers), bench.delay);
            tokio::spawn(async move {
                for _ in 0..count {
                    let due = SystemTime::now() + delay;
                    let message = Message::new(topic.clone(), body.clone()).with_delivery_time(due);
                    producer.send(&message).await.map_err(|e| format!("timer message: {e}"))?;
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

/// Reads `topic` until `expected` timer messages came or `patience` passed: how late each was
/// stored after its time, and when the first and the last came.
async fn collect(
    consumer: PullConsumer,
    expected: u64,
    patience: Duration,
) -> Result<(Vec<i64>, Option<(Instant, Instant)>), String> {
    let deadline = Instant::now() + patience;
    let (mut late, mut span) = (Vec::with_capacity(expected as usize), None::<(Instant, Instant)>);
    while (late.len() as u64) < expected && Instant::now() < deadline {
        let got = consumer.poll(Duration::from_millis(500)).await.map_err(|e| e.to_string())?;
        let now = Instant::now();
        for message in &got {
            let Some(due) =
                message.properties.get("TIMER_DELIVER_MS").and_then(|d| d.parse::<i64>().ok())
            else {
                continue;
            };
            late.push(message.store_timestamp - due);
            span = Some(span.map_or((now, now), |(first, _)| (first, now)));
        }
    }
    consumer.shutdown().await.map_err(|e| e.to_string())?;
    Ok((late, span))
}

fn rss_mib(pid: Option<u32>) -> Result<Option<f64>, String> {
    pid.map(|pid| rss_kib(pid).map(|kib| kib as f64 / 1024.0)).transpose()
}

pub async fn run(bench: TimerBench) -> Result<TimerReport, String> {
    let (threads, bytes) = (bench.threads, bench.message_bytes);
    let plain =
        ProducerBench::plain_sync(&bench.namesrv, &bench.topic, threads, bytes, bench.duration);
    let baseline = producer::run(plain, |_| {}).await?;
    let rss_before_mib = rss_mib(bench.broker_pid)?;
    let topic = format!("{}Timer", bench.topic);
    let config =
        ProducerConfig { namesrv_addrs: vec![bench.namesrv.clone()], ..ProducerConfig::default() };
    let producer = Arc::new(Producer::start(config).map_err(|e| e.to_string())?);
    // One plain message creates the topic, so that the reader can take its queues.
    let first = Message::new(topic.clone(), Bytes::from_static(b"first"));
    producer.send(&first).await.map_err(|e| format!("first send failed: {e}"))?;
    let consumer = PullConsumer::start(PullConsumerConfig {
        namesrv_addrs: vec![bench.namesrv.clone()],
        group: "BenchTimerReaders".into(),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let queues = consumer.queues(&topic).await.map_err(|e| e.to_string())?;
    consumer.assign(&queues).await.map_err(|e| e.to_string())?;
    let fill_seconds = fill(&bench, &producer, &topic).await?;
    let rss_pending_mib = rss_mib(bench.broker_pid)?;
    let patience = bench.delay + Duration::from_secs_f64(fill_seconds) + Duration::from_secs(120);
    let (mut late, span) = collect(consumer, bench.pending, patience).await?;
    late.sort_unstable();
    let at = |q: f64| {
        late.get(((late.len() as f64 * q) as usize).min(late.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let seconds = span.map_or(0.0, |(first, last)| last.duration_since(first).as_secs_f64());
    let timer_send_tps = bench.pending as f64 / fill_seconds.max(f64::MIN_POSITIVE);
    Ok(TimerReport {
        pending: bench.pending,
        baseline_send_tps: baseline.send_tps,
        timer_send_tps,
        ratio: timer_send_tps / baseline.send_tps.max(f64::MIN_POSITIVE),
        delivered: late.len() as u64,
        delivered_per_second: late.len() as f64 / seconds.max(f64::MIN_POSITIVE),
        late_p50_ms: at(0.5),
        late_p99_ms: at(0.99),
        late_max_ms: late.last().copied().unwrap_or(0),
        rss_before_mib,
        rss_pending_mib,
    })
}

impl TimerReport {
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        let rss = match (self.rss_before_mib, self.rss_pending_mib) {
            (Some(before), Some(pending)) => {
                format!(" | broker RSS {before:.0} MiB before, {pending:.0} MiB pending")
            }
            _ => String::new(),
        };
        format!(
            "{} timer messages | sends/s {:.0} plain, {:.0} timer (ratio {:.2}) | {} delivered, {:.0}/s | late p50 {} ms, p99 {} ms, max {} ms{rss}\n",
            self.pending,
            self.baseline_send_tps,
            self.timer_send_tps,
            self.ratio,
            self.delivered,
            self.delivered_per_second,
            self.late_p50_ms,
            self.late_p99_ms,
            self.late_max_ms,
        )
    }
}
