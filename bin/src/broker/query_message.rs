//! QUERY_MESSAGE (12): messages by key (KEYS or UNIQ_KEY) through the index.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{QueryMessageRequestHeader, QueryMessageResponseHeader};
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

/// RocketMQ's `defaultQueryMaxNum`: a unique-key query returns at most this many.
const UNIQUE_KEY_QUERY_MAX: usize = 32;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: QueryMessageRequestHeader = decode(request)?;
    let unique = request.ext_fields.get("_UNIQUE_KEY_QUERY").is_some_and(|v| v == "true");
    let max = if unique {
        UNIQUE_KEY_QUERY_MAX
    } else {
        usize::try_from(header.max_num).unwrap_or(0).min(UNIQUE_KEY_QUERY_MAX * 64)
    };
    let store = broker.store();
    let found = store.query_by_key(
        &header.topic,
        &header.key,
        max,
        header.begin_timestamp,
        header.end_timestamp,
    );
    if found.is_empty() {
        return Err(Refusal::new(
            response::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        ));
    }
    let answer = QueryMessageResponseHeader {
        index_last_update_timestamp: store.dispatched_timestamp(),
        index_last_update_phyoffset: store.dispatched_offset().min(i64::MAX as u64) as i64,
    };
    answered(success().with_header(&answer).with_body_parts(found))
}
