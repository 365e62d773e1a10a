//! DELETE_TOPIC_IN_BROKER (215): an admin deletes a topic and its consumer offsets.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::timer::TIMER_TOPIC;
use petrel_core::broker::{Refusal, AUTO_CREATE_TOPIC, SCHEDULE_TOPIC};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::DeleteTopicRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: DeleteTopicRequestHeader = decode(request)?;
    let topic = header.topic.as_str();
    if topic == AUTO_CREATE_TOPIC || topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC {
        let why = format!("The topic[{topic}] is conflict with system topic.");
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if broker.topics().remove(topic, now_millis()).is_some() {
        tracing::info!(topic, "topic deleted; its stored messages age out with the commit log");
        broker.topics_changed();
    }
    if broker.offsets().remove_topic(topic) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    broker.topics_durable()?;
    answered(success())
}
