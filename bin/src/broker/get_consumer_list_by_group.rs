//! GET_CONSUMER_LIST_BY_GROUP (38): the client ids of a consumer group's members.

use std::sync::Arc;

use petrel_core::admin::ConsumerIdList;
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerGroupRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ConsumerGroupRequestHeader = decode(request)?;
    let ids = super::lock(&broker.clients).consumer_ids(&header.consumer_group);
    if ids.is_empty() {
        let why = format!("no consumer for this group, {}", header.consumer_group);
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let body = to_json(&ConsumerIdList { consumer_id_list: ids }, JsonStyle::Fastjson);
    answered(success().with_body(body))
}
