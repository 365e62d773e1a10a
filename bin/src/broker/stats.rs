//! Samples the totals the stats tables keep (`petrel_core::broker::stats`) every 10 s: each
//! topic's messages (the sum of its queues' end offsets) and the messages each group pulled
//! of each topic (the pull path's counts, `Stats::traffic`).

use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::stats::NewKeys;
use petrel_net::signal::Flag;

use super::{lock, Broker};
use crate::clock::now_millis;

/// How often the totals are sampled: the minute window's step.
const PERIOD: Duration = Duration::from_secs(10);

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    loop {
        broker.sample_stats();
        tokio::select! {
            biased;
            () = tokio::time::sleep(PERIOD) => {}
            _ = stop.wait() => return,
        }
    }
}

impl Broker {
    fn sample_stats(&self) {
        let topics: Vec<(String, i32)> = {
            let table = self.topics();
            let names: Vec<String> = table.names().map(str::to_owned).collect();
            names
                .into_iter()
                .filter_map(|name| {
                    let config = table.get(&name)?;
                    Some((name, config.read_queue_nums.max(config.write_queue_nums)))
                })
                .collect()
        };
        let store = self.store();
        let puts: Vec<(String, u64)> = topics
            .into_iter()
            .map(|(topic, queues)| {
                let ends = (0..queues).filter_map(|id| store.queue_offsets(&topic, id));
                let total = ends.map(|(_, end)| end).sum();
                (topic, total)
            })
            .collect();
        let pulled: Vec<(String, u64)> = lock(&self.stats.traffic)
            .gets()
            .into_iter()
            .map(|(topic, group, messages, _)| (format!("{topic}@{group}"), messages))
            .collect();
        let now = now_millis();
        lock(&self.stats.topics).sample(now, puts, NewKeys::FromNow);
        lock(&self.stats.groups).sample(now, pulled, NewKeys::Whole);
    }
}
