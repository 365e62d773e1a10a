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

command_header! {
    /// CONTROLLER_GET_NEXT_BROKER_ID (1012): the id a new broker of the group would take.
    pub struct GetNextBrokerIdRequestHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
    }
}

command_header! {
    /// The answer to CONTROLLER_GET_NEXT_BROKER_ID.
    pub struct GetNextBrokerIdResponseHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        required next_broker_id: i64 = "nextBrokerId",
    }
}

command_header! {
    /// CONTROLLER_APPLY_BROKER_ID (1013): a broker takes an id; `registerCheckCode` is
    /// `address;millis`.
    pub struct ApplyBrokerIdRequestHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        required applied_broker_id: i64 = "appliedBrokerId",
        required register_check_code: String = "registerCheckCode",
    }
}

command_header! {
    /// The answer to CONTROLLER_APPLY_BROKER_ID.
    pub struct ApplyBrokerIdResponseHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
    }
}
