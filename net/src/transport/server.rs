//! The server: accept loop, bounded connections, graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
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
    /// How long shutdown waits for connections to finish what they are writing.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            connection: ConnectionConfig::default(),
            connections_max: 10_000,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    handle: ServerHandle,
}

/// Reaches the connections of a running server: to close one, or send a request to a client.
#[derive(Clone, Default)]
pub struct ServerHandle {
    connections: Arc<Mutex<HashMap<ConnId, Connection>>>,
}

impl ServerHandle {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Connection>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open connection with this id.
    pub fn connection(&self, id: ConnId) -> Option<Connection> {
        self.table().get(&id).cloned()
    }

    /// Closes one connection; unknown ids are ignored.
    pub fn close(&self, id: ConnId) {
        if let Some(conn) = self.connection(id) {
            conn.close();
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.table().len()
    }
}

impl Server {
    /// Binds `addr` ("0.0.0.0:9876").
    pub async fn bind(addr: &str, config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
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
        if self.handle.connection_count() >= self.config.connections_max {
            tracing::warn!(%peer, max = self.config.connections_max, "too many connections, refusing one");
            drop(stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        let handle = self.handle.clone();
        // Hold the table while spawning: the close callback takes the same lock, so its removal
        // always comes after this insert, even for a connection that closes at once.
        let mut table = self.handle.table();
        let conn = Connection::spawn(
            id,
            peer,
            stream,
            self.config.connection.clone(),
            Some(handler.clone()),
            move |conn| {
                handle.table().remove(&conn.id());
            },
        );
        table.insert(id, conn);
    }

    async fn drain(self) {
        drop(self.listener);
        let open: Vec<Connection> = self.handle.table().values().cloned().collect();
        for conn in &open {
            conn.close();
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while self.handle.connection_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
