//! `config/timermetrics`: how many timer messages wait, per real topic (RocketMQ 5's
//! `TimerMetrics`, what `GET_TIMER_METRICS` answers and a slave copies).
//!
//! RocketMQ counts up and down as messages come and go and persists the running count, so
//! that a crash leaves it off by what was enqueued again. Petrel takes the counts from the
//! wheel (`TimerService::waiting`, per `realTopicHash`, rebuilt at every start from the units
//! of slots not read) and names them here: the file says what the wheel holds, each time it
//! is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::DataVersion;
use crate::record::java_hash;

/// The file's JSON (`TimerMetricsSerializeWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TimerMetrics {
    pub data_version: DataVersion,
    pub timing_count: BTreeMap<String, Metric>,
}

/// One topic's count and when it last changed (`TimerMetrics.Metric`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Metric {
    pub count: i64,
    pub time_stamp: i64,
}

impl TimerMetrics {
    /// Sets each topic's count to what the wheel holds: `waiting` per `realTopicHash`, named
    /// by the topics this file already lists or by `names` (topics the wheel met). A topic
    /// listed with no message waiting counts 0; RocketMQ keeps such rows too. When two names
    /// share a hash, the first in order takes the count (RocketMQ cannot tell them apart
    /// either). Whether any count changed; then the version moves on.
    pub fn update(
        &mut self,
        waiting: &BTreeMap<i32, i64>,
        names: &BTreeMap<i32, String>,
        now_ms: i64,
    ) -> bool {
        for (hash, name) in names {
            if waiting.contains_key(hash) && !self.timing_count.contains_key(name) {
                let metric = Metric { count: 0, time_stamp: now_ms };
                self.timing_count.insert(name.clone(), metric);
            }
        }
        let mut counted = BTreeMap::new();
        let mut changed = false;
        for (name, metric) in &mut self.timing_count {
            let hash = java_hash(name);
            let count = match counted.insert(hash, ()) {
                None => waiting.get(&hash).copied().unwrap_or(0),
                Some(()) => 0,
            };
            if metric.count != count {
                metric.count = count;
                metric.time_stamp = now_ms;
                changed = true;
            }
        }
        if changed {
            self.data_version.counter += 1;
            self.data_version.timestamp = now_ms;
        }
        changed
    }

    /// The messages the listed topics hold, together.
    pub fn total(&self) -> i64 {
        self.timing_count.values().map(|m| m.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file RocketMQ 5 writes (fastjson, `BrowserCompatible`), read and written back.
    #[test]
    fn reads_and_writes_rocketmqs_file() {
        let file = r#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000123},"timingCount":{"Orders":{"count":2,"timeStamp":1700000000100},"rmq_sys_wheel_timer":{"count":0,"timeStamp":1699999999000}}}"#;
        let metrics: TimerMetrics = serde_json::from_str(file).unwrap();
        assert_eq!(
            metrics.timing_count["Orders"],
            Metric { count: 2, time_stamp: 1_700_000_000_100 }
        );
        assert_eq!(metrics.data_version.counter, 3);
        assert_eq!(serde_json::to_string(&metrics).unwrap(), file);
    }

    #[test]
    fn counts_follow_the_wheel_and_the_version_moves_only_with_them() {
        let mut metrics = TimerMetrics::default();
        let names = BTreeMap::from([(java_hash("Orders"), "Orders".to_owned())]);
        let waiting = BTreeMap::from([(java_hash("Orders"), 5), (java_hash("Lost"), 1)]);
        assert!(metrics.update(&waiting, &names, 10));
        assert_eq!(metrics.timing_count.len(), 1, "a hash no name is known for is left out");
        assert_eq!(metrics.timing_count["Orders"], Metric { count: 5, time_stamp: 10 });
        assert_eq!((metrics.data_version.counter, metrics.data_version.timestamp), (1, 10));
        assert!(!metrics.update(&waiting, &names, 20), "nothing changed");
        assert_eq!(metrics.data_version.counter, 1);
        assert!(metrics.update(&BTreeMap::new(), &BTreeMap::new(), 30));
        assert_eq!(metrics.timing_count["Orders"], Metric { count: 0, time_stamp: 30 });
        assert_eq!(metrics.total(), 0);
    }

    /// "Aa" and "BB" share Java's hash: one count, given once.
    #[test]
    fn names_sharing_a_hash_share_one_count() {
        assert_eq!(java_hash("Aa"), java_hash("BB"));
        let mut metrics = TimerMetrics::default();
        metrics.timing_count.insert("Aa".into(), Metric::default());
        metrics.timing_count.insert("BB".into(), Metric::default());
        metrics.update(&BTreeMap::from([(java_hash("Aa"), 4)]), &BTreeMap::new(), 1);
        assert_eq!(metrics.total(), 4);
    }
}
