//! Elections and sync-state set changes: CONTROLLER_ELECT_MASTER (1002) from a broker or an
//! operator, the leader's own scan for groups whose master stopped heartbeating (every
//! `scanNotActiveBrokerInterval`), CONTROLLER_ALTER_SYNC_STATE_SET (1001) from a master, and
//! NOTIFY_BROKER_ROLE_CHANGED (1008) to a group's live brokers after a new master is elected.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::Refusal;
use petrel_core::controller::body::{BrokerMemberGroup, ElectMasterResponseBody, SyncStateSet};
use petrel_core::controller::{code, AlterRequest, Elected, Trigger};
use petrel_net::codec::codes::{request as request_code, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, NotifyBrokerRoleChangedRequestHeader,
};
use petrel_net::signal::Flag;

use super::brokers::set_body;
use super::{header, Controller};
use crate::clock::now_millis;

pub(super) async fn request(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: ElectMasterRequestHeader = header(&request)?;
    // RocketMQ's controller-triggered elections name broker -1.
    let trigger = match (header.designate_elect, header.broker_id) {
        (_, id) if id < 0 => Trigger::Controller,
        (true, id) => Trigger::Admin(id),
        (false, id) => Trigger::Broker(id),
    };
    elect(&controller, &header.broker_name, trigger).await
}

/// Decides and replicates one election of `group`; the answer.
async fn elect(
    controller: &Arc<Controller>,
    group: &str,
    trigger: Trigger,
) -> Result<RemotingCommand, Refusal> {
    let deciding = controller.decide().await?;
    let replicas = deciding.inner.node.replicas();
    let members = replicas.group(group).map(|g| BrokerMemberGroup::of(group, g));
    let (event, answer) = {
        let liveness = controller.liveness();
        let unclean = controller.settings().elect_unclean_master;
        replicas.elect(group, trigger, &liveness, now_millis(), unclean)
    };
    if let Some(event) = event {
        controller.replicate(deciding, &event).await?;
        tracing::info!(group, ?trigger, ?answer, "election replicated");
    }
    let elected = answer?;
    let members = members.expect("an election succeeds only in a known group");
    let header = ElectMasterResponseHeader {
        master_broker_id: Some(elected.master),
        master_address: members.broker_addrs.get(&elected.master).cloned(),
        master_epoch: Some(elected.master_epoch),
        sync_state_set_epoch: Some(elected.sync_state_set_epoch),
    };
    if elected.unchanged {
        let body = ElectMasterResponseBody {
            broker_member_group: None,
            sync_state_set: elected.sync_state_set,
        };
        let why = format!("broker {} is still the master of {group}", elected.master);
        return Ok(RemotingCommand::response(code::MASTER_STILL_EXIST, Some(why))
            .with_header(&header)
            .with_body(to_json(&body, JsonStyle::Fastjson)));
    }
    if controller.settings().notify_broker_role_changed {
        notify(controller, &members, &elected);
    }
    let body = ElectMasterResponseBody {
        sync_state_set: elected.sync_state_set,
        broker_member_group: Some(members),
    };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&header)
        .with_body(to_json(&body, JsonStyle::Fastjson)))
}

/// NOTIFY_BROKER_ROLE_CHANGED, oneway, to each live broker of the group, without waiting.
fn notify(controller: &Arc<Controller>, members: &BrokerMemberGroup, elected: &Elected) {
    let now = now_millis();
    let header = NotifyBrokerRoleChangedRequestHeader {
        master_address: members.broker_addrs.get(&elected.master).cloned(),
        master_epoch: Some(elected.master_epoch),
        sync_state_set_epoch: Some(elected.sync_state_set_epoch),
        master_broker_id: Some(elected.master),
    };
    let body = set_body(&elected.sync_state_set, elected.sync_state_set_epoch);
    let liveness = controller.liveness();
    for (&id, address) in &members.broker_addrs {
        if liveness.alive(&members.broker_name, id, now).is_none() {
            continue;
        }
        let request = RemotingCommand::request(request_code::NOTIFY_BROKER_ROLE_CHANGED)
            .with_header(&header)
            .with_body(body.clone());
        let (controller, address) = (controller.clone(), address.clone());
        tokio::spawn(async move {
            // A broker that misses it learns the new master from its next replica-info poll.
            let _ = controller.peers.invoke_oneway(&address, request).await;
        });
    }
}

pub(super) async fn alter(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: AlterSyncStateSetRequestHeader = header(&request)?;
    let proposed: SyncStateSet = from_json(request.body_bytes().as_ref()).map_err(|e| {
        let why = format!("CONTROLLER_ALTER_SYNC_STATE_SET: the body must be a SyncStateSet: {e}");
        Refusal::new(code::INVALID_REQUEST, why)
    })?;
    let group = &header.broker_name;
    let alter = AlterRequest {
        master: header.master_broker_id,
        master_epoch: header.master_epoch,
        set_epoch: proposed.sync_state_set_epoch,
        set: proposed.sync_state_set.clone(),
    };
    let deciding = controller.decide().await?;
    let decided = {
        let liveness = controller.liveness();
        let replicas = deciding.inner.node.replicas();
        replicas.alter_sync_state_set(group, alter, &liveness, now_millis())
    };
    let (event, epoch) = decided?;
    controller.replicate(deciding, &event).await?;
    let answer = AlterSyncStateSetResponseHeader { new_sync_state_set_epoch: epoch };
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&answer)
        .with_body(set_body(&proposed.sync_state_set, epoch)))
}

/// Every `scanNotActiveBrokerInterval`: forget brokers whose heartbeats stopped and, on the
/// leader, elect anew in each group whose master is gone while another broker lives.
pub(super) async fn scan_loop(controller: Arc<Controller>, stop: Flag) {
    loop {
        let every = Duration::from_millis(controller.settings().scan_not_active_broker_ms.max(1));
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = now_millis();
        for (group, id) in controller.liveness().expire(now) {
            tracing::info!(group, id, "broker stopped heartbeating");
        }
        let orphaned = {
            let inner = controller.inner.lock().await;
            if !inner.node.is_leader() {
                continue;
            }
            inner.node.replicas().needing_election(&controller.liveness(), now)
        };
        for group in orphaned {
            if let Err(refusal) = elect(&controller, &group, Trigger::Controller).await {
                tracing::warn!(
                    group,
                    code = refusal.code,
                    remark = refusal.remark,
                    "no new master"
                );
            }
        }
    }
}
