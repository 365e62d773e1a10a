//! QUERY_CONSUMER_OFFSET (14): the offset a consumer group committed for a queue.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::QueryConsumerOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{decode, offset_answer, Broker, Outcome};

/// The group's committed offset. A group that never committed one starts at 0 while the
/// queue still holds its first message, as RocketMQ answers; otherwise (an empty queue, or one
/// whose first files were deleted) QUERY_NOT_FOUND, and the client applies its
/// consume-from-where.
pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: QueryConsumerOffsetRequestHeader = decode(request)?;
    let committed = broker.offsets().query(&header.topic, &header.consumer_group, header.queue_id);
    // A negative commit (ali-ons commits -1 for queues it never read) counts as none.
    if let Some(offset) = committed.filter(|o| *o >= 0) {
        return offset_answer(offset);
    }
    if header.set_zero_if_not_found == Some(false) {
        let why = "Not found, do not set to zero, maybe this group boot first";
        return Err(Refusal::new(response::QUERY_NOT_FOUND, why));
    }
    let offsets = broker.store().queue_offsets(&header.topic, header.queue_id);
    if offsets.is_some_and(|(min, max)| min == 0 && max > 0) {
        return offset_answer(0);
    }
    Err(Refusal::new(
        response::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    ))
}
