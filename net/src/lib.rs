//! petrel-net: RocketMQ's remoting protocol.
//!
//! - [`codec`]: frames, headers (JSON and binary), codes, and RocketMQ's JSON quirks. Pure.
//! - [`headers`]: typed request and response headers, by Java field name.
//! - [`process`]: the process id ids carry (the simulated node's in the simulator).
//! - [`signal`]: a stop signal tasks await in a reproducible order.
//! - [`transport`]: framed connections, the server and the client, on tokio (madsim's tokio in
//!   simulation builds, so the same code runs inside the simulator).

pub mod bodies;
pub mod codec;
pub mod headers;
pub mod process;
pub mod signal;
pub mod transport;
