//! QUERY_MESSAGE (12): messages by key through the index; VIEW_MESSAGE_BY_ID (33): the record
//! at a commit-log offset (the offset message id carries it).

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};

use super::{answer, Broker, Reply};

/// RocketMQ's `defaultQueryMaxNum`: a unique-key query returns at most this many.
const UNIQUE_KEY_QUERY_MAX: usize = 32;

pub(super) fn by_key(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: QueryMessageRequestHeader = request.header()?;
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
        return Ok(answer(
            response::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        ));
    }
    let answer = QueryMessageResponseHeader {
        index_last_update_timestamp: store.dispatched_timestamp(),
        index_last_update_phyoffset: store.dispatched_offset().min(i64::MAX as u64) as i64,
    };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&answer)
        .with_body_parts(found))
}

pub(super) fn by_offset(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: ViewMessageRequestHeader = request.header()?;
    let record = u64::try_from(header.offset).ok().and_then(|o| broker.store().message_at(o));
    match record {
        Some(record) => Ok(RemotingCommand::response(response::SUCCESS, None).with_body(record)),
        None => Ok(answer(
            response::SYSTEM_ERROR,
            format!("can not find message by the offset, {}", header.offset),
        )),
    }
}
