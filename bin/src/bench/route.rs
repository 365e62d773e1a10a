//! `petrel bench route`: how many GET_ROUTEINFO_BY_TOPIC requests a NameServer answers, and how
//! fast, from `connections` connections each with one request in flight.
//!
//! With `--register` it first registers a broker serving the topic (and keeps that connection
//! open, since a NameServer drops a broker whose connection closes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel_core::model::{DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigWrapper};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use petrel_net::transport::{ClientConfig, RemotingClient};

use super::{latency_histogram, Summary};

/// What to run.
#[derive(Debug, Clone)]
pub struct RouteBench {
    pub namesrv: String,
    pub topic: String,
    pub connections: usize,
    pub duration: Duration,
    pub register: bool,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Registers a broker that serves `topic` with 8 queues. Keep the client alive while measuring.
pub async fn register_topic(namesrv: &str, topic: &str) -> Result<RemotingClient, String> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let header = RegisterBrokerRequestHeader {
        broker_name: "bench-broker".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "BenchCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        ..Default::default()
    };
    // A broker's first registration carries its whole table, the default topic included.
    let topics = BTreeMap::from_iter([topic, "TBW102"].map(|name| {
        let config = TopicConfig {
            topic_name: name.to_owned(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            ..TopicConfig::default()
        };
        (name.to_owned(), config)
    }));
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: TopicConfigWrapper {
            data_version: DataVersion { counter: 1, state_version: 0, timestamp: 1 },
            topic_config_table: topics,
        },
    };
    let request = RemotingCommand::request(request::REGISTER_BROKER)
        .with_header(&header)
        .with_body(to_json(&body, JsonStyle::Fastjson));
    let reply =
        client.invoke(namesrv, request, REQUEST_TIMEOUT).await.map_err(|e| e.to_string())?;
    if reply.code != response::SUCCESS {
        return Err(format!(
            "REGISTER_BROKER refused ({}): {}",
            reply.code,
            reply.remark.unwrap_or_default()
        ));
    }
    Ok(client)
}

/// Runs the benchmark and returns its summary.
pub async fn run(bench: RouteBench) -> Result<Summary, String> {
    let _registration = if bench.register {
        Some(register_topic(&bench.namesrv, &bench.topic).await?)
    } else {
        None
    };
    let bench = Arc::new(bench);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..bench.connections {
        let bench = bench.clone();
        workers.push(tokio::spawn(async move { worker(&bench, start).await }));
    }
    let mut histogram = latency_histogram();
    let mut failures = 0;
    for worker in workers {
        let (h, f) = worker.await.unwrap_or_else(|_| (latency_histogram(), 0));
        histogram.add(&h).expect("histograms share bounds");
        failures += f;
    }
    Ok(Summary::new(&histogram, failures, start.elapsed()))
}

async fn worker(bench: &RouteBench, start: Instant) -> (hdrhistogram::Histogram<u64>, u64) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let header =
        GetRouteInfoRequestHeader { topic: bench.topic.clone(), accept_standard_json_only: None };
    let template = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
    let mut histogram = latency_histogram();
    let mut failures = 0;
    while start.elapsed() < bench.duration {
        let sent = Instant::now();
        match client.invoke(&bench.namesrv, template.clone(), REQUEST_TIMEOUT).await {
            Ok(reply) if reply.code == response::SUCCESS => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            _ => failures += 1,
        }
    }
    client.shutdown();
    (histogram, failures)
}
