//! GET_BROKER_CONFIG (26): the configuration the broker runs with, as Java properties text
//! in RocketMQ's names (mqadmin getBrokerConfig), as UPDATE_BROKER_CONFIG last left it. The
//! header's version is the configuration's DataVersion: the boot time, and a counter each
//! update moves on.

use std::sync::Arc;

use petrel_core::model::DataVersion;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetBrokerConfigResponseHeader;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let (body, counter) = {
        let updated = lock(&broker.updated);
        (updated.0.to_properties().into_bytes(), updated.1)
    };
    let timestamp = broker.boot_millis as i64;
    let version = DataVersion { timestamp, counter, ..DataVersion::default() };
    let version = String::from_utf8(to_json(&version, JsonStyle::Fastjson)).ok();
    let header = GetBrokerConfigResponseHeader { version };
    answered(success().with_header(&header).with_body(body))
}
