//! `petrel bench churn`: a broker under connection churn. It holds N idle client connections,
//! then opens and closes M rounds of K concurrent connections (each sends one HEART_BEAT, as a
//! client process does first) while one client sends a message at a time and measures each
//! send's latency. The broker's resident memory is read from `/proc/<pid>/status` before, with
//! the idle connections, after each round, and once everything has closed.
//!
//! Against a loopback broker the connections come from many loopback addresses (127.0.0.2 and
//! up, [`PER_SOURCE`] each), so that the broker's per-source limit does not refuse them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use petrel_client::raw::{self, SendOutcome};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use serde::Serialize;

use super::idle::rss_kib;
use super::{latency_histogram, Summary};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChurnBench {
    pub broker: String,
    pub pid: u32,
    /// Connections held idle throughout.
    pub idle: usize,
    pub rounds: usize,
    /// Connections opened at once in each round, then closed.
    pub per_round: usize,
}

/// Resident memory at each step (KiB) and the measuring client's send latency.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub idle: usize,
    pub rounds: usize,
    pub per_round: usize,
    pub baseline_kib: u64,
    pub with_idle_kib: u64,
    /// After each round, its connections closed.
    pub after_round_kib: Vec<u64>,
    /// With every bench connection closed, a second later.
    pub after_kib: u64,
    /// Connections the broker refused or dropped before their heartbeat was answered.
    pub refused: u64,
    pub sends: Summary,
}

/// Connections from one loopback source address, under the broker's default per-source limit.
pub const PER_SOURCE: usize = 500;
const TOPIC: &str = "BenchChurn";
const WAIT: Duration = Duration::from_secs(10);

/// The client of connection `n` of a bench to `broker`: from loopback address
/// 127.0.0.(2 + n / PER_SOURCE) when the broker is on loopback, else from wherever the system
/// routes.
pub fn client_for(broker: &str, n: usize) -> Result<RemotingClient, String> {
    let loopback =
        broker.parse::<SocketAddr>().is_ok_and(|addr| addr.is_ipv4() && addr.ip().is_loopback());
    let mut config = ClientConfig::default();
    if loopback {
        let host = u8::try_from(2 + n / PER_SOURCE)
            .ok()
            .filter(|host| *host < 255)
            .ok_or("too many connections for the loopback addresses")?;
        config.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)));
    }
    Ok(RemotingClient::new(config, None))
}

fn heartbeat(n: usize) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"bench-churn-{n}","consumerDataSet":[],"producerDataSet":[{{"groupName":"BenchChurnProducers"}}]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body)
}

/// Opens connection `n` and has it say hello; `None` if the broker refused it.
async fn open(broker: &str, n: usize) -> Option<RemotingClient> {
    let client = client_for(broker, n).ok()?;
    match client.invoke(broker, heartbeat(n), WAIT).await {
        Ok(reply) if reply.code == response::SUCCESS => Some(client),
        _ => {
            client.shutdown();
            None
        }
    }
}

/// Opens connections `from..to` at once; the ones the broker took, and how many it refused.
async fn open_many(broker: &str, from: usize, to: usize) -> (Vec<RemotingClient>, u64) {
    let tasks: Vec<_> = (from..to)
        .map(|n| {
            let broker = broker.to_owned();
            tokio::spawn(async move { open(&broker, n).await })
        })
        .collect();
    let (mut open, mut refused) = (Vec::with_capacity(to - from), 0);
    for task in tasks {
        match task.await.ok().flatten() {
            Some(client) => open.push(client),
            None => refused += 1,
        }
    }
    (open, refused)
}

/// Sends one message at a time until `stop`, recording each send's latency.
async fn measure(broker: String, stop: Arc<AtomicBool>) -> Summary {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut histogram = latency_histogram();
    let (mut failures, started) = (0, tokio::time::Instant::now());
    let mut id = 0;
    while !stop.load(Ordering::Relaxed) {
        let at = tokio::time::Instant::now();
        id += 1;
        match raw::send(&client, &broker, TOPIC, 0, id, 128).await {
            SendOutcome::Acked { .. } => {
                let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = histogram.record(micros.max(1));
            }
            _ => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Summary::new(&histogram, failures, started.elapsed())
}

pub async fn run(bench: ChurnBench) -> Result<ChurnReport, String> {
    let broker = bench.broker.as_str();
    let admin = RemotingClient::new(ClientConfig::default(), None);
    if !raw::create_topic(&admin, broker, TOPIC, 1).await {
        return Err(format!("cannot create {TOPIC} on {broker}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline_kib = rss_kib(bench.pid)?;
    let (idle, mut refused) = open_many(broker, 0, bench.idle).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_idle_kib = rss_kib(bench.pid)?;

    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(measure(bench.broker.clone(), stop.clone()));
    let mut after_round_kib = Vec::with_capacity(bench.rounds);
    for round in 0..bench.rounds {
        let from = bench.idle + round * bench.per_round;
        let (open, refusals) = open_many(broker, from, from + bench.per_round).await;
        refused += refusals;
        for client in &open {
            client.shutdown();
        }
        drop(open);
        tokio::time::sleep(Duration::from_millis(500)).await;
        after_round_kib.push(rss_kib(bench.pid)?);
    }
    stop.store(true, Ordering::Relaxed);
    let sends = sender.await.map_err(|e| e.to_string())?;
    for client in &idle {
        client.shutdown();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = rss_kib(bench.pid)?;
    Ok(ChurnReport {
        idle: idle.len(),
        rounds: bench.rounds,
        per_round: bench.per_round,
        baseline_kib,
        with_idle_kib,
        after_round_kib,
        after_kib,
        refused,
        sends,
    })
}

impl ChurnReport {
    /// The report as text, or as JSON for scripts.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a report always serializes");
        }
        let ratio = |kib: u64| kib as f64 / self.baseline_kib.max(1) as f64;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let first = self.after_round_kib.first().copied().unwrap_or(self.with_idle_kib);
        let last = self.after_round_kib.last().copied().unwrap_or(self.with_idle_kib);
        let rounds = self.after_round_kib.len();
        let half = rounds / 2;
        let middle = self.after_round_kib.get(half).copied().unwrap_or(first);
        let later_rounds = rounds.saturating_sub(1).saturating_sub(half).max(1);
        let growth = (last as f64 - middle as f64) / later_rounds as f64;
        format!(
            "broker RSS before: {:.1} MiB\n\
             with {} idle connections: {:.1} MiB ({:.2}x before)\n\
             after round 1 of {} ({} connections each): {:.1} MiB ({:.2}x)\n\
             after round {}: {:.1} MiB ({:.2}x); {:+.0} KiB per round over the second half\n\
             all closed: {:.1} MiB ({:.2}x before)\n\
             connections refused: {}\n\
             sends meanwhile: {}\n",
            mib(self.baseline_kib),
            self.idle,
            mib(self.with_idle_kib),
            ratio(self.with_idle_kib),
            self.rounds,
            self.per_round,
            mib(first),
            ratio(first),
            self.rounds,
            mib(last),
            ratio(last),
            growth,
            mib(self.after_kib),
            ratio(self.after_kib),
            self.refused,
            self.sends.render(false),
        )
    }
}
