//! NOTIFY_BROKER_ROLE_CHANGED (1008), from a controller after it elected a new master: the
//! master (id, address, epoch) and the sync-state set (the body). A broker in controller mode
//! hands it to its role core, which acts only on an epoch newer than its own (RocketMQ's
//! `changeBrokerRole`); a broker outside controller mode refuses it.

use std::sync::Arc;

use petrel_core::broker::replicas::GroupView;
use petrel_core::broker::Refusal;
use petrel_core::controller::body::SyncStateSet;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::NotifyBrokerRoleChangedRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    if broker.config.controller.is_none() {
        let why = "this broker is not in controller mode (enableControllerMode=false)";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let header: NotifyBrokerRoleChangedRequestHeader = decode(request)?;
    let set: SyncStateSet = from_json(&request.body).map_err(|e| {
        Refusal::new(response::SYSTEM_ERROR, format!("the body is not a SyncStateSet: {e}"))
    })?;
    let view = GroupView {
        master: header.master_broker_id.zip(header.master_address.filter(|a| !a.is_empty())),
        master_epoch: header.master_epoch.unwrap_or(0),
        set_epoch: header.sync_state_set_epoch.unwrap_or(set.sync_state_set_epoch),
        set: set.sync_state_set,
    };
    broker.change_replicas(|replicas| replicas.view(view));
    answered(success())
}
