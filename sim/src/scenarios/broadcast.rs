//! Broadcasting consumers under simulation: a NameServer, a SYNC_FLUSH broker under a swarm
//! fault plan, a producer and two members of one broadcasting group, each keeping its offsets
//! in its own local file. One member loses power while messages flow and comes back later,
//! reading its file again.
//!
//! The promises checked at the end, on the recorded history:
//! - every member consumes every acknowledged message, whole, within a bounded time once the
//!   faults are over;
//! - the member that stayed up consumes each message once;
//! - the member that failed consumes each message at most twice, and twice only if it
//!   consumed it the first time within a commit interval (plus a margin) before the failure:
//!   after its last offsets file was written.
//!
//! The offsets files are real files under the temporary directory, one directory per seed
//! that the scenario empties when it starts.
//!
//! Run one seed: `cargo sim --seed 7 --scenario broadcast`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::history::{Entry, Event, History, Place};
use madsim::runtime::Handle;
use petrel_client::{MessageModel, PushConsumerConfig};

const TOPIC: &str = "SimBroadcast";
const MESSAGES: u64 = 200;

/// How often members write their offsets files in this scenario.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Time to spare on top of that interval when bounding a redelivery.
const MARGIN: Duration = Duration::from_millis(500);
/// Once the faults are over, every member consumes every acknowledged message within this.
const LIVENESS: Duration = Duration::from_secs(60);

async fn member(dir: PathBuf, instance: String, history: History) {
    let config = PushConsumerConfig {
        message_model: MessageModel::Broadcasting,
        local_offsets_dir: dir,
        instance_name: instance.clone(),
        commit_interval: COMMIT_INTERVAL,
        hold: Duration::from_millis(500),
        ..clients::push_config("SimEveryone", TOPIC)
    };
    clients::push_consume(instance, history, config).await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    let dir = std::env::temp_dir().join(format!(
        "petrel-sim-broadcast-{}-{}",
        std::process::id(),
        handle.seed()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (schedule, history, cluster) = super::one_broker_under_swarm(MESSAGES);
    let members: Vec<_> = (0..2)
        .map(|n| {
            let (dir, name, history) = (dir.clone(), format!("member-{n}"), history.clone());
            cluster
                .process(&name.clone(), move || member(dir.clone(), name.clone(), history.clone()))
        })
        .collect();
    let producing = history.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients::produce(producing, TOPIC, 0..MESSAGES, 100, 5..40).await;
    });

    // One member fails after a random number of sends and comes back a while later; the
    // broker's faults come along the sends too.
    let strikes = super::broker_and_member_strikes(&schedule, &members, MESSAGES);
    cluster.play(strikes, || history.sends_settled(), || sending.is_finished()).await;
    cluster.heal();
    sending.await.unwrap();
    for n in 0..2 {
        history.settle(Some(&format!("member-{n}")), LIVENESS).await;
    }
    cluster.check_invariants();
    let _ = std::fs::remove_dir_all(&dir);
    let entries = history.entries();
    let mut verdicts = checkers::delivery(&entries, Some("member-0"), LIVENESS);
    verdicts.extend([
        checkers::durable(&entries, Some("member-1")),
        checkers::live(&entries, Some("member-1"), LIVENESS),
        again_only_after_a_crash(&entries),
    ]);
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// A member consumes a stored message once, unless it lost power: then at most twice, and twice only
/// if it consumed it the first time within a commit interval (plus a margin) before the
/// crash, after its last offsets file was written.
fn again_only_after_a_crash(entries: &[Entry]) -> Verdict {
    let crashes: BTreeMap<&str, tokio::time::Instant> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Crashed { node, .. } if node.starts_with("member-") => {
                Some((node.as_str(), e.at))
            }
            _ => None,
        })
        .collect();
    // By place: a send retried after a timeout may have stored its message twice.
    let mut deliveries: BTreeMap<(&str, &Place), (u64, Vec<tokio::time::Instant>)> =
        BTreeMap::new();
    for entry in entries {
        if let Event::Delivered { consumer, id, place, .. } = &entry.event {
            let seen = deliveries.entry((consumer.as_str(), place)).or_insert((*id, Vec::new()));
            seen.1.push(entry.at);
        }
    }
    let mut again = 0;
    for ((consumer, _), (id, times)) in &deliveries {
        let crash = crashes.get(consumer);
        let allowed = if crash.is_some() { 2 } else { 1 };
        let why = if times.len() > allowed {
            Some(format!("{consumer} consumed message {id} {} times", times.len()))
        } else if let (2, Some(crash)) = (times.len(), crash) {
            let before = crash.saturating_duration_since(times[0]);
            let fresh =
                times[0] <= *crash && times[1] > *crash && before <= COMMIT_INTERVAL + MARGIN;
            again += 1;
            (!fresh).then(|| {
                format!("{consumer} consumed {id} again, first {before:?} before its crash")
            })
        } else {
            None
        };
        if let Some(why) = why {
            return Verdict::new("again_only_after_a_crash", Err(why));
        }
    }
    Verdict::new("again_only_after_a_crash", Ok(format!("{again} consumed again after the crash")))
}
