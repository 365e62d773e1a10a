//! The broker's metrics in Prometheus' text format, under RocketMQ 5's names where RocketMQ
//! has one (`BrokerMetricsConstant`, `DefaultStoreMetricsConstant`), each sample labelled with
//! the cluster, `node_type="broker"` and the broker's name as RocketMQ labels them.

use std::sync::atomic::Ordering;

use petrel_core::metrics::{Exposition, Kind};

use super::{lock, Broker};

/// Labels every sample carries.
type Base<'a> = [(&'a str, &'a str); 3];

impl Broker {
    /// Every metric, rendered now.
    pub fn metrics_text(&self) -> String {
        let base: Base<'_> = [
            ("cluster", self.config.cluster_name.as_str()),
            ("node_type", "broker"),
            ("node_id", self.config.broker_name.as_str()),
        ];
        let mut out = Exposition::default();
        self.traffic_metrics(&mut out, &base);
        self.lag_metrics(&mut out, &base);
        self.latency_metrics(&mut out, &base);
        self.gauge_metrics(&mut out, &base);
        out.finish()
    }

    /// Messages and bytes in per topic, out per topic and group.
    fn traffic_metrics(&self, out: &mut Exposition, base: &Base<'_>) {
        let traffic = lock(&self.stats.traffic).clone();
        let puts = traffic.puts();
        let gets = traffic.gets();
        let families = [
            ("rocketmq_messages_in_total", "Messages stored, per topic", true),
            ("rocketmq_throughput_in_total", "Message body bytes stored, per topic", false),
        ];
        for (name, help, messages) in families {
            let samples = puts.iter().map(|(topic, count, bytes)| {
                let value = if messages { *count } else { *bytes };
                (with(base, &[("topic", topic)]), value as f64)
            });
            out.family(name, Kind::Counter, help, samples);
        }
        let families = [
            ("rocketmq_messages_out_total", "Messages pulled, per topic and consumer group", true),
            ("rocketmq_throughput_out_total", "Record bytes pulled, per topic and group", false),
        ];
        for (name, help, messages) in families {
            let samples = gets.iter().map(|(topic, group, count, bytes)| {
                let value = if messages { *count } else { *bytes };
                (with(base, &[("topic", topic), ("consumer_group", group)]), value as f64)
            });
            out.family(name, Kind::Counter, help, samples);
        }
    }

    /// `rocketmq_consumer_lag_messages` per group, topic and queue: the queue's end less the
    /// group's committed offset.
    fn lag_metrics(&self, out: &mut Exposition, base: &Base<'_>) {
        let committed = self.offsets().offset_table.clone();
        let mut lags = Vec::new();
        for (key, queues) in &committed {
            let separator = petrel_core::broker::offsets::KEY_SEPARATOR;
            let Some((topic, group)) = key.rsplit_once(separator) else { continue };
            for (queue_id, offset) in queues {
                let end = self.store().queue_offsets(topic, *queue_id).map_or(0, |(_, max)| max);
                lags.push((group, topic, queue_id.to_string(), (end as i64 - offset).max(0)));
            }
        }
        let samples = lags.iter().map(|(group, topic, queue_id, lag)| {
            let labels =
                [("consumer_group", *group), ("topic", *topic), ("queue_id", queue_id.as_str())];
            (with(base, &labels), *lag as f64)
        });
        let help = "Messages a consumer group has not committed, per queue";
        out.family("rocketmq_consumer_lag_messages", Kind::Gauge, help, samples);
    }

    /// Send and flush latency histograms.
    fn latency_metrics(&self, out: &mut Exposition, base: &Base<'_>) {
        let send = with(base, &[("protocol_type", "remoting"), ("request_code", "send_message")]);
        let help = "Time to answer a send, in milliseconds (SYNC_FLUSH: after the group commit)";
        out.histogram("rocketmq_rpc_latency", help, [(send, self.stats.send_latency.snapshot())]);
        let help = "Time of a commit-log flush (fdatasync), in milliseconds";
        let flushes = self.store.flush_latency().snapshot();
        out.histogram("rocketmq_storage_flush_latency", help, [(base.to_vec(), flushes)]);
    }

    /// The store, the tables and the connections, as they are now.
    fn gauge_metrics(&self, out: &mut Exposition, base: &Base<'_>) {
        let store = self.store();
        let written = store.written_offset();
        let clients = lock(&self.clients);
        let producers = clients.producer_group_count() as u64;
        let consumers = clients.consumer_group_names().count() as u64;
        drop(clients);
        let (topics, groups) = (self.topics().len() as u64, self.groups().len() as u64);
        let held = self.held_pulls.load(Ordering::Relaxed) as u64;
        let connections = self.server.connection_count() as u64;
        let gauges = [
            (
                "rocketmq_storage_size",
                "Bytes the commit log holds",
                written.saturating_sub(store.min_physical_offset()),
            ),
            (
                "rocketmq_storage_flush_behind_bytes",
                "Bytes written but not flushed",
                written.saturating_sub(store.flushed_offset()),
            ),
            (
                "rocketmq_storage_dispatch_behind_bytes",
                "Bytes not yet in consume queues",
                written.saturating_sub(store.dispatched_offset()),
            ),
            ("rocketmq_topic_number", "Topics this broker has", topics),
            ("rocketmq_consumer_group_number", "Subscription groups", groups),
            ("rocketmq_producer_groups", "Producer groups with a live member", producers),
            ("rocketmq_consumer_groups", "Consumer groups with a live member", consumers),
            ("rocketmq_pull_held_requests", "Pulls held for long polling", held),
            ("rocketmq_connections", "Open client connections", connections),
        ];
        for (name, help, value) in gauges {
            out.family(name, Kind::Gauge, help, [(base.to_vec(), value as f64)]);
        }
        if let Some(ratio) = self.disk_used_ratio() {
            let help = "Used share of the store's disk";
            out.family(
                "rocketmq_storage_disk_used_ratio",
                Kind::Gauge,
                help,
                [(base.to_vec(), ratio)],
            );
        }
    }
}

/// `base` and then `extra`.
fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}
