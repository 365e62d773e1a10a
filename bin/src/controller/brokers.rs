//! What brokers and operators ask of the controller about a group's members:
//! BROKER_HEARTBEAT (904, every controller), CONTROLLER_REGISTER_BROKER (1003),
//! CONTROLLER_GET_REPLICA_INFO (1004), CONTROLLER_GET_SYNC_STATE_DATA (1006) and
//! CLEAN_BROKER_DATA (1011), the last four on the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_core::controller::body::{BrokerReplicasInfo, ReplicasInfo, SyncStateSet};
use petrel_core::controller::{code, BrokerId, BrokerLive};
use petrel_core::Millis;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    CleanControllerBrokerDataRequestHeader, GetReplicaInfoRequestHeader,
    GetReplicaInfoResponseHeader, RegisterBrokerToControllerRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use petrel_net::headers::namesrv::BrokerHeartbeatRequestHeader;

use super::{header, Controller};
use crate::clock::now_millis;

/// A broker's heartbeat timeout when it names none (`DEFAULT_BROKER_CHANNEL_EXPIRED_TIME`).
const HEARTBEAT_TIMEOUT_MS: Millis = 10_000;

/// The set as a body.
pub(super) fn set_body(set: &BTreeSet<BrokerId>, epoch: i32) -> Vec<u8> {
    let body = SyncStateSet { sync_state_set: set.clone(), sync_state_set_epoch: epoch };
    to_json(&body, JsonStyle::Fastjson)
}

pub(super) fn heartbeat(
    controller: &Controller,
    request: &RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: BrokerHeartbeatRequestHeader = header(request)?;
    let Some(id) = header.broker_id else {
        let why = "BROKER_HEARTBEAT to a controller must carry brokerId".to_owned();
        return Err(Refusal::new(code::INVALID_REQUEST, why));
    };
    let timeout = header
        .heartbeat_timeout_mills
        .and_then(|t| Millis::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(HEARTBEAT_TIMEOUT_MS);
    let live = BrokerLive {
        epoch: header.epoch.unwrap_or(0),
        max_offset: header.max_offset.unwrap_or(0),
        election_priority: header.election_priority.unwrap_or(0),
        last_heartbeat: now_millis(),
        timeout,
    };
    controller.liveness().heartbeat(&header.broker_name, id, live);
    Ok(RemotingCommand::response(response::SUCCESS, None))
}

pub(super) async fn register(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: RegisterBrokerToControllerRequestHeader = header(&request)?;
    let (group, id) = (&header.broker_name, header.broker_id);
    let deciding = controller.decide().await?;
    let decided = {
        let liveness = controller.liveness();
        let replicas = deciding.inner.node.replicas();
        replicas.register(group, id, &header.broker_address, &liveness, now_millis())
    };
    let (moved, info) = decided?;
    if let Some(moved) = moved {
        controller.replicate(deciding, &moved).await?;
    }
    let (master_id, master_address) = info.master.clone().unzip();
    let known = master_id.is_some();
    let answer = RegisterBrokerToControllerResponseHeader {
        cluster_name: header.cluster_name,
        broker_name: header.broker_name,
        master_broker_id: master_id,
        master_address,
        master_epoch: known.then_some(info.master_epoch),
        sync_state_set_epoch: known.then_some(info.sync_state_set_epoch),
    };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&answer)
        .with_body(set_body(&info.sync_state_set, info.sync_state_set_epoch)))
}

pub(super) async fn replica_info(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: GetReplicaInfoRequestHeader = header(&request)?;
    let inner = controller.read().await?;
    let info = inner.node.replicas().replica_info(&header.broker_name)?;
    let (master_id, master_address) = info.master.clone().unzip();
    let answer = GetReplicaInfoResponseHeader {
        master_broker_id: master_id,
        master_address,
        master_epoch: Some(info.master_epoch),
    };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&answer)
        .with_body(set_body(&info.sync_state_set, info.sync_state_set_epoch)))
}

/// The named groups' members and who of them is in sync and alive; unknown names are left out.
pub(super) async fn sync_state_data(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let names: Vec<String> = from_json(request.body_bytes().as_ref()).map_err(|e| {
        let why = format!(
            "CONTROLLER_GET_SYNC_STATE_DATA: the body must be a JSON list of broker names: {e}"
        );
        Refusal::new(code::INVALID_REQUEST, why)
    })?;
    let inner = controller.read().await?;
    let liveness = controller.liveness();
    let now = now_millis();
    let table: BTreeMap<String, ReplicasInfo> = names
        .into_iter()
        .filter_map(|name| {
            let group = inner.node.replicas().group(&name)?;
            let info = ReplicasInfo::of(&name, group, &liveness, now);
            Some((name, info))
        })
        .collect();
    let body = BrokerReplicasInfo { replicas_info_table: table };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_body(to_json(&body, JsonStyle::Fastjson)))
}

pub(super) async fn clean(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: CleanControllerBrokerDataRequestHeader = header(&request)?;
    let ids = parse_ids(header.broker_controller_ids_to_clean.as_deref())?;
    let deciding = controller.decide().await?;
    let living = header.is_clean_living_broker.unwrap_or(false);
    let decided = {
        let liveness = controller.liveness();
        let replicas = deciding.inner.node.replicas();
        replicas.clean(&header.broker_name, ids, living, &liveness, now_millis())
    };
    controller.replicate(deciding, &decided?).await?;
    Ok(RemotingCommand::response(response::SUCCESS, None))
}

/// `1;2;3` into ids; blank is every broker of the group.
fn parse_ids(text: Option<&str>) -> Result<Option<BTreeSet<BrokerId>>, Refusal> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let ids: Result<BTreeSet<BrokerId>, _> =
        text.split(';').map(str::trim).filter(|t| !t.is_empty()).map(str::parse).collect();
    ids.map(Some).map_err(|e| {
        let why = format!("brokerControllerIdsToClean must be ids separated by ';', as 1;2: {e}");
        Refusal::new(code::INVALID_CLEAN_BROKER_METADATA, why)
    })
}
