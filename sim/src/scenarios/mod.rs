//! The scenarios. Each builds a cluster in the current madsim runtime, drives its workload and
//! its faults from the runtime's seed, checks its promises on what the clients recorded (a
//! broken promise panics with what was seen), and returns a one-line summary.
//!
//! `cargo sim` runs them by name ([`ALL`]); `sim/tests/scenarios.rs` wraps each in a
//! `#[madsim::test]` for `cargo simtest`.

pub mod admin;
pub mod broadcast;
pub mod broker;
pub mod broker_admin;
pub mod consumer;
pub mod controller;
pub mod expiry;
pub mod failover;
pub mod filter;
pub mod monitor;
pub mod namesrv;
pub mod namesrv_admin;
pub mod offsets_admin;
pub mod orderly;
pub mod pop;
pub mod pop_orderly;
pub mod producer;
pub mod pull_consumer;
pub mod queries;
pub mod replication;
pub mod request_reply;
pub mod timer;
pub mod transactions;

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
        name: "replication",
        about: "a SYNC_MASTER and two slaves, any of them under swarm faults",
        run: || Box::pin(replication::run()),
    },
    Scenario {
        name: "controller",
        about: "three raft controllers and a broker group's stand-ins under swarm faults",
        run: || Box::pin(controller::run()),
    },
    Scenario {
        name: "failover",
        about:
            "three controllers and a broker group of three in controller mode, under swarm faults",
        run: || Box::pin(failover::run()),
    },
    Scenario {
        name: "broadcast",
        about: "one of two broadcasting members loses power and returns",
        run: || Box::pin(broadcast::run()),
    },
    Scenario {
        name: "transactions",
        about: "transaction producers losing power, a broker under swarm faults while it checks",
        run: || Box::pin(transactions::run()),
    },
    Scenario {
        name: "timer",
        about: "timer messages across a small wheel's roll boundary, cancels, a broker under swarm faults",
        run: || Box::pin(timer::run()),
    },
    Scenario {
        name: "timer_failover",
        about: "the failover scenario with half its messages timer messages: slaves' wheels follow, a promoted one delivers each once",
        run: || Box::pin(failover::run_timers()),
    },
    Scenario {
        name: "orderly",
        about: "an orderly consumer group that grows, shrinks and loses a member; the broker under swarm faults",
        run: || Box::pin(orderly::run()),
    },
    Scenario {
        name: "pop",
        about: "a POP consumer group that leaves, delays and loses messages; the broker under swarm faults",
        run: || Box::pin(pop::run()),
    },
    Scenario {
        name: "filter",
        about: "a push consumer group subscribed with SQL92 loses a member; the broker under swarm faults",
        run: || Box::pin(filter::run()),
    },
    Scenario {
        name: "admin",
        about: "an operator's queries, setting changes and offset resets while the broker is under swarm faults",
        run: || Box::pin(admin::run()),
    },
    Scenario {
        name: "pop_orderly",
        about: "an orderly POP group that leaves messages and loses a member; the broker under swarm faults",
        run: || Box::pin(pop_orderly::run()),
    },
    Scenario {
        name: "broker_admin",
        about: "an operator's topic and group changes while the broker is under swarm faults",
        run: || Box::pin(broker_admin::run()),
    },
    Scenario {
        name: "namesrv_admin",
        about: "an operator's KV, setting and write-permission requests while the NameServer is under swarm faults",
        run: || Box::pin(namesrv_admin::run()),
    },
    Scenario {
        name: "offsets_admin",
        about: "an operator's offset commits, group clones and resets by time while the broker is under swarm faults",
        run: || Box::pin(offsets_admin::run()),
    },
    Scenario {
        name: "expiry",
        about: "expired commit-log files deleted on an operator's request while the broker is under swarm faults",
        run: || Box::pin(expiry::run()),
    },
    Scenario {
        name: "queries",
        about: "messages found by key, unique key and id while the broker is under swarm faults",
        run: || Box::pin(queries::run()),
    },
    Scenario {
        name: "monitor",
        about: "what the dashboard's read-only pages ask, while the broker is under swarm faults",
        run: || Box::pin(monitor::run()),
    },
    Scenario {
        name: "request_reply",
        about: "requests answered through the broker while it is under swarm faults",
        run: || Box::pin(request_reply::run()),
    },
];

