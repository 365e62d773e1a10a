//! GET_TOPIC_STATS_INFO (202): each queue of a topic on this broker with its offsets and the
//! store time of its newest message (mqadmin topicStatus, the dashboard's topic status).

use std::sync::Arc;

use petrel_core::admin::{MessageQueue, TopicOffset, TopicStatsTable};
use petrel_core::broker::Refusal;
use petrel_net::bodies::topic_stats_to_json;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::JsonStyle;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::TopicRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: TopicRequestHeader = decode(request)?;
    let Some(config) = broker.topic(&header.topic) else {
        let why = format!("topic[{}] not exist", header.topic);
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    let store = broker.store();
    // Every queue that can hold messages: a shrunk topic's read queues outlast its writes.
    let offset_table = (0..config.write_queue_nums.max(config.read_queue_nums))
        .map(|queue_id| {
            let (min, max) = store.queue_offsets(&header.topic, queue_id).unwrap_or((0, 0));
            let newest =
                max.checked_sub(1).and_then(|o| store.message_time(&header.topic, queue_id, o));
            let queue = MessageQueue {
                broker_name: broker.config.broker_name.clone(),
                queue_id,
                topic: header.topic.clone(),
            };
            let offsets = TopicOffset {
                last_update_timestamp: newest.unwrap_or(0),
                max_offset: max as i64,
                min_offset: min as i64,
            };
            (queue, offsets)
        })
        .collect();
    let body = topic_stats_to_json(&TopicStatsTable { offset_table }, JsonStyle::Fastjson);
    answered(success().with_body(body))
}
