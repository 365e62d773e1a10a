//! UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): an admin creates or changes a consumer group.

use std::sync::Arc;

use petrel_core::broker::subscriptions::SubscriptionGroupConfig;
use petrel_core::broker::Refusal;
use petrel_core::record::is_valid_topic;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let config: SubscriptionGroupConfig = match from_json(&request.body) {
        Ok(config) => config,
        Err(e) => {
            let why = format!("SubscriptionGroupConfig body is not valid JSON: {e}");
            return Err(Refusal::new(response::INVALID_PARAMETER, why));
        }
    };
    if config.group_name.is_empty() || !is_valid_topic(config.group_name.as_bytes()) {
        let why = format!("the group name {:?} is not valid", config.group_name);
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if broker.groups().put(config, now_millis()) {
        broker.groups_changed();
    }
    broker.groups_durable()?;
    answered(success())
}
