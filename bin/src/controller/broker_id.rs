//! CONTROLLER_GET_NEXT_BROKER_ID (1012) and CONTROLLER_APPLY_BROKER_ID (1013): how a broker of
//! a group takes its id. Both on the raft leader only; an applied id is answered once its
//! event is committed and applied here.

use std::sync::Arc;

use petrel_core::controller::code;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    ApplyBrokerIdRequestHeader, ApplyBrokerIdResponseHeader, GetNextBrokerIdRequestHeader,
    GetNextBrokerIdResponseHeader,
};

use super::{refused, Controller};

pub(super) async fn next(controller: Arc<Controller>, request: RemotingCommand) -> RemotingCommand {
    let header: GetNextBrokerIdRequestHeader = match request.header() {
        Ok(header) => header,
        Err(e) => {
            return refused(response::SYSTEM_ERROR, format!("CONTROLLER_GET_NEXT_BROKER_ID: {e}"))
        }
    };
    let inner = controller.inner.lock().await;
    if let Some(not_leader) = controller.not_leader(&inner) {
        return not_leader;
    }
    let answer = GetNextBrokerIdResponseHeader {
        next_broker_id: inner.node.replicas().next_broker_id(&header.broker_name),
        cluster_name: header.cluster_name,
        broker_name: header.broker_name,
    };
    RemotingCommand::response(response::SUCCESS, None).with_header(&answer)
}

pub(super) async fn apply(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> RemotingCommand {
    let header: ApplyBrokerIdRequestHeader = match request.header() {
        Ok(header) => header,
        Err(e) => {
            return refused(response::SYSTEM_ERROR, format!("CONTROLLER_APPLY_BROKER_ID: {e}"))
        }
    };
    let (cluster, group, id) =
        (&header.cluster_name, &header.broker_name, header.applied_broker_id);
    let address = header.register_check_code.split(';').next().unwrap_or_default().to_owned();
    let proposed = {
        let mut inner = controller.inner.lock().await;
        if let Some(not_leader) = controller.not_leader(&inner) {
            return not_leader;
        }
        match inner.node.replicas().apply_broker_id(cluster, group, id, &address) {
            Err(refusal) => return refused(refusal.code, refusal.remark),
            Ok(None) => None,
            Ok(Some(event)) => match inner.node.propose(&event) {
                Ok(index) => {
                    controller.turn(&mut inner).await;
                    Some(index)
                }
                Err(e) => return refused(code::NOT_LEADER, e.to_string()),
            },
        }
    };
    if let Some(index) = proposed {
        let holds = |replicas: &petrel_core::controller::Replicas| {
            replicas.group(group).and_then(|g| g.brokers.get(&id)) == Some(&address)
        };
        if !controller.applied(index, holds).await {
            let why = format!("broker id {id} of {group} was not committed; ask the leader again");
            return refused(code::NOT_LEADER, why);
        }
    }
    let answer = ApplyBrokerIdResponseHeader {
        cluster_name: header.cluster_name.clone(),
        broker_name: header.broker_name.clone(),
    };
    RemotingCommand::response(response::SUCCESS, None).with_header(&answer)
}
