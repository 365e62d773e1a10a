//! petrel-client: the Rust SDK for RocketMQ-protocol brokers.
//!
//! Empty until the SDK lands (issue 5); it will build on `petrel-net`'s transport and keep its
//! decisions (queue selection, rebalance, fault tolerance) in `petrel-core`.
