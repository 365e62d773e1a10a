//! GET_MIN_OFFSET (31): a queue's first readable offset.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::TopicQueueRequestHeader;
use petrel_net::transport::Connection;

use super::{decode, offset_answer, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: TopicQueueRequestHeader = decode(request)?;
    let min =
        broker.store().queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min);
    offset_answer(min as i64)
}
