//! CONTROLLER_GET_NEXT_BROKER_ID (1012) and CONTROLLER_APPLY_BROKER_ID (1013): how a broker of
//! a group takes its id. Both on the raft leader only; an applied id is answered once its
//! event is committed and applied here.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    ApplyBrokerIdRequestHeader, ApplyBrokerIdResponseHeader, GetNextBrokerIdRequestHeader,
    GetNextBrokerIdResponseHeader,
};

use super::{header, Controller};

pub(super) async fn next(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: GetNextBrokerIdRequestHeader = header(&request)?;
    let inner = controller.read().await?;
    let answer = GetNextBrokerIdResponseHeader {
        next_broker_id: inner.node.replicas().next_broker_id(&header.broker_name),
        cluster_name: header.cluster_name,
        broker_name: header.broker_name,
    };
    Ok(RemotingCommand::response(response::SUCCESS, None).with_header(&answer))
}

pub(super) async fn apply(
    controller: Arc<Controller>,
    request: RemotingCommand,
) -> Result<RemotingCommand, Refusal> {
    let header: ApplyBrokerIdRequestHeader = header(&request)?;
    let (cluster, group, id) =
        (&header.cluster_name, &header.broker_name, header.applied_broker_id);
    let address = header.register_check_code.split(';').next().unwrap_or_default();
    let deciding = controller.decide().await?;
    if let Some(event) =
        deciding.inner.node.replicas().apply_broker_id(cluster, group, id, address)?
    {
        controller.replicate(deciding, &event).await?;
    }
    let answer = ApplyBrokerIdResponseHeader {
        cluster_name: header.cluster_name.clone(),
        broker_name: header.broker_name.clone(),
    };
    Ok(RemotingCommand::response(response::SUCCESS, None).with_header(&answer))
}
