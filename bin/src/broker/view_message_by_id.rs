//! VIEW_MESSAGE_BY_ID (33): the record at a commit-log offset (the offset message id carries it).

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ViewMessageRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ViewMessageRequestHeader = decode(request)?;
    let record = u64::try_from(header.offset).ok().and_then(|o| broker.store().message_at(o));
    match record {
        Some(record) => answered(success().with_body(record)),
        None => Err(Refusal::new(
            response::SYSTEM_ERROR,
            format!("can not find message by the offset, {}", header.offset),
        )),
    }
}
