//! The scenarios. Each builds a cluster in the current madsim runtime, drives its workload and
//! its faults from the runtime's seed, checks its promises on what the clients recorded (a
//! broken promise panics with what was seen), and returns a one-line summary.
//!
//! `cargo sim` runs them by name ([`ALL`]); `sim/tests/scenarios.rs` wraps each in a
//! `#[madsim::test]` for `cargo simtest`.

pub mod broadcast;
pub mod broker;
pub mod consumer;
pub mod namesrv;
pub mod producer;
pub mod pull_consumer;

use std::future::Future;
use std::pin::Pin;

/// A scenario's run, as a plain function so that madsim's determinism check can call it twice.
pub type Run = fn() -> Pin<Box<dyn Future<Output = String>>>;

/// A scenario by name.
pub struct Scenario {
    pub name: &'static str,
    /// What it puts under fault, in a few words.
    pub about: &'static str,
    pub run: Run,
}

/// Every scenario, in the order `cargo sim` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "namesrv",
        about: "brokers clogged past their expiry; the NameServer restarted",
        run: || Box::pin(namesrv::run()),
    },
    Scenario {
        name: "broker",
        about: "a SYNC_FLUSH broker under swarm faults: power losses, partitions, latency",
        run: || Box::pin(broker::run()),
    },
    Scenario {
        name: "producer",
        about: "one of two brokers under swarm faults while the producer sends",
        run: || Box::pin(producer::run()),
    },
    Scenario {
        name: "consumer",
        about: "one of two push-consumer members loses power and returns",
        run: || Box::pin(consumer::run()),
    },
    Scenario {
        name: "pull_consumer",
        about: "a pull consumer seeks at random while the broker loses power",
        run: || Box::pin(pull_consumer::run()),
    },
    Scenario {
        name: "broadcast",
        about: "one of two broadcasting members loses power and returns",
        run: || Box::pin(broadcast::run()),
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}
