//! UPDATE_CONSUMER_OFFSET (15): a consumer group commits its offset in a queue.

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
    if broker.topic(topic).is_none() {
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, format!("Topic {topic} not exist!")));
    }
    if broker.offsets().commit(topic, group, header.queue_id, header.commit_offset) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    answered(success())
}
