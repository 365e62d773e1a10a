//! petrel-sim: deterministic simulation of Petrel clusters under madsim.
//!
//! The pieces here are the simulated cluster's actors (brokers that register with a NameServer
//! on a timer, clients that read routes), the [`scenarios`], and the [`runner`] behind `cargo
//! sim`. Scenarios and runner are built only with `--cfg madsim`, where madsim drives the
//! network, the clock and the randomness from one seed.

pub use petrel_client::raw as workload;

#[cfg(madsim)]
pub mod checkers;
#[cfg(madsim)]
pub mod clients;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod controllers;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod registers;
pub mod report;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod scenarios;
#[cfg(madsim)]
pub mod stores;
pub mod trace;

use std::collections::BTreeSet;
use std::time::Duration;

use petrel_core::model::{
    BrokerData, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigWrapper, TopicRouteData,
};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use petrel_net::transport::{ClientConfig, RemotingClient};

/// How often a broker re-registers (RocketMQ `registerNameServerPeriod`).
pub const REGISTER_PERIOD: Duration = Duration::from_secs(30);

/// How long a simulated request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A simulated broker's identity and topics.
#[derive(Debug, Clone)]
pub struct SimBroker {
    pub cluster: String,
    pub name: String,
    pub addr: String,
    pub topics: Vec<String>,
}

impl SimBroker {
    /// Its REGISTER_BROKER request: its topics, at a data version that never changes.
    pub fn registration(&self) -> RemotingCommand {
        let header = RegisterBrokerRequestHeader {
            broker_name: self.name.clone(),
            broker_addr: self.addr.clone(),
            cluster_name: self.cluster.clone(),
            ha_server_addr: self.addr.clone(),
            broker_id: 0,
            ..Default::default()
        };
        let table = self
            .topics
            .iter()
            .map(|t| (t.clone(), TopicConfig { topic_name: t.clone(), ..TopicConfig::default() }))
            .collect();
        let body = RegisterBrokerBody {
            filter_server_list: Vec::new(),
            topic_config_serialize_wrapper: TopicConfigWrapper {
                data_version: DataVersion { counter: 1, state_version: 0, timestamp: 1 },
                topic_config_table: table,
            },
        };
        RemotingCommand::request(request::REGISTER_BROKER)
            .with_header(&header)
            .with_body(to_json(&body, JsonStyle::Fastjson))
    }

    /// Registers with `namesrv` now and every [`REGISTER_PERIOD`], forever. Failures are
    /// logged and retried at the next period, as a RocketMQ broker does.
    pub async fn register_forever(self, namesrv: String) {
        let client = RemotingClient::new(ClientConfig::default(), None);
        loop {
            match client.invoke(&namesrv, self.registration(), REQUEST_TIMEOUT).await {
                Ok(reply) if reply.code == response::SUCCESS => {
                    tracing::debug!(broker = %self.name, "registered");
                }
                Ok(reply) => {
                    tracing::warn!(broker = %self.name, code = reply.code, remark = ?reply.remark, "registration refused")
                }
                Err(e) => tracing::debug!(broker = %self.name, error = %e, "registration failed"),
            }
            tokio::time::sleep(REGISTER_PERIOD).await;
        }
    }
}

/// What a client sees of a topic's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteView {
    /// The NameServer answered with these broker names.
    Brokers(BTreeSet<String>),
    /// The NameServer knows no live broker for the topic.
    NoRoute,
    /// The NameServer did not answer.
    Unreachable,
}

/// Asks `namesrv` for the route of `topic`.
pub async fn read_route(client: &RemotingClient, namesrv: &str, topic: &str) -> RouteView {
    let header =
        GetRouteInfoRequestHeader { topic: topic.to_owned(), accept_standard_json_only: None };
    let request = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
    match client.invoke(namesrv, request, REQUEST_TIMEOUT).await {
        Ok(reply) if reply.code == response::SUCCESS => {
            match from_json::<TopicRouteData>(&reply.body) {
                Ok(route) => RouteView::Brokers(brokers_of(&route.broker_datas)),
                Err(e) => panic!("the NameServer sent a route that does not parse: {e}"),
            }
        }
        Ok(reply) if reply.code == response::TOPIC_NOT_EXIST => RouteView::NoRoute,
        Ok(reply) => {
            panic!("unexpected answer {} to GET_ROUTEINFO_BY_TOPIC: {:?}", reply.code, reply.remark)
        }
        Err(_) => RouteView::Unreachable,
    }
}

fn brokers_of(datas: &[BrokerData]) -> BTreeSet<String> {
    datas.iter().map(|b| b.broker_name.clone()).collect()
}

/// Broker names for scenarios: `broker-0`, `broker-1`, ...
pub fn broker_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("broker-{i}")).collect()
}

/// A SYNC_FLUSH broker for scenarios: advertised at `ip`, registered with `namesrv`, its store
/// under `/store` of its simulated disk, with small files so that scenarios roll them.
pub fn sim_broker_config(name: &str, ip: &str, namesrv: &str) -> petrel::broker::BrokerConfig {
    let mut config = petrel::broker::BrokerConfig {
        broker_name: name.to_owned(),
        broker_ip: Some(ip.to_owned()),
        namesrv_addrs: vec![namesrv.to_owned()],
        ..petrel::broker::BrokerConfig::default()
    };
    let store = &mut config.store;
    store.root = std::path::PathBuf::from("/store");
    store.flush_disk_type = petrel_storage::FlushDiskType::SyncFlush;
    store.commit_log_file_bytes = 64 << 10;
    store.message_bytes_max = 16 << 10;
    store.cq_file_units = 64;
    store.max_hash_slots = 64;
    store.max_index_entries = 256;
    config
}

/// A fault-free simulated disk for a NameServer that keeps its KV config in memory (it is
/// never written). Its seed is fixed, so that taking one draws nothing from the run's seed.
pub fn memory_disk() -> std::sync::Arc<dyn petrel_storage::disk::Disk> {
    let faults = petrel_storage::disk::SimDiskFaults::default();
    std::sync::Arc::new(petrel_storage::disk::SimDisk::new(0, 1 << 20, faults))
}

/// Starts a NameServer node at 10.0.0.1:9876, the address every scenario's nodes use.
#[cfg(madsim)]
pub fn spawn_namesrv(handle: &madsim::runtime::Handle) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name("namesrv")
        .ip([10, 0, 0, 1].into())
        .init(|| async {
            let config = petrel::namesrv::NamesrvConfig::default();
            let _running =
                petrel::namesrv::start(config, memory_disk()).await.expect("the namesrv starts");
            std::future::pending::<()>().await;
        })
        .build()
}
