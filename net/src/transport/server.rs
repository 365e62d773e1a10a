//! The server: accept loop, bounded connections, graceful shutdown.
//!
//! Connections are bounded three ways: in all (`connections_max`), per source address
//! (`connections_per_source_max`), and by a reserve: the last tenth of the budget goes only to
//! sources holding fewer than [`RESERVE_SOURCE_HOLDS_MAX`] connections, so that one source
//! (or a few) filling the server cannot lock out a client that holds one connection. Idle
//! connections and peers trickling a frame byte by byte are closed by the connection itself
//! (`ConnectionConfig::idle_timeout`, `frame_read_timeout`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{ConnId, Connection, ConnectionConfig, RequestHandler};

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub connection: ConnectionConfig,
    /// Open connections at once; one more is accepted and closed at once, with a warning.
    pub connections_max: usize,
    /// Open connections from one source address at once.
    pub connections_per_source_max: usize,
    /// How long shutdown waits for connections to finish what they are writing.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            connection: ConnectionConfig {
                idle_timeout: Some(Duration::from_secs(120)),
                frame_read_timeout: Some(Duration::from_secs(30)),
                ..ConnectionConfig::default()
            },
            connections_max: 10_000,
            connections_per_source_max: 1_000,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// In the reserved share of the connection budget, a source is admitted only while it holds
/// fewer connections than this: a client process holds one per broker.
pub const RESERVE_SOURCE_HOLDS_MAX: usize = 8;

/// The listen backlog asked of the kernel (which caps it at `net.core.somaxconn`): a burst of
/// connects beyond the backlog waits for the client's SYN retry, a second or more.
#[cfg(not(madsim))]
const LISTEN_BACKLOG: u32 = 4096;

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    handle: ServerHandle,
}

/// Reaches the connections of a running server: to close one, or send a request to a client.
#[derive(Clone, Default)]
pub struct ServerHandle {
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    connections: HashMap<ConnId, Connection>,
    /// Open connections per source address; no entry for a source with none.
    sources: HashMap<IpAddr, usize>,
    /// Connections refused since the last warning, which says how many.
    refused: u64,
    last_warning: Option<tokio::time::Instant>,
}

impl Table {
    /// Why a connection from `source` is refused, if it is.
    fn refusal(&self, source: IpAddr, config: &ServerConfig) -> Option<&'static str> {
        let open = self.connections.len();
        let held = self.sources.get(&source).copied().unwrap_or(0);
        let reserve = config.connections_max / 10;
        if open >= config.connections_max {
            Some("serverChannelMaxConnections")
        } else if held >= config.connections_per_source_max {
            Some("serverChannelMaxConnectionsPerSource")
        } else if open >= config.connections_max - reserve && held >= RESERVE_SOURCE_HOLDS_MAX {
            Some("the share of serverChannelMaxConnections kept for sources with few connections")
        } else {
            None
        }
    }

    fn remove(&mut self, id: ConnId, source: IpAddr) {
        if self.connections.remove(&id).is_none() {
            return;
        }
        if let Some(held) = self.sources.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                self.sources.remove(&source);
            }
        }
    }
}

impl ServerHandle {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open connection with this id.
    pub fn connection(&self, id: ConnId) -> Option<Connection> {
        self.table().connections.get(&id).cloned()
    }

    /// Closes one connection; unknown ids are ignored.
    pub fn close(&self, id: ConnId) {
        if let Some(conn) = self.connection(id) {
            conn.close();
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.table().connections.len()
    }
}

impl Server {
    /// Binds `addr` ("0.0.0.0:9876").
    pub async fn bind(addr: &str, config: ServerConfig) -> io::Result<Server> {
        let listener = listen(addr).await?;
        Ok(Server { listener, config, handle: ServerHandle::default() })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes every connection and
    /// waits up to the grace period for their queued responses to go out.
    pub async fn serve(self, handler: Arc<dyn RequestHandler>, shutdown: impl Future<Output = ()>) {
        let mut next_id: ConnId = 1;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                accepted = self.listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.admit(next_id, stream, peer, &handler);
                    next_id += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        self.drain().await;
    }

    fn admit(
        &self,
        id: ConnId,
        stream: TcpStream,
        peer: SocketAddr,
        handler: &Arc<dyn RequestHandler>,
    ) {
        let source = peer.ip();
        // Hold the table while spawning: the close callback takes the same lock, so its removal
        // always comes after this insert, even for a connection that closes at once.
        let mut table = self.handle.table();
        if let Some(limit) = table.refusal(source, &self.config) {
            refused(&mut table, peer, limit);
            drop(stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        let handle = self.handle.clone();
        let conn = Connection::spawn(
            id,
            peer,
            stream,
            self.config.connection.clone(),
            Some(handler.clone()),
            move |conn| handle.table().remove(conn.id(), source),
        );
        table.connections.insert(id, conn);
        *table.sources.entry(source).or_insert(0) += 1;
    }

    async fn drain(self) {
        drop(self.listener);
        let open: Vec<Connection> = self.handle.table().connections.values().cloned().collect();
        for conn in &open {
            conn.close();
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while self.handle.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Logs a refused connection: the first at once, then at most one warning a second, each
/// saying how many were refused since the last.
fn refused(table: &mut Table, peer: SocketAddr, limit: &str) {
    table.refused += 1;
    let now = tokio::time::Instant::now();
    if table.last_warning.is_some_and(|at| now < at + Duration::from_secs(1)) {
        return;
    }
    let open = table.connections.len();
    let from_source = table.sources.get(&peer.ip()).copied().unwrap_or(0);
    tracing::warn!(
        %peer, open, from_source, refused = table.refused,
        "connection refused: {limit} reached (the count is of refusals since the last warning)"
    );
    table.refused = 0;
    table.last_warning = Some(now);
}

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (tokio's `bind` asks for 128).
#[cfg(not(madsim))]
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// The simulator's listener: madsim has no backlog to set.
#[cfg(madsim)]
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
