//! INVOKE_BROKER_TO_RESET_OFFSET (222): an operator moves a consumer group's offsets of a
//! topic (mqadmin resetOffsetByTime), as RocketMQ 5 does by default (its server-side reset,
//! `useServerSideResetOffset=true`): every readable queue to the first message stored at or
//! after `timestamp` (its end for a negative timestamp), or one `queueId` to `offset` (which
//! must lie in the queue) or to `timestamp`'s offset. Each queue's committed offset becomes
//! the reset one, and the group's next pull of the queue is told to move there
//! (PULL_OFFSET_MOVED); until then the members' own commits of it are ignored
//! (`petrel_core::broker::offsets`). The answer is the offsets set, by queue.
//!
//! Refused as RocketMQ refuses: on a slave (SYSTEM_ERROR), a topic (TOPIC_NOT_EXIST) or group
//! (SUBSCRIPTION_GROUP_NOT_EXIST) this broker lacks, an offset outside the queue
//! (SYSTEM_ERROR); and a queue the topic does not have (INVALID_PARAMETER, where RocketMQ
//! stores it, as for UPDATE_CONSUMER_OFFSET: decision 0008). `isForce` is ignored, as RocketMQ 5's server-side reset ignores it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::admin::MessageQueue;
use petrel_core::broker::Refusal;
use petrel_net::bodies::reset_offsets_to_json;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::JsonStyle;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ResetOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ResetOffsetRequestHeader = decode(request)?;
    let (topic, group) = (header.topic.as_str(), header.group.as_str());
    if !broker.is_master() {
        return Err(Refusal::new(response::SYSTEM_ERROR, "Can not reset offset in slave broker"));
    }
    let Some(config) = broker.topic(topic) else {
        let why = format!("Topic {topic} does not exist");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    if broker.groups().get(group).is_none() {
        let why = format!("Group {group} does not exist");
        return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
    }
    let queue_id = header.queue_id.unwrap_or(-1);
    let queues = config.read_queue_nums.max(config.write_queue_nums);
    if queue_id >= queues {
        let why = format!("queue {queue_id} of topic {topic} does not exist: it has {queues}");
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    let targets: Vec<(i32, i64)> = match (queue_id, header.offset.filter(|o| *o != -1)) {
        (id, Some(offset)) if id >= 0 => vec![(id, offset_in_range(broker, topic, id, offset)?)],
        (id, None) if id >= 0 => vec![(id, by_time(broker, topic, id, header.timestamp))],
        _ => (0..config.read_queue_nums)
            .map(|id| (id, by_time(broker, topic, id, header.timestamp)))
            .collect(),
    };
    if targets.is_empty() {
        return Err(Refusal::new(response::SYSTEM_ERROR, "No queues to reset."));
    }
    {
        let mut offsets = broker.offsets();
        for (id, offset) in &targets {
            offsets.reset(topic, group, *id, *offset);
        }
    }
    broker.offsets_dirty.store(true, Ordering::Release);
    tracing::info!(caller = %conn.peer(), %topic, %group, queues = ?targets, "consumer offsets reset");
    let table: Vec<(MessageQueue, i64)> = targets
        .into_iter()
        .map(|(queue_id, offset)| {
            let queue = MessageQueue {
                broker_name: broker.config.broker_name.clone(),
                queue_id,
                topic: topic.to_owned(),
            };
            (queue, offset)
        })
        .collect();
    answered(success().with_body(reset_offsets_to_json(&table, JsonStyle::Fastjson)))
}

/// The queue's first offset stored at or after `timestamp`; its end for a negative one.
fn by_time(broker: &Broker, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
    match timestamp < 0 {
        true => broker.store().queue_offsets(topic, queue_id).map_or(0, |(_, max)| max as i64),
        false => broker.store().offset_by_time(topic, queue_id, timestamp) as i64,
    }
}

/// `offset`, when it lies in the queue (from its first offset to one past its end).
fn offset_in_range(
    broker: &Broker,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<i64, Refusal> {
    let (min, max) = broker.store().queue_offsets(topic, queue_id).unwrap_or((0, 0));
    let (min, max) = (min as i64, max as i64);
    if offset < min || offset > max {
        let why = format!("Target offset {offset} not in consume queue range [{min}-{max}]");
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    Ok(offset)
}
