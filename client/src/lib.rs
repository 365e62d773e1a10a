//! petrel-client: the Rust SDK for RocketMQ-protocol brokers.
//!
//! So far the raw requests ([`raw`]); the SDK proper (issue 5) will build on them and on
//! `petrel-net`'s transport, keeping its decisions (queue selection, rebalance, fault tolerance)
//! in `petrel-core`.

pub mod raw;
