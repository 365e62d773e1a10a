//! GET_ALL_DELAY_OFFSET (45): the delay service's cursors, as `delayOffset.json` holds them. A
//! slave asks its master for them every 10 s.

use std::sync::Arc;

use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let snapshot = lock(&broker.delays).clone();
    answered(success().with_body(to_json(&snapshot, JsonStyle::Fastjson)))
}
