//! GET_MAX_OFFSET (30): the offset after a queue's last message.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetMaxOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{decode, offset_answer, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: GetMaxOffsetRequestHeader = decode(request)?;
    let max =
        broker.store().queue_offsets(&header.topic, header.queue_id).map_or(0, |(_, max)| max);
    offset_answer(max as i64)
}
