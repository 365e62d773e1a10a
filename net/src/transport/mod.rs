//! The remoting transport on tokio (madsim's tokio in simulation builds): framed connections,
//! the server's accept loop, and the request/response client.
//!
//! A [`Connection`] is symmetric: either side may send requests and answer them. Each has one
//! reader task (decode frames, match responses to waiting requests by `opaque`, hand requests
//! to the handler) and one writer task (encode, batch, flush; madsim sends only on flush).
//! Every queue is bounded: the send queue, the requests in flight per connection, the
//! connections per server. A malformed frame closes its connection and nothing else.

mod client;
mod connection;
mod server;

use std::future::Future;
use std::pin::Pin;

pub use client::{ClientConfig, RemotingClient};
pub use connection::{ConnId, Connection, ConnectionConfig};
pub use server::{listen, Server, ServerConfig, ServerHandle, RESERVE_SOURCE_HOLDS_MAX};

use crate::codec::codes::response;
use crate::codec::{FrameError, RemotingCommand};

/// A response that is ready, or one that needs to wait (for a flush, a held pull, ...).
pub enum Handled {
    Now(RemotingCommand),
    Later(Pin<Box<dyn Future<Output = RemotingCommand> + Send>>),
}

/// Serves requests arriving on a connection. `handle` runs on the connection's reader task, so
/// it must not block: slow work goes in a `Handled::Later`.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, conn: &Connection, request: RemotingCommand) -> Handled;

    /// The connection closed; whatever was tied to it should be released.
    fn connection_closed(&self, _conn: &Connection) {}
}

/// The response to a request whose code nobody serves.
pub fn not_supported(code: i32) -> RemotingCommand {
    RemotingCommand::response(
        response::REQUEST_CODE_NOT_SUPPORTED,
        format!(" request type {code} not supported"),
    )
}

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    /// No response came within the timeout.
    #[error("no response from {addr} within {millis} ms")]
    Timeout { addr: String, millis: u64 },
    /// The connection closed before the response came.
    #[error("connection to {addr} closed")]
    Closed { addr: String },
    /// The command cannot be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] FrameError),
}
