//! GET_EARLIEST_MSG_STORETIME (32): the store time of a queue's first readable message.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{TimestampResponseHeader, TopicQueueRequestHeader};
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: TopicQueueRequestHeader = decode(request)?;
    let timestamp = broker.store().earliest_time(&header.topic, header.queue_id).unwrap_or(-1);
    answered(success().with_header(&TimestampResponseHeader { timestamp }))
}
