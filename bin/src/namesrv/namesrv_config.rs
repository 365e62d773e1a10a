//! GET_NAMESRV_CONFIG (319): the configuration the NameServer runs with, as Java properties
//! text in RocketMQ's names (mqadmin getNamesrvConfig).

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;

use super::Namesrv;

pub(super) fn get(namesrv: &Namesrv) -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None)
        .with_body(namesrv.config.to_properties().into_bytes())
}
