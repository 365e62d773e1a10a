//! GET_ALL_CONSUMER_OFFSET (43): the consumer offsets, as `consumerOffset.json` holds them. A
//! slave asks its master for them every 10 s.

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
    let snapshot = broker.offsets().clone();
    answered(success().with_body(to_json(&snapshot, JsonStyle::Fastjson)))
}
