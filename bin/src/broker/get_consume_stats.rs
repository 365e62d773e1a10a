//! GET_CONSUME_STATS (208): how far a consumer group got in each queue of its topics on this
//! broker, against each queue's end (mqadmin consumerProgress, the dashboard's lag).
//!
//! The topics are, as RocketMQ picks them: the header's `topicList` if given; else its `topic`,
//! or every topic the group committed offsets for; less, when the group has live members, the
//! topics they do not subscribe to. `consumeTps` is the messages the group pulled a second
//! over the last minute, summed over those topics, as RocketMQ's.

use std::collections::BTreeSet;
use std::sync::Arc;

use petrel_core::admin::{ConsumeStats, MessageQueue, OffsetWrapper};
use petrel_net::bodies::consume_stats_to_json;
use petrel_net::codec::json::JsonStyle;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumeStatsRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: GetConsumeStatsRequestHeader = decode(request)?;
    let group = header.consumer_group.as_str();
    let listed: BTreeSet<String> = header
        .topic_list
        .as_deref()
        .unwrap_or("")
        .split(';')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let topics = match (listed.is_empty(), header.topic.as_deref()) {
        (false, _) => listed,
        (true, Some(topic)) if !topic.trim().is_empty() => subscribed(broker, group, [topic]),
        (true, _) => {
            let offsets = broker.offsets();
            let committed: Vec<String> =
                offsets.of_group(group).map(|(t, _)| t.to_owned()).collect();
            drop(offsets);
            subscribed(broker, group, committed.iter().map(String::as_str))
        }
    };
    let store = broker.store();
    let mut offset_table = Vec::new();
    for topic in &topics {
        let Some(config) = broker.topic(topic) else { continue };
        for queue_id in 0..config.read_queue_nums {
            let (_, end) = store.queue_offsets(topic, queue_id).unwrap_or((0, 0));
            let committed = broker.offsets().query(topic, group, queue_id).unwrap_or(0).max(0);
            let last = (committed - 1).max(-1);
            let last_timestamp = u64::try_from(last)
                .ok()
                .and_then(|o| store.message_time(topic, queue_id, o))
                .unwrap_or(0);
            let queue = MessageQueue {
                broker_name: broker.config.broker_name.clone(),
                queue_id,
                topic: topic.clone(),
            };
            let offsets = OffsetWrapper {
                broker_offset: end as i64,
                consumer_offset: committed,
                last_timestamp,
                pull_offset: committed,
            };
            offset_table.push((queue, offsets));
        }
    }
    let consume_tps = {
        let stats = lock(&broker.stats.groups);
        let minute = |topic: &String| stats.snapshot(&format!("{topic}@{group}")).map(|s| s[0].tps);
        // Not `sum()`: an empty f64 sum is -0.0, which fastjson would never write.
        topics.iter().filter_map(minute).fold(0.0, |total, tps| total + tps)
    };
    let stats = ConsumeStats { consume_tps, offset_table };
    answered(success().with_body(consume_stats_to_json(&stats, JsonStyle::Fastjson)))
}

/// `topics`, less those the group's live members do not subscribe to (none when it has no
/// live member).
fn subscribed<'a>(
    broker: &Broker,
    group: &str,
    topics: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let clients = lock(&broker.clients);
    let live = clients.consumer_group(group).filter(|g| !g.subscriptions.is_empty());
    topics
        .into_iter()
        .filter(|topic| live.is_none_or(|g| g.subscriptions.contains_key(*topic)))
        .map(str::to_owned)
        .collect()
}
