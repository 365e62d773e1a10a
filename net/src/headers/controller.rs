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

command_header! {
    /// CONTROLLER_REGISTER_BROKER (1003): a broker that holds its id joins its group.
    pub struct RegisterBrokerToControllerRequestHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        required broker_id: i64 = "brokerId",
        required broker_address: String = "brokerAddress",
        optional invoke_time: i64 = "invokeTime",
    }
}

command_header! {
    /// The answer to CONTROLLER_REGISTER_BROKER: the master while it lives; the body is the
    /// group's `SyncStateSet`.
    pub struct RegisterBrokerToControllerResponseHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        optional master_broker_id: i64 = "masterBrokerId",
        optional master_address: String = "masterAddress",
        optional master_epoch: i32 = "masterEpoch",
        optional sync_state_set_epoch: i32 = "syncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO (1004).
    pub struct GetReplicaInfoRequestHeader {
        required broker_name: String = "brokerName",
    }
}

command_header! {
    /// The answer to CONTROLLER_GET_REPLICA_INFO; the body is the group's `SyncStateSet`.
    pub struct GetReplicaInfoResponseHeader {
        optional master_broker_id: i64 = "masterBrokerId",
        optional master_address: String = "masterAddress",
        optional master_epoch: i32 = "masterEpoch",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER (1002): from a broker that found no master (`designateElect`
    /// false) or from an operator naming `brokerId` (true).
    pub struct ElectMasterRequestHeader {
        required cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        required broker_id: i64 = "brokerId",
        required designate_elect: bool = "designateElect",
        optional invoke_time: i64 = "invokeTime",
    }
}

command_header! {
    /// The answer to CONTROLLER_ELECT_MASTER; the body is an `ElectMasterResponseBody`.
    pub struct ElectMasterResponseHeader {
        optional master_broker_id: i64 = "masterBrokerId",
        optional master_address: String = "masterAddress",
        optional master_epoch: i32 = "masterEpoch",
        optional sync_state_set_epoch: i32 = "syncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET (1001) from a group's master; the body is the proposed
    /// `SyncStateSet` with the set epoch the master last saw.
    pub struct AlterSyncStateSetRequestHeader {
        required broker_name: String = "brokerName",
        required master_broker_id: i64 = "masterBrokerId",
        required master_epoch: i32 = "masterEpoch",
        optional invoke_time: i64 = "invokeTime",
    }
}

command_header! {
    /// The answer to CONTROLLER_ALTER_SYNC_STATE_SET.
    pub struct AlterSyncStateSetResponseHeader {
        required new_sync_state_set_epoch: i32 = "newSyncStateSetEpoch",
    }
}

command_header! {
    /// CLEAN_BROKER_DATA (1011): an operator forgets brokers (`a;b` ids) or a whole group.
    pub struct CleanControllerBrokerDataRequestHeader {
        optional cluster_name: String = "clusterName",
        required broker_name: String = "brokerName",
        optional broker_controller_ids_to_clean: String = "brokerControllerIdsToClean",
        optional is_clean_living_broker: bool = "isCleanLivingBroker",
        optional invoke_time: i64 = "invokeTime",
    }
}

command_header! {
    /// NOTIFY_BROKER_ROLE_CHANGED (1008), controller → broker, oneway; the body is the
    /// group's `SyncStateSet`.
    pub struct NotifyBrokerRoleChangedRequestHeader {
        optional master_address: String = "masterAddress",
        optional master_epoch: i32 = "masterEpoch",
        optional sync_state_set_epoch: i32 = "syncStateSetEpoch",
        optional master_broker_id: i64 = "masterBrokerId",
    }
}
