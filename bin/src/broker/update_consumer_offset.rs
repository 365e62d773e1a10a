//! UPDATE_CONSUMER_OFFSET (15): a consumer group commits its offset in a queue. A queue the
//! topic does not have is refused INVALID_PARAMETER, where RocketMQ stores any queue id
//! ([decision 0008](../../../docs/decisions/0008-refuse-admin-values-that-name-nothing.md)).
//! While an operator's reset of the queue waits for the group's next pull, the commit is
//! ignored and answered SUCCESS with RocketMQ's remark.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::UpdateConsumerOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

/// Records the offset a group committed (clients mostly send this oneway).
pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: UpdateConsumerOffsetRequestHeader = decode(request)?;
    let (topic, group) = (&header.topic, &header.consumer_group);
    if broker.groups().get(group).is_none() {
        return Err(Refusal::new(
            response::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {group} not exist!"),
        ));
    }
    let Some(config) = broker.topic(topic) else {
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, format!("Topic {topic} not exist!")));
    };
    let queues = config.read_queue_nums.max(config.write_queue_nums);
    if !(0..queues).contains(&header.queue_id) {
        let has = match queues {
            0 => "none".to_owned(),
            n => format!("0 to {}", n - 1),
        };
        let why = format!(
            "queue {} of topic {topic} does not exist: its queues are {has}",
            header.queue_id
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    let mut offsets = broker.offsets();
    if offsets.has_reset(topic, group, header.queue_id) {
        let why = "Offset has been previously reset".to_owned();
        return answered(RemotingCommand::response(response::SUCCESS, Some(why)));
    }
    if offsets.commit(topic, group, header.queue_id, header.commit_offset) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    answered(success())
}
