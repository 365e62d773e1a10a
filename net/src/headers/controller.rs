//! Headers of the controller's requests (RocketMQ `protocol/header/controller`).

use crate::command_header;

command_header! {
    /// The answer to CONTROLLER_GET_METADATA_INFO (1005): the raft group, its leader as this
    /// controller knows it, and the peers (`id:address;` each).
    pub struct GetMetaDataResponseHeader {
        required group: String = "group",
        required controller_leader_id: String = "controllerLeaderId",
        required controller_leader_address: String = "controllerLeaderAddress",
        required is_leader: bool = "isLeader",
        required peers: String = "peers",
    }
}
