//! `petrel bench idle`: the broker's resident memory with many idle client connections and
//! with many held (long-polling) pull requests, read from `/proc/<pid>/status` of the broker
//! process and compared with its own baseline in the same run.
//!
//! Each connection sends one HEART_BEAT as a producer, so the broker tracks it as a client;
//! each held pull asks an empty queue with a 60 s suspend, and the broker's runtime info is
//! read to confirm that all of them are really held before memory is measured. Against a
//! loopback broker the connections come from many loopback addresses, as `churn`'s do.

use std::time::Duration;

use petrel_client::raw;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::CreateTopicRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};
use serde::Serialize;

use super::runtime_counter;

/// What to measure.
#[derive(Debug, Clone)]
pub struct IdleBench {
    pub broker: String,
    pub pid: u32,
    pub connections: usize,
    pub held_pulls: usize,
}

/// Resident memory at each step, in KiB.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    pub held_pulls: usize,
    pub baseline_kib: u64,
    pub with_connections_kib: u64,
    pub with_held_pulls_kib: u64,
}

const TOPIC: &str = "BenchIdle";
const WAIT: Duration = Duration::from_secs(10);

pub(super) fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

fn heartbeat(n: usize) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"bench-idle-{n}","consumerDataSet":[],"producerDataSet":[{{"groupName":"BenchIdleProducers"}}]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body)
}

pub async fn run(bench: IdleBench) -> Result<IdleReport, String> {
    let broker = bench.broker.as_str();
    let admin = RemotingClient::new(ClientConfig::default(), None);
    let create = CreateTopicRequestHeader {
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        ..CreateTopicRequestHeader::default()
    };
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&create);
    let reply = admin.invoke(broker, create, WAIT).await.map_err(|e| e.to_string())?;
    if reply.code != response::SUCCESS {
        return Err(format!("cannot create {TOPIC}: {:?}", reply.remark));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_kib = rss_kib(bench.pid)?;

    let mut clients = Vec::with_capacity(bench.connections);
    for n in 0..bench.connections {
        let client = super::churn::client_for(broker, n)?;
        let reply = client.invoke(broker, heartbeat(n), WAIT).await.map_err(|e| e.to_string())?;
        if reply.code != response::SUCCESS {
            return Err(format!("heartbeat {n} refused: {:?}", reply.remark));
        }
        clients.push(std::sync::Arc::new(client));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_connections_kib = rss_kib(bench.pid)?;

    let mut pulls = Vec::new();
    for (n, client) in clients.iter().take(bench.held_pulls).enumerate() {
        let (client, broker) = (client.clone(), bench.broker.clone());
        pulls.push(tokio::spawn(async move {
            let hold = Duration::from_secs(60);
            let queue = (n % 4) as i32;
            raw::pull(&client, &broker, "BenchIdleGroup", TOPIC, queue, 0, hold).await
        }));
    }
    let expected = bench.held_pulls.min(clients.len()) as u64;
    let deadline = tokio::time::Instant::now() + WAIT;
    while runtime_counter(&admin, broker, "pullHeldRequests").await? < expected {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the broker did not hold {expected} pulls within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_held_pulls_kib = rss_kib(bench.pid)?;
    for pull in pulls {
        pull.abort();
    }
    for client in &clients {
        client.shutdown();
    }
    Ok(IdleReport {
        connections: clients.len(),
        held_pulls: expected as usize,
        baseline_kib,
        with_connections_kib,
        with_held_pulls_kib,
    })
}

impl IdleReport {
    /// The report as text, or as JSON for scripts.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        let per = |delta: u64, n: usize| if n == 0 { 0.0 } else { delta as f64 / n as f64 };
        let connections = self.with_connections_kib.saturating_sub(self.baseline_kib);
        let held = self.with_held_pulls_kib.saturating_sub(self.with_connections_kib);
        let ratio = |kib: u64| kib as f64 / self.baseline_kib.max(1) as f64;
        format!(
            "broker RSS, idle: {} KiB\n\
             with {} idle client connections: {} KiB ({:.2}x idle; {:.1} KiB per connection)\n\
             with {} held pulls as well: {} KiB ({:.2}x idle; {:.1} KiB per held pull)\n",
            self.baseline_kib,
            self.connections,
            self.with_connections_kib,
            ratio(self.with_connections_kib),
            per(connections, self.connections),
            self.held_pulls,
            self.with_held_pulls_kib,
            ratio(self.with_held_pulls_kib),
            per(held, self.held_pulls),
        )
    }
}