/// The start of a scenario with one broker under a swarm plan: the plan's schedule over
/// `steps` sends (noted in the report, its extra latency applied), the run's history, and the
/// cluster whose broker's disk has the schedule's faults.
pub(crate) fn one_broker_under_swarm(
    steps: u64,
) -> (crate::faults::Schedule, crate::history::History, crate::cluster::Cluster) {
    one_tuned_broker_under_swarm(steps, |_| {})
}

/// As [`one_broker_under_swarm`], the broker's configuration adjusted by `tune`.
pub(crate) fn one_tuned_broker_under_swarm(
    steps: u64,
    tune: fn(&mut petrel::broker::BrokerConfig),
) -> (crate::faults::Schedule, crate::history::History, crate::cluster::Cluster) {
    let schedule = crate::faults::FaultPlan::swarm().schedule(steps);
    crate::report::note(format!("fault schedule of broker-a (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = crate::history::History::default();
    let builder = crate::cluster::Cluster::builder().disk_faults(schedule.disk).tune(tune);
    let cluster = builder.build(&history);
    (schedule, history, cluster)
}

/// The strikes of a scenario with one broker and two consumer members: the broker's faults of
/// `schedule`, and the power loss of one of `members` (named `member-{n}`) for 0.5-4 s after a
/// random step of the first half of `steps`, noted in the run's report.
pub(crate) fn broker_and_member_strikes<'a>(
    schedule: &crate::faults::Schedule,
    members: &'a [madsim::runtime::NodeHandle],
    steps: u64,
) -> Vec<(u64, crate::cluster::Strike<'a>)> {
    use madsim::rand::{thread_rng, Rng};
    let mut strikes: Vec<_> = schedule
        .faults
        .iter()
        .map(|f| (f.after, crate::cluster::Strike::Broker(0, f.clone())))
        .collect();
    let victim = thread_rng().gen_range(0..members.len());
    let down_for = std::time::Duration::from_millis(thread_rng().gen_range(500..4_000));
    let after = thread_rng().gen_range(10..steps / 2);
    crate::report::note(format!("member-{victim} loses power after step {after} for {down_for:?}"));
    let (node, name) = (&members[victim], format!("member-{victim}"));
    strikes.push((after, crate::cluster::Strike::Client { node, name, down_for }));
    strikes
}

/// Plays the broker's faults of `schedule` and a member's power loss (as
/// [`broker_and_member_strikes`] draws them) while `sending` sends `steps` messages, heals the
/// cluster, waits for the sends and then for every acknowledged message to be delivered
/// (within `liveness`), and checks the cluster's invariants: the run's history.
pub(crate) async fn play_members(
    cluster: &crate::cluster::Cluster,
    schedule: &crate::faults::Schedule,
    members: &[madsim::runtime::NodeHandle],
    (history, steps): (&crate::history::History, u64),
    sending: madsim::task::JoinHandle<()>,
    liveness: std::time::Duration,
) -> Vec<crate::history::Entry> {
    let strikes = broker_and_member_strikes(schedule, members, steps);
    cluster.play(strikes, || history.sends_settled(), || sending.is_finished()).await;
    cluster.heal();
    sending.await.expect("the producer's task ends");
    history.settle(None, liveness).await;
    cluster.check_invariants();
    history.entries()
}

/// `count` consumer members named `member-{n}`, each a node of `cluster` running
/// `member(name, history)` (again after each power loss).
pub(crate) fn start_members<F: Future + 'static>(
    cluster: &crate::cluster::Cluster,
    history: &crate::history::History,
    count: usize,
    member: fn(String, crate::history::History) -> F,
) -> Vec<madsim::runtime::NodeHandle> {
    (0..count)
        .map(|n| {
            let (name, history) = (format!("member-{n}"), history.clone());
            cluster.process(&name.clone(), move || member(name.clone(), history.clone()))
        })
        .collect()
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}
