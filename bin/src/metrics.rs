//! The broker's metrics endpoint: Prometheus' text format over HTTP
//! at `/metrics`, enabled as RocketMQ 5 enables its exporter (`metricsExporterType=PROM`,
//! `metricsPromExporterHost`, `metricsPromExporterPort`).
//!
//! The HTTP is `crate::http`'s: one request a connection, its head bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petrel_net::signal::Flag;
use tokio::net::{TcpListener, TcpStream};

use crate::config::{ConfigError, Properties};

/// RocketMQ's `metricsPromExporterPort` default.
pub const PROM_PORT_DEFAULT: u16 = 5557;

/// Whether and where metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metricsExporterType`: DISABLE (the default) or PROM.
    pub prom: bool,
    /// `metricsPromExporterHost`: empty for the server's bind address.
    pub host: String,
    /// `metricsPromExporterPort`.
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { prom: false, host: String::new(), port: PROM_PORT_DEFAULT }
    }
}

impl MetricsConfig {
    pub fn apply(&mut self, props: &mut Properties) -> Result<(), ConfigError> {
        let mut kind = if self.prom { "PROM" } else { "DISABLE" }.to_owned();
        props.apply("metricsExporterType", &mut kind, "DISABLE or PROM")?;
        self.prom = match kind.as_str() {
            "PROM" => true,
            "DISABLE" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "metricsExporterType".into(),
                    value: kind,
                    expected: "DISABLE or PROM (Petrel exports Prometheus' format only)",
                })
            }
        };
        props.apply("metricsPromExporterHost", &mut self.host, "an address")?;
        props.apply("metricsPromExporterPort", &mut self.port, "a port number")
    }

    /// Binds the endpoint when enabled; `bind_address` when no host is set.
    pub async fn bind(&self, bind_address: &str) -> Result<Option<TcpListener>, String> {
        if !self.prom {
            return Ok(None);
        }
        let host = if self.host.is_empty() { bind_address } else { &self.host };
        let addr = match host.contains(':') {
            true => format!("[{host}]:{}", self.port),
            false => format!("{host}:{}", self.port),
        };
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
        Ok(Some(listener))
    }
}

/// Requests served at once; a connection past them is closed at once, so a flood of slow
/// requests cannot take the file descriptors the broker's clients and files need.
const REQUESTS_AT_ONCE: usize = 8;

/// Serves `render`'s text at `/metrics` on `listener` until `stop` is set.
pub async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    stop: Flag,
) {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?local, "serving metrics at /metrics");
    let slots = Arc::new(tokio::sync::Semaphore::new(REQUESTS_AT_ONCE));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let render = render.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, render.as_ref()).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    stream: TcpStream,
    render: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let Some((mut stream, request)) = crate::http::read_request(stream).await? else {
        return Ok(());
    };
    let (status, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/metrics") => ("200 OK", render()),
        ("GET", _) => ("404 Not Found", "metrics are at /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    crate::http::respond(&mut stream, status, kind, body.as_bytes()).await
}
