//! The NameServer's metrics in Prometheus' text format (`metricsExporterType=PROM`, served as
//! the broker's are by `crate::metrics`). RocketMQ's NameServer exports none, so the names
//! are Petrel's, after the broker's: each sample labelled with `node_type="namesrv"` and the
//! NameServer's listening address as `node_id`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use petrel_core::metrics::{Exposition, Kind};

use super::Namesrv;

impl Namesrv {
    /// Every metric, rendered now.
    pub fn metrics_text(&self, local: SocketAddr) -> String {
        let node = local.to_string();
        let base = [("node_type", "namesrv"), ("node_id", node.as_str())];
        let info = self.table().cluster_info();
        let topics = self.table().topics().len();
        let mut per_cluster: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for data in info.broker_addr_table.values() {
            let entry = per_cluster.entry(data.cluster.as_str()).or_default();
            entry.0 += 1;
            entry.1 += data.broker_addrs.len() as u64;
        }
        let mut out = Exposition::default();
        let families = [
            (
                "rocketmq_namesrv_broker_groups",
                "Broker groups (broker names) registered, per cluster",
                true,
            ),
            (
                "rocketmq_namesrv_brokers",
                "Brokers (masters and slaves) registered, per cluster",
                false,
            ),
        ];
        for (name, help, groups) in families {
            let samples = per_cluster.iter().map(|(cluster, (group_count, brokers))| {
                let mut labels = base.to_vec();
                labels.push(("cluster", cluster));
                (labels, if groups { *group_count } else { *brokers } as f64)
            });
            out.family(name, Kind::Gauge, help, samples);
        }
        let gauges = [
            ("rocketmq_topic_number", "Topics the route table holds", topics as u64),
            ("rocketmq_connections", "Open connections", self.server.connection_count() as u64),
        ];
        for (name, help, value) in gauges {
            out.family(name, Kind::Gauge, help, [(base.to_vec(), value as f64)]);
        }
        out.finish()
    }
}
