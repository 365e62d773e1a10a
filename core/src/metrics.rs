//! Metrics in Prometheus' text exposition format (version 0.0.4), and the histogram the hot
//! paths record into: a fixed set of buckets counted with atomics, so a record is a few
//! relaxed additions and no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds of latency histograms, in milliseconds: RocketMQ's rpc latency buckets.
pub const LATENCY_BUCKETS_MS: [f64; 8] = [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 3000.0];

/// A histogram of latencies in milliseconds over [`LATENCY_BUCKETS_MS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// One count per bound, and the last for everything above the last bound.
    counts: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// The sum of what was recorded, in microseconds (kept whole so it can be atomic).
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn record_us(&self, micros: u64) {
        let ms = micros as f64 / 1000.0;
        let bucket = LATENCY_BUCKETS_MS.iter().position(|bound| ms <= *bound);
        self.counts[bucket.unwrap_or(LATENCY_BUCKETS_MS.len())].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts per bucket (not cumulative), the count above the last bound last, and the sum
    /// in milliseconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        (counts, self.sum_us.load(Ordering::Relaxed) as f64 / 1000.0)
    }
}

/// Series one traffic family keeps; what is put or got past them is counted under
/// [`OVERFLOW_LABEL`], so that a stream of new topics cannot grow the broker's memory.
pub const TRAFFIC_SERIES_MAX: usize = 65_536;
/// The label value that counts what did not fit in [`TRAFFIC_SERIES_MAX`] series.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// Messages and bytes put per topic and got per topic and consumer group, since start
/// (`rocketmq_messages_in_total`, `rocketmq_throughput_in_total` and their `out` kin).
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    put: std::collections::HashMap<String, [u64; 2]>,
    got: std::collections::HashMap<String, std::collections::HashMap<String, [u64; 2]>>,
    got_series: usize,
}

impl Traffic {
    /// `messages` of `bytes` stored in `topic`. Allocates only for a topic not seen before.
    pub fn put(&mut self, topic: &str, messages: u64, bytes: u64) {
        let slot = match self.put.get_mut(topic) {
            Some(slot) => slot,
            None => {
                let key = match self.put.len() < TRAFFIC_SERIES_MAX {
                    true => topic,
                    false => OVERFLOW_LABEL,
                };
                self.put.entry(key.to_owned()).or_default()
            }
        };
        slot[0] += messages;
        slot[1] += bytes;
    }

    /// `messages` of `bytes` of `topic` handed to `group`. Allocates only for a pair not seen
    /// before.
    pub fn got(&mut self, topic: &str, group: &str, messages: u64, bytes: u64) {
        let known = self.got.get_mut(topic).and_then(|groups| groups.get_mut(group)).is_some();
        let (topic, group) = match known || self.got_series < TRAFFIC_SERIES_MAX {
            true => (topic, group),
            false => (OVERFLOW_LABEL, OVERFLOW_LABEL),
        };
        let groups = match self.got.get_mut(topic) {
            Some(groups) => groups,
            None => self.got.entry(topic.to_owned()).or_default(),
        };
        let slot = match groups.get_mut(group) {
            Some(slot) => slot,
            None => {
                self.got_series += 1;
                groups.entry(group.to_owned()).or_default()
            }
        };
        slot[0] += messages;
        slot[1] += bytes;
    }

    /// `(topic, messages, bytes)` put, sorted by topic.
    pub fn puts(&self) -> Vec<(&str, u64, u64)> {
        let mut all: Vec<_> = self.put.iter().map(|(t, [m, b])| (t.as_str(), *m, *b)).collect();
        all.sort();
        all
    }

    /// `(topic, group, messages, bytes)` got, sorted.
    pub fn gets(&self) -> Vec<(&str, &str, u64, u64)> {
        let mut all: Vec<_> = self
            .got
            .iter()
            .flat_map(|(t, groups)| {
                groups.iter().map(move |(g, [m, b])| (t.as_str(), g.as_str(), *m, *b))
            })
            .collect();
        all.sort();
        all
    }
}

