//! The Petrel services as a library: each binds a pure core from `petrel-core` to sockets, a
//! clock and files. The `petrel` binary (src/main.rs) parses the command line and runs one;
//! the simulator (`sim/`) runs the same services on madsim nodes.

pub mod alloc;
pub mod bench;
pub mod broker;
pub mod clock;
pub mod config;
pub mod controller;
pub mod fsutil;
pub mod http;
pub mod metrics;
pub mod namesrv;
