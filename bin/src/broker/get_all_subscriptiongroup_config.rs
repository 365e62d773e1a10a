//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201): the subscription groups, as `subscriptionGroup.json`
//! holds them. A slave asks its master for them every 10 s.

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
    let snapshot = broker.groups().wrapper();
    answered(success().with_body(to_json(&snapshot, JsonStyle::Fastjson)))
}