/// Labels of one sample, in order: `(name, value)`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Builds an exposition: families one after the other, each with its HELP and TYPE lines.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A counter or gauge family and its samples.
    pub fn family<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.header(name, kind.name(), help);
        for (labels, value) in samples {
            self.sample(name, "", &labels, value);
        }
    }

    /// A histogram family: per label set, its per-bucket counts (as [`Histogram::snapshot`])
    /// and sum.
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, (Vec<u64>, f64))>,
    ) {
        self.header(name, "histogram", help);
        for (labels, (counts, sum)) in samples {
            let mut cumulative = 0;
            for (i, count) in counts.iter().enumerate() {
                cumulative += count;
                let bound = match LATENCY_BUCKETS_MS.get(i) {
                    Some(bound) => format_value(*bound),
                    None => "+Inf".to_owned(),
                };
                let mut with_le = labels.clone();
                with_le.push(("le", &bound));
                self.sample(name, "_bucket", &with_le, cumulative as f64);
            }
            self.sample(name, "_sum", &labels, sum);
            self.sample(name, "_count", &labels, cumulative as f64);
        }
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: Labels<'_>, value: f64) {
        self.text.push_str(name);
        self.text.push_str(suffix);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }
}

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A label value with `\`, `"` and line ends escaped, as the format requires.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A number as the format writes it: integers without a fraction.
fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_counted_per_topic_and_group_within_a_bound() {
        let mut traffic = Traffic::default();
        traffic.put("B", 2, 200);
        traffic.put("A", 1, 10);
        traffic.put("B", 1, 100);
        traffic.got("B", "G", 3, 300);
        assert_eq!(traffic.puts(), vec![("A", 1, 10), ("B", 3, 300)]);
        assert_eq!(traffic.gets(), vec![("B", "G", 3, 300)]);
        for i in 0..TRAFFIC_SERIES_MAX {
            traffic.put(&format!("T{i}"), 1, 1);
        }
        assert_eq!(traffic.put.len(), TRAFFIC_SERIES_MAX + 1, "the last ones share one series");
        assert_eq!(traffic.put[OVERFLOW_LABEL], [2, 2]);
    }

    #[test]
    fn families_are_written_in_the_text_format() {
        let mut out = Exposition::default();
        out.family(
            "rocketmq_messages_in_total",
            Kind::Counter,
            "Messages stored",
            vec![(vec![("topic", "Orders")], 12.0), (vec![("topic", "a\"b\\c")], 0.5)],
        );
        let latency = Histogram::default();
        for micros in [500, 2_000, 2_500, 50_000, 9_000_000] {
            latency.record_us(micros);
        }
        out.histogram(
            "rocketmq_rpc_latency",
            "Send latency (ms)",
            vec![(vec![("request_code", "send")], latency.snapshot())],
        );
        let text = out.finish();
        let expected = "\
# HELP rocketmq_messages_in_total Messages stored
# TYPE rocketmq_messages_in_total counter
rocketmq_messages_in_total{topic=\"Orders\"} 12
rocketmq_messages_in_total{topic=\"a\\\"b\\\\c\"} 0.5
# HELP rocketmq_rpc_latency Send latency (ms)
# TYPE rocketmq_rpc_latency histogram
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"1\"} 1
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"3\"} 3
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"5\"} 3
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"7\"} 3
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"10\"} 3
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"100\"} 4
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"1000\"} 4
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"3000\"} 4
rocketmq_rpc_latency_bucket{request_code=\"send\",le=\"+Inf\"} 5
rocketmq_rpc_latency_sum{request_code=\"send\"} 9055
rocketmq_rpc_latency_count{request_code=\"send\"} 5
";
        assert_eq!(text, expected);
    }
}
