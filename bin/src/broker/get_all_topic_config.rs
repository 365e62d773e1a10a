//! GET_ALL_TOPIC_CONFIG (21): the topic table, as `topics.json` holds it.

use std::sync::Arc;

use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let wrapper = broker.topics().wrapper();
    answered(success().with_body(to_json(&wrapper, JsonStyle::Fastjson)))
}
