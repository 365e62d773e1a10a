//! The metadata RocketMQ exchanges as JSON: topic configs, data versions and route data.
//!
//! Field names are RocketMQ's Java field names, and fields are declared in alphabetical order
//! because fastjson, which writes these bodies on the Java side, emits them in that order.
//! Parsing is lenient (`#[serde(default)]`): peers of many versions send subsets of these fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Permission bits of a topic or a broker (RocketMQ `PermName`).
pub mod perm {
    /// The topic is a priority topic.
    pub const PRIORITY: i32 = 0x8;
    /// Consumers may read.
    pub const READ: i32 = 0x4;
    /// Producers may write.
    pub const WRITE: i32 = 0x2;
    /// The topic inherits permissions.
    pub const INHERIT: i32 = 0x1;

    /// True when `perm` lets producers write.
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    /// True when `perm` lets consumers read.
    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }
}

/// The broker id of a master; slaves have ids from 1 up.
pub const MASTER_ID: i64 = 0;

/// A broker's version of its metadata: it changes whenever a topic is created, updated or
/// deleted, so the NameServer can skip re-reading an unchanged topic table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    pub counter: i64,
    pub state_version: i64,
    pub timestamp: i64,
}

/// One topic as a broker configures it (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub attributes: BTreeMap<String, String>,
    pub order: bool,
    pub perm: i32,
    pub read_queue_nums: i32,
    pub topic_filter_type: String,
    pub topic_name: String,
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: perm::READ | perm::WRITE,
            read_queue_nums: 16,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

/// A broker's queues of one topic, as the route lists them (`QueueData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    pub perm: i32,
    pub read_queue_nums: i32,
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

/// The addresses of one broker group: id 0 is the master, 1.. the slaves (`BrokerData`).
///
/// `broker_addrs` has integer keys; on the wire old clients expect them unquoted (see
/// `petrel_net::codec::json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    pub cluster: String,
    pub enable_acting_master: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

/// What GET_ROUTEINFO_BY_TOPIC answers (`TopicRouteData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
}

impl TopicRouteData {
    /// The master address of each broker group that has one, in the route's order.
    pub fn master_addrs(&self) -> impl Iterator<Item = &String> {
        self.broker_datas.iter().filter_map(|b| b.broker_addrs.get(&MASTER_ID))
    }
}

/// What GET_BROKER_CLUSTER_INFO answers (`ClusterInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// A list of topic names (`TopicList`), the body of GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    pub topic_list: Vec<String>,
}

/// A string table (`KVTable`), the body of GET_KVLIST_BY_NAMESPACE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvTable {
    pub table: BTreeMap<String, String>,
}

/// A broker's topic table with its version (`TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigWrapper {
    pub data_version: DataVersion,
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// The body of REGISTER_BROKER (`RegisterBrokerBody`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigWrapper,
}
