//! VIEW_BROKER_STATS_DATA (315): one stats item over the last minute, hour and day (mqadmin
//! statsAll). Petrel keeps two of RocketMQ's items: `TOPIC_PUT_NUMS` by topic (messages
//! stored) and `GROUP_GET_NUMS` by `topic@group` (messages the group pulled); `stats.rs`
//! samples them. Any other item, or a key not
//! sampled yet, is answered SYSTEM_ERROR "The stats <name> <key> not exist", as RocketMQ
//! answers a missing item. `avgpt` (messages per call) is 0: Petrel does not count calls.

use std::sync::Arc;

use petrel_core::admin::{BrokerStatsData, BrokerStatsItem};
use petrel_core::broker::stats::Snapshot;
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ViewBrokerStatsDataRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ViewBrokerStatsDataRequestHeader = decode(request)?;
    let (name, key) = (header.stats_name.as_str(), header.stats_key.as_str());
    let figures = match name {
        "TOPIC_PUT_NUMS" => lock(&broker.stats.topics).snapshot(key),
        "GROUP_GET_NUMS" => lock(&broker.stats.groups).snapshot(key),
        _ => None,
    };
    let Some([minute, hour, day]) = figures else {
        let why = format!("The stats <{name}> <{key}> not exist");
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let item = |s: Snapshot| BrokerStatsItem { avgpt: 0.0, sum: s.sum, tps: s.tps };
    let data = BrokerStatsData {
        stats_day: item(day),
        stats_hour: item(hour),
        stats_minute: item(minute),
    };
    answered(success().with_body(to_json(&data, JsonStyle::Fastjson)))
}
