//! Headers of the NameServer's requests (RocketMQ `protocol/header/namesrv`).

use crate::command_header;

command_header! {
    /// REGISTER_BROKER (103). The body is a `RegisterBrokerBody`.
    pub struct RegisterBrokerRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required ha_server_addr: String = "haServerAddr",
        required broker_id: i64 = "brokerId",
        optional heartbeat_timeout_millis: i64 = "heartbeatTimeoutMillis",
        optional enable_acting_master: bool = "enableActingMaster",
        /// The body is RocketMQ's zlib-compressed binary form instead of JSON.
        optional compressed: bool = "compressed",
        /// CRC32 of the body & 0x7FFFFFFF; 0 or absent skips the check.
        optional body_crc32: i32 = "bodyCrc32",
        /// The broker's zone, sent as an extra field.
        optional zone_name: String = "__ZONE_NAME",
    }
}

command_header! {
    /// The answer to REGISTER_BROKER: the master of a slave, and its HA address.
    pub struct RegisterBrokerResponseHeader {
        optional ha_server_addr: String = "haServerAddr",
        optional master_addr: String = "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104).
    pub struct UnRegisterBrokerRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        required topic: String = "topic",
        /// Ask for standard JSON (quoted integer keys) whatever the version.
        optional accept_standard_json_only: bool = "acceptStandardJsonOnly",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216): from every cluster, or only from `clusterName`.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        required topic: String = "topic",
        optional cluster_name: String = "clusterName",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        required namespace: String = "namespace",
        required key: String = "key",
        required value: String = "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct KvConfigKeyRequestHeader {
        required namespace: String = "namespace",
        required key: String = "key",
    }
}

command_header! {
    /// The answer to GET_KV_CONFIG.
    pub struct GetKvConfigResponseHeader {
        optional value: String = "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKvListByNamespaceRequestHeader {
        required namespace: String = "namespace",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322); the body is the broker's `DataVersion`.
    pub struct QueryDataVersionRequestHeader {
        required broker_name: String = "brokerName",
        required broker_addr: String = "brokerAddr",
        required cluster_name: String = "clusterName",
        required broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// The answer to QUERY_DATA_VERSION.
    pub struct QueryDataVersionResponseHeader {
        required changed: bool = "changed",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        required cluster: String = "cluster",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327).
    pub struct BrokerPermRequestHeader {
        required broker_name: String = "brokerName",
    }
}

command_header! {
    /// The answer to WIPE_WRITE_PERM_OF_BROKER.
    pub struct WipeWritePermResponseHeader {
        required wipe_topic_count: i32 = "wipeTopicCount",
    }
}

command_header! {
    /// The answer to ADD_WRITE_PERM_OF_BROKER.
    pub struct AddWritePermResponseHeader {
        required add_topic_count: i32 = "addTopicCount",
    }
}

command_header! {
    /// BROKER_HEARTBEAT (904): keeps a broker alive without re-sending its topics.
    pub struct BrokerHeartbeatRequestHeader {
        required cluster_name: String = "clusterName",
        required broker_addr: String = "brokerAddr",
        required broker_name: String = "brokerName",
        optional broker_id: i64 = "brokerId",
        optional epoch: i32 = "epoch",
        optional max_offset: i64 = "maxOffset",
        optional confirm_offset: i64 = "confirmOffset",
        /// Spelled this way in RocketMQ.
        optional heartbeat_timeout_mills: i64 = "heartbeatTimeoutMills",
        optional election_priority: i32 = "electionPriority",
    }
}
