//! GET_BROKER_CONFIG (26): the configuration the broker runs with, as Java properties text
//! in RocketMQ's names (mqadmin getBrokerConfig). The header's version is the configuration's
//! DataVersion: Petrel's does not change while it runs, so it is the boot time's.

use std::sync::Arc;

use petrel_core::model::DataVersion;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetBrokerConfigResponseHeader;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let version = DataVersion { timestamp: broker.boot_millis as i64, ..DataVersion::default() };
    let version = String::from_utf8(to_json(&version, JsonStyle::Fastjson)).ok();
    let header = GetBrokerConfigResponseHeader { version };
    let body = broker.config.to_properties().into_bytes();
    answered(success().with_header(&header).with_body(body))
}
