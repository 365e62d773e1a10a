//! UNREGISTER_BROKER (104): a broker leaves on clean shutdown.
//!
//! Request: `UnRegisterBrokerRequestHeader` (brokerName, brokerAddr, clusterName, brokerId).
//! Response: SUCCESS, also for a broker that was not registered.

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::UnRegisterBrokerRequestHeader;

use super::{Namesrv, Reply};

pub(super) fn handle(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: UnRegisterBrokerRequestHeader = request.header()?;
    namesrv.change_table(|table| {
        table.unregister(&h.cluster_name, &h.broker_addr, &h.broker_name, h.broker_id);
    });
    Ok(RemotingCommand::response(response::SUCCESS, None))
}
