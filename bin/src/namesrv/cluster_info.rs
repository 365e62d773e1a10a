//! GET_BROKER_CLUSTER_INFO (106): every cluster and broker group.
//!
//! Request: no fields. Response: a `ClusterInfo` body in fastjson's form (unquoted integer keys),
//! which RocketMQ sends whatever the client's version.

use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;

use super::{ok_with_body, Namesrv};

pub(super) fn handle(namesrv: &Namesrv) -> RemotingCommand {
    ok_with_body(to_json(&namesrv.table().cluster_info(), JsonStyle::Fastjson))
}
