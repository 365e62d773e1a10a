//! The Rust push consumer under simulation: a NameServer, a SYNC_FLUSH broker under a swarm
//! fault plan, a producer (every eighth body large enough to go compressed), and two members of
//! one consumer group. Besides the broker's faults,
//! one member loses power while messages flow and comes back later; the group rebalances
//! around it both times, by an allocation strategy drawn from the seed (averagely, by circle,
//! or consistent hashing).
//!
//! The promises checked at the end, on the recorded history:
//! - every acknowledged message is consumed, whole, from where its acknowledgement said, and
//!   within a bounded time once the faults are over;
//! - a message is consumed at most once more per event that can hand its queue over at an
//!   older commit: the three membership changes (the second member taking its share, the
//!   failure, the return) and each fault of the broker.
//!
//! Run one seed: `cargo sim --seed 7 --scenario consumer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::cluster::Cluster;
use crate::faults::FaultPlan;
use crate::history::{Entry, Event, History, Place};
use crate::report;
use madsim::rand::{thread_rng, Rng};
use petrel_client::PushConsumerConfig;
use petrel_core::client::allocate::Strategy;

const TOPIC: &str = "SimConsumed";
const MESSAGES: u64 = 200;
/// The membership changes a message can live through: the second member joins, one fails,
/// it returns.
const MEMBERSHIP_CHANGES: u64 = 3;
/// Once the faults are over, every acknowledged message is consumed within this.
const LIVENESS: Duration = Duration::from_secs(60);

async fn member(name: String, history: History, strategy: Strategy) {
    let config = PushConsumerConfig {
        strategy,
        hold: Duration::from_millis(500),
        ..clients::push_config("SimGroup", TOPIC)
    };
    clients::push_consume(name, history, config).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let strategy = [Strategy::Averagely, Strategy::AveragelyByCircle, Strategy::CONSISTENT_HASH]
        [thread_rng().gen_range(0..3usize)];
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("allocation strategy: {}", strategy.name()));
    report::note(format!("fault schedule of broker-a (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().disk_faults(schedule.disk).build(&history);
    let members: Vec<_> = (0..2)
        .map(|n| {
            let (name, history) = (format!("member-{n}"), history.clone());
            cluster.process(&name.clone(), move || member(name.clone(), history.clone(), strategy))
        })
        .collect();
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce_sized(producing, TOPIC, 0..MESSAGES, clients::some_compressed, 5..40)
            .await;
    });

    let watched = (&history, MESSAGES);
    let entries =
        super::play_members(&cluster, &schedule, &members, watched, sending, LIVENESS).await;
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.push(redeliveries_bounded(&entries, schedule.faults.len() as u64));
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// Each stored message is consumed (by the group) at most once more per membership change
/// and per fault of the broker.
fn redeliveries_bounded(entries: &[Entry], broker_faults: u64) -> Verdict {
    let stops = entries.iter().filter(|e| matches!(e.event, Event::Stopped { .. })).count();
    let bound = 1 + MEMBERSHIP_CHANGES + broker_faults + stops as u64;
    // By place: a send retried after a timeout may have stored its message twice.
    let mut deliveries: BTreeMap<&Place, u64> = BTreeMap::new();
    for entry in entries {
        if let Event::Delivered { place, .. } = &entry.event {
            *deliveries.entry(place).or_default() += 1;
        }
    }
    let worst = deliveries.iter().max_by_key(|(_, n)| **n);
    let outcome = match worst {
        Some((place, n)) if *n > bound => {
            Err(format!("the message at {place:?} consumed {n} times, over {bound}"))
        }
        _ => Ok(format!("at most {} deliveries, bound {bound}", worst.map_or(0, |w| *w.1))),
    };
    Verdict::new("redeliveries_bounded", outcome)
}
