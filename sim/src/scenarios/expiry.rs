//! Expired commit-log files deleted under simulation: a SYNC_FLUSH broker with 8 KiB
//! commit-log files kept one hour (`fileReservedTime=1`, no `deleteWhen` hour), a topic whose
//! first 60 messages are sent, with no fault yet, an hour and a minute before the other 200,
//! and a push consumer of the topic from its first message, started with them (it would
//! make that hour slow to simulate). While the 200 are sent the swarm plan strikes the
//! broker, and an operator asks it now and then to delete expired files
//! (DELETE_EXPIRED_COMMITLOG: mqadmin's deleteExpiredCommitLog); the files holding only old
//! messages may go, with their consume-queue and index files.
//!
//! The promises checked:
//! - the new messages are as in every scenario with messages: each acknowledged one
//!   delivered whole where its acknowledgement said, within a bound once the faults are over
//!   (`durable`, `live`, `never_truncated`, over the new messages only: the old ones may be
//!   deleted before they are read); every delivery, old or new, is whole and at one place
//!   (`intact`, `one_message_per_place`);
//! - expired files go: once the faults are over, an operator's request deletes the files of
//!   old messages only, within a minute (`expired_deleted`).
//!
//! Run one seed: `cargo sim --seed 7 --scenario expiry`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Strike};
use crate::faults::FaultPlan;
use crate::history::{Entry, Event, History};
use crate::{clients, report, REQUEST_TIMEOUT};

const TOPIC: &str = "SimExpiry";
const OLD: u64 = 60;
const NEW: u64 = 200;
const BODY_BYTES: usize = 200;
/// Once the faults are over, every acknowledged new message is consumed within this, and
/// the expired files are deleted within it.
const LIVENESS: Duration = Duration::from_secs(60);

fn tune(config: &mut BrokerConfig) {
    config.store.commit_log_file_bytes = 8 * 1024;
    config.store.message_bytes_max = 2 * 1024;
    config.store.cq_file_units = 20;
    config.store.file_reserved_hours = 1;
    config.store.delete_when = Vec::new();
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(NEW);
    report::note(format!("fault schedule of broker-a (a step is a new send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().tune(tune).build(&history);
    let broker = cluster.broker_addrs()[0].clone();
    let producer = cluster.client("producer");
    let producing = history.clone();
    producer
        .spawn(async move {
            // Once the broker has registered: a send before finds no route.
            tokio::time::sleep(Duration::from_secs(2)).await;
            clients::produce(producing, TOPIC, 0..OLD, BODY_BYTES, 0..20).await;
        })
        .await
        .unwrap();
    // The old messages' files expire (those holding new messages too stay).
    tokio::time::sleep(Duration::from_secs(61 * 60)).await;
    cluster.fault_disks(schedule.disk);
    let consuming = history.clone();
    let _consumer = cluster.process("consumer", move || {
        clients::push_consume(
            "consumer".into(),
            consuming.clone(),
            clients::push_config("SimExpiryGroup", TOPIC),
        )
    });
    let producing = history.clone();
    let produced = producer.spawn(async move {
        clients::produce(producing, TOPIC, OLD..OLD + NEW, BODY_BYTES, 0..40).await;
    });
    let admin = cluster.client("admin");
    let asking = admin.spawn({
        let broker = broker.clone();
        async move {
            let client = RemotingClient::new(ClientConfig::default(), None);
            loop {
                let pause = thread_rng().gen_range(500..5_000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                delete_expired(&client, &broker).await;
            }
        }
    });
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))).collect();
    let settled = || history.sends_settled().saturating_sub(OLD);
    cluster.play(strikes, settled, || produced.is_finished()).await;
    cluster.heal();
    produced.await.unwrap();
    asking.abort();
    let deleted = expired_deleted(&cluster, &admin, &broker, &history).await;
    let deadline = Instant::now() + LIVENESS;
    while !history.all_acked_delivered(None) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.check_invariants();

    let entries = history.entries();
    let new = only_new(&entries);
    let verdicts = [
        checkers::never_truncated(&new),
        checkers::durable(&new, None),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        checkers::live(&new, None, LIVENESS),
        Verdict::new("expired_deleted", deleted),
    ];
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// The history without the old messages' events (their deliveries included).
fn only_new(entries: &[Entry]) -> Vec<Entry> {
    let old = |id: &u64| *id < OLD;
    entries
        .iter()
        .filter(|e| match &e.event {
            Event::Sent { id, .. }
            | Event::Acked { id, .. }
            | Event::Refused { id, .. }
            | Event::InDoubt { id }
            | Event::Delivered { id, .. } => !old(id),
            _ => true,
        })
        .cloned()
        .collect()
}

/// DELETE_EXPIRED_COMMITLOG; whether it was answered SUCCESS.
async fn delete_expired(client: &RemotingClient, broker: &str) -> bool {
    let command = RemotingCommand::request(request::DELETE_EXPIRED_COMMITLOG);
    let reply = client.invoke(broker, command, REQUEST_TIMEOUT).await;
    reply.is_ok_and(|r| r.code == response::SUCCESS)
}

/// On the healed cluster: the operator's request, asked again until answered, then the
/// commit log's first offset watched until the files of old messages are gone, and none
/// holding a new acknowledged message, within [`LIVENESS`].
async fn expired_deleted(
    cluster: &Cluster,
    admin: &madsim::runtime::NodeHandle,
    broker: &str,
    history: &History,
) -> Result<String, String> {
    let deadline = Instant::now() + LIVENESS;
    let broker = broker.to_owned();
    let asked = admin.spawn(async move {
        let client = RemotingClient::new(ClientConfig::default(), None);
        while !delete_expired(&client, &broker).await {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    });
    if !asked.await.unwrap() {
        return Err(format!("DELETE_EXPIRED_COMMITLOG not answered within {LIVENESS:?}"));
    }
    let first_new = history.entries().into_iter().filter_map(|e| match e.event {
        Event::Acked { id, stored_at: Some(at), .. } if id >= OLD => Some(at),
        _ => None,
    });
    let first_new = first_new.min().unwrap_or(u64::MAX);
    let mut first = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let running = cluster.brokers[0].running();
        first = running.map_or(first, |broker| broker.store().min_physical_offset());
        if first > first_new {
            return Err(format!("the log starts at {first}, past a new message at {first_new}"));
        }
        if first > 0 {
            return Ok(format!("the log starts at {first}; the first new message at {first_new}"));
        }
    }
    Err(format!("no file deleted within {LIVENESS:?} of the request"))
}
