//! The metrics endpoint of the broker and the NameServer: Prometheus' text format over HTTP
//! at `/metrics`, enabled as RocketMQ 5 enables its exporter (`metricsExporterType=PROM`,
//! `metricsPromExporterHost`, `metricsPromExporterPort`).
//!
//! The HTTP is the least a scraper needs, written here rather than pulled in as a server
//! crate: one `GET` a connection, its head bounded, answered and closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use petrel_net::signal::Flag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{ConfigError, Properties};

/// RocketMQ's `metricsPromExporterPort` default.
pub const PROM_PORT_DEFAULT: u16 = 5557;
/// A request head longer than this is refused: a scraper's is a few hundred bytes.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

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
        let addr = format!("{host}:{}", self.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
        Ok(Some(listener))
    }
}

/// Serves `render`'s text at `/metrics` on `listener` until `stop` is set.
pub async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    stop: Flag,
) {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?local, "serving metrics at /metrics");
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.wait() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let render = render.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, render.as_ref()).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
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
    mut stream: TcpStream,
    render: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (status, body) = match request_line(&head) {
        Some(("GET", "/metrics")) => ("200 OK", render()),
        Some(("GET", _)) => ("404 Not Found", "metrics are at /metrics\n".to_owned()),
        Some(_) => ("405 Method Not Allowed", "only GET\n".to_owned()),
        None => ("400 Bad Request", "not an HTTP request\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The request's head, up to its blank line; an error past [`HEAD_BYTES_MAX`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
        if head.len() > HEAD_BYTES_MAX {
            return Err(std::io::Error::other("request head too long"));
        }
    }
    Ok(head)
}

/// `(method, path)` of a request's first line, the query left out.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    version.starts_with("HTTP/").then(|| (method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_as_a_scraper_sends_them() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Some(("GET", "/metrics")));
        assert_eq!(request_line(b"POST / HTTP/1.1\r\n\r\n"), Some(("POST", "/")));
        assert_eq!(request_line(b"\x00\x00\x00\x10garbage"), None);
    }
}
