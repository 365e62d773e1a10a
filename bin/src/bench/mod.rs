//! `petrel bench`: load generators that measure Petrel over real sockets.
//!
//! - `route`: GET_ROUTEINFO_BY_TOPIC against a NameServer from many connections.
//! - `idle`: a broker's memory with many idle connections and held pulls.
//! - `churn`: a broker's memory and a client's send latency while connections come and go.
//! - `producer`: send TPS and latency through `petrel-client`'s producer.
//! - `check-back`: sends/s while the broker checks many unresolved transactions.
//! - `timer`: timer messages sent and delivered per second with many pending, how late, and
//!   the broker's memory.
//! - `consumer`, `e2e`: receive TPS, and produce-to-consume latency at a fixed rate.
//! - `filter`: a queue read whole through TAG and SQL92 filters, against the unfiltered read.
//! - `store`: the store's appends and recovery against this disk's own ceiling.
//! - `send`, `floor-server`: raw sends through brokers it starts, as ratios to the transport
//!   floor measured with the same client in the same run, with allocations per send.
//! - `replication`: sends to masters with slaves against a lone master, and an empty slave's
//!   catch-up against this disk's sequential-write ceiling.

pub mod check_back;
pub mod churn;
pub mod consume;
pub mod filter;
pub mod idle;
pub mod producer;
pub mod replication;
pub mod route;
pub mod send;
pub mod store;
pub mod timer;

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latency percentiles and rate of one run, printed as a table or JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub failures: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
}

impl Summary {
    pub fn new(histogram: &Histogram<u64>, failures: u64, elapsed: Duration) -> Summary {
        let seconds = elapsed.as_secs_f64();
        let requests = histogram.len();
        Summary {
            requests,
            failures,
            seconds,
            requests_per_second: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
            latency_p50_us: histogram.value_at_quantile(0.50),
            latency_p99_us: histogram.value_at_quantile(0.99),
            latency_p999_us: histogram.value_at_quantile(0.999),
            latency_max_us: histogram.max(),
        }
    }

    /// The summary as one line of text, or as JSON for scripts.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).expect("a summary always serializes");
        }
        format!(
            "requests {} | failures {} | {:.1} s | {:.0} req/s | p50 {:.2} ms | p99 {:.2} ms | p999 {:.2} ms | max {:.2} ms",
            self.requests,
            self.failures,
            self.seconds,
            self.requests_per_second,
            self.latency_p50_us as f64 / 1000.0,
            self.latency_p99_us as f64 / 1000.0,
            self.latency_p999_us as f64 / 1000.0,
            self.latency_max_us as f64 / 1000.0,
        )
    }
}

/// One counter of a broker's GET_BROKER_RUNTIME_INFO table (`allocations`, `pullHeldRequests`).
pub async fn runtime_counter(
    client: &petrel_net::transport::RemotingClient,
    broker: &str,
    key: &str,
) -> Result<u64, String> {
    use petrel_net::codec::{codes::request, json::from_json, RemotingCommand};
    let info = RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO);
    let reply =
        client.invoke(broker, info, Duration::from_secs(3)).await.map_err(|e| e.to_string())?;
    let table: petrel_core::model::KvTable =
        from_json(&reply.body_bytes()).map_err(|e| format!("runtime info: {e}"))?;
    let value = table.table.get(key).ok_or_else(|| format!("runtime info lacks {key}"))?;
    value.parse().map_err(|e| format!("runtime info {key}={value:?}: {e}"))
}

/// A histogram of microseconds from 1 µs to 60 s at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}
