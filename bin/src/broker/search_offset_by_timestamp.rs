//! SEARCH_OFFSET_BY_TIMESTAMP (29): the first offset of a queue stored at or after a time.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::SearchOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{decode, offset_answer, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: SearchOffsetRequestHeader = decode(request)?;
    let offset = broker.store().offset_by_time(&header.topic, header.queue_id, header.timestamp);
    offset_answer(offset as i64)
}
