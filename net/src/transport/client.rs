//! The client: one connection per address, reused until it closes, with timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Connection, ConnectionConfig, RequestHandler, TransportError};
use crate::codec::RemotingCommand;

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connection: ConnectionConfig,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// The local address to connect from (benches spread load over loopback addresses);
    /// `None`: wherever the system routes. Not honoured in the simulator.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(3),
            local_address: None,
        }
    }
}

/// A remoting client. Connections are made on first use and made again after they close.
pub struct RemotingClient {
    config: ClientConfig,
    handler: Option<Arc<dyn RequestHandler>>,
    connections: Mutex<HashMap<String, Connection>>,
    next_id: AtomicU64,
}

impl RemotingClient {
    /// A client; `handler` serves requests that servers send to it (none for a plain client).
    pub fn new(config: ClientConfig, handler: Option<Arc<dyn RequestHandler>>) -> Self {
        RemotingClient {
            config,
            handler,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open connection to `addr`, connecting if there is none.
    pub async fn connection(&self, addr: &str) -> Result<Connection, TransportError> {
        if let Some(conn) = self.table().get(addr).filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let connect = connect(addr, self.config.local_address);
        let stream = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(TransportError::Connect { addr: addr.to_owned(), source })
            }
            Err(_) => {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(TransportError::Connect { addr: addr.to_owned(), source });
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = stream
            .peer_addr()
            .map_err(|source| TransportError::Connect { addr: addr.to_owned(), source })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Connection::spawn(
            id,
            peer,
            stream,
            self.config.connection.clone(),
            self.handler.clone(),
            |_| {},
        );
        let mut table = self.table();
        // Another task may have connected meanwhile: keep one connection per address.
        if let Some(existing) = table.get(addr).filter(|c| !c.is_closed()) {
            conn.close();
            return Ok(existing.clone());
        }
        table.insert(addr.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Sends `request` to `addr` and waits up to `timeout` for the response.
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, TransportError> {
        let conn = self.connection(addr).await?;
        let result = conn.invoke(request, timeout).await;
        if matches!(result, Err(TransportError::Timeout { .. })) {
            // A partition stalls a socket without failing it: start afresh next time.
            self.close(addr);
        }
        result
    }

    /// Sends `request` to `addr` without waiting for any response.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<(), TransportError> {
        self.connection(addr).await?.invoke_oneway(request).await
    }

    /// Closes the connection to `addr`, if any.
    pub fn close(&self, addr: &str) {
        if let Some(conn) = self.table().remove(addr) {
            conn.close();
        }
    }

    /// Closes every connection.
    pub fn shutdown(&self) {
        for (_, conn) in self.table().drain() {
            conn.close();
        }
    }
}

#[cfg(not(madsim))]
async fn connect(addr: &str, local: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local) = local else { return TcpStream::connect(addr).await };
    let mut last = None;
    for remote in tokio::net::lookup_host(addr).await? {
        let socket = match remote {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        match socket.connect(remote).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} names no address"))))
}

#[cfg(madsim)]
async fn connect(addr: &str, _local: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    TcpStream::connect(addr).await
}
