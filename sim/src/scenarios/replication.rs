//! Replication under simulation: a NameServer, a master on SYNC_FLUSH (`broker-a`, node
//! 10.0.1.1; a SYNC_MASTER, or an ASYNC_MASTER for the seeds that are 3 modulo 4) and two slaves
//! of its group (nodes `broker-b` and `broker-c`, brokerId 1 and 2), producers sending to the
//! master. The faults come from a swarm [`FaultPlan`], each striking one of the three brokers
//! at random: power losses (the disk keeps, drops or tears each unsynced write), partitions,
//! one-way cuts, latency, and disk faults on every broker.
//!
//! The promises checked:
//! - when a SYNC_MASTER acknowledges a message (SEND_OK), a slave holds its record, unless one
//!   lost power or stopped while the send was out (looked at directly in the slaves' stores).
//!   An ASYNC_MASTER promises no such thing: the acknowledgements no slave held are counted
//!   (what the master's loss at that moment would have lost), not failed.
//!
//! And once the faults are over and the slaves caught up:
//! - the replicas converge: each slave's commit log is the master's, byte for byte, from the
//!   slave's first offset to the master's end, and each slave has copied the master's topics;
//! - a (queue, offset) names one message on every replica, and every message the master
//!   acknowledged (SEND_OK: flushed on the master and reported by a slave) is on each slave,
//!   where its acknowledgement said, whole: a consumer reading a slave once the master is gone
//!   finds it.
//!
//! Consumers read through Petrel's SDK, as RocketMQ's clients do: slaves serve reads
//! (`slaveReadEnable`), and every broker's memory is set at 8 KiB, so that a reader more than
//! 3.2 KiB (some ten records) behind the log's end is sent to slave 1 (`suggestWhichBrokerId`)
//! and back:
//! - a reader that starts with the producers and follows the suggestions through the faults
//!   reads every acknowledged message once they are over (`durable (reader)`), each where its
//!   acknowledgement said, whole (the checkers over all deliveries);
//! - then the master loses power for good, and a new group reading the topic from its start
//!   finds every acknowledged message on the slaves (`durable (after-master)`).
//!
//! The master's confirm machine checks, after every request, that it acknowledged nothing a
//! slave had not reported. The log stays within one commit-log file, so a slave that comes back
//! empty copies everything (RocketMQ starts an empty slave at the master's newest file; that
//! rule is covered by the store's and the HA core's tests, not under faults here).
//!
//! Run one seed: `cargo sim --seed 7 --scenario replication`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Watch, NAMESRV};
use crate::faults::FaultPlan;
use crate::history::{body_hash, Entry, Event, History, Place, SendMode};
use crate::workload::{self, SendOutcome};
use crate::{clients, report, stores};
use madsim::rand::{thread_rng, Rng};
use petrel::broker::config::BrokerRole;
use petrel::broker::BrokerConfig;
use petrel_client::{ConsumeFrom, PullConsumer, PullConsumerConfig};
use petrel_net::codec::codes::response;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::Store;
use tokio::task::JoinHandle;

const MASTER: &str = "10.0.1.1:10911";
const GROUP: &str = "broker-a";
const TOPIC: &str = "SimReplicated";
const QUEUES: i32 = 4;
const MESSAGES: u64 = 240;
const BODY_BYTES: usize = 300;
/// Replicas still apart this long after the faults are over fail the run.
const CONVERGENCE: Duration = Duration::from_secs(60);
/// The reader through the faults, and the group that reads once the master is gone.
const READER: &str = "reader";
const AFTER: &str = "after-master";
/// A reader still short of an acknowledged message this long after its start point (the
/// replicas' convergence; the master's loss) fails the run. The second covers the NameServer
/// dropping the lost master (at the latest when its 120 s channel expiry passes).
const READ_ALL: Duration = Duration::from_secs(60);
const READ_ALL_AFTER_MASTER: Duration = Duration::from_secs(200);

thread_local! {
    /// This run's master is an ASYNC_MASTER (else a SYNC_MASTER): drawn per seed in [`run`],
    /// read by [`tune`] (a plain function, as the cluster builder takes).
    static ASYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn tune(i: usize, config: &mut BrokerConfig) {
    // One file holds the whole run's log (see the module documentation).
    crate::cluster::replicated_group(config, GROUP);
    config.slave_read_enable = true;
    config.memory_bytes = 8 << 10;
    match i {
        0 if ASYNC.get() => config.role = BrokerRole::AsyncMaster,
        0 => config.role = BrokerRole::SyncMaster,
        _ => {
            config.role = BrokerRole::Slave;
            config.broker_id = i as i64;
        }
    }
}

/// Where a message sent to `queue` is acknowledged at `offset`.
fn place(queue: i32, offset: i64) -> Place {
    Place { broker: GROUP.into(), topic: TOPIC.into(), queue, offset }
}

/// What the producers see of the slaves: each one's node name and state, and the
/// acknowledgements no slave held when they arrived.
#[derive(Clone)]
struct Slaves {
    watches: Vec<(String, Watch)>,
    unheld: Arc<Mutex<Vec<String>>>,
    /// An ASYNC_MASTER's run: an acknowledgement no slave held is counted, not a failure.
    promised: bool,
    acks: Arc<std::sync::atomic::AtomicU64>,
}

impl Slaves {
    /// The SYNC_MASTER promise, seen when the acknowledgement arrives: some slave holds the
    /// record that starts at `at` (its log runs past `at`, and it appends whole records), or
    /// lost power or stopped since the send went out, which may have taken it back.
    fn check(&self, history: &History, id: u64, at: u64, sent: tokio::time::Instant) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        let held = self.watches.iter().any(|(node, watch)| {
            let past = watch.get().is_some_and(|broker| broker.store().written_offset() > at);
            past || history.entries().iter().any(|e| {
                e.at >= sent
                    && matches!(&e.event, Event::Crashed { node: n, .. } | Event::Stopped { node: n, .. } if n == node)
            })
        });
        if !held {
            let why = format!("message {id} acknowledged with no slave holding its record at {at}");
            self.unheld.lock().unwrap_or_else(|p| p.into_inner()).push(why);
        }
    }

    fn verdict(&self) -> Verdict {
        let unheld = self.unheld.lock().unwrap_or_else(|p| p.into_inner());
        let acks = self.acks.load(Ordering::Relaxed);
        let outcome = match unheld.first() {
            None => Ok(format!("each of {acks} acknowledgements found its record on a slave")),
            // ASYNC_MASTER promises nothing of slaves: what it would lose is counted.
            Some(_) if !self.promised => Ok(format!(
                "ASYNC_MASTER: {} of {acks} acknowledgements found their record on no slave \
                 (lost, had the master's disk been lost then)",
                unheld.len()
            )),
            Some(first) => Err(format!("{} times: {first}", unheld.len())),
        };
        Verdict::new("acked_on_a_slave", outcome)
    }
}

/// Two producers per queue, each sending its share one request at a time.
async fn produce(history: History, done: Arc<AtomicBool>, slaves: Slaves) {
    let lanes: Vec<_> = (0..QUEUES as u64 * 2)
        .map(|lane| tokio::spawn(produce_lane(history.clone(), lane, slaves.clone())))
        .collect();
    for lane in lanes {
        lane.await.unwrap();
    }
    done.store(true, Ordering::Release);
}

async fn produce_lane(history: History, lane: u64, slaves: Slaves) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let queue = (lane % QUEUES as u64) as i32;
    for id in (lane..MESSAGES).step_by(QUEUES as usize * 2) {
        let body_hash = body_hash(&workload::body(id, BODY_BYTES));
        history.record(Event::Sent { id, mode: SendMode::Sync, body_hash, due_wall: None });
        let sent = tokio::time::Instant::now();
        let outcome = workload::send(&client, MASTER, TOPIC, queue, id, BODY_BYTES).await;
        let down = match outcome {
            SendOutcome::Acked { queue_offset, stored_at } => {
                slaves.check(&history, id, stored_at[0], sent);
                let place = Some(place(queue, queue_offset));
                history.record(Event::Acked { id, place, stored_at: stored_at.first().copied() });
                false
            }
            // SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT, FLUSH_DISK_TIMEOUT, no answer.
            SendOutcome::NotDurable { .. } | SendOutcome::Unknown => {
                history.record(Event::InDoubt { id });
                true
            }
            SendOutcome::Refused { code } => {
                assert!(
                    code == response::SERVICE_NOT_AVAILABLE || code == response::SYSTEM_BUSY,
                    "send of {id} refused with {code}"
                );
                history.record(Event::Refused { id, code });
                true
            }
        };
        let pause = if down { 200 } else { thread_rng().gen_range(0..5) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Reads every queue of the topic as group `group`, following each answer's suggested broker,
/// recording each message as delivered to `name`, until `stop` is set or it has every
/// acknowledged message and the producers are `done`.
async fn read(history: History, name: &'static str, stop: Arc<AtomicBool>, done: Arc<AtomicBool>) {
    let consumer = PullConsumer::start(PullConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: format!("Sim-{name}"),
        consume_from: ConsumeFrom::First,
        pull_batch: 8,
        auto_commit: false,
        rebalance_interval: Duration::from_secs(2),
        ..PullConsumerConfig::default()
    })
    .unwrap();
    let finished = || {
        stop.load(Ordering::Acquire)
            || (done.load(Ordering::Acquire)
                && checkers::undelivered(&history.entries(), name) == 0)
    };
    while !finished() {
        let assigned = match consumer.queues(TOPIC).await {
            Ok(queues) if !queues.is_empty() => consumer.assign(&queues).await.is_ok(),
            _ => false,
        };
        if assigned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while !finished() {
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(messages) => {
                messages.iter().for_each(|m| history.record(clients::received(name, m)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let _ = consumer.shutdown().await;
}

/// Waits for a reader until it has every acknowledged message or `within` passes, then stops it.
async fn finish_reading(reading: JoinHandle<()>, stop: Arc<AtomicBool>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !reading.is_finished() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Release);
    reading.await.unwrap();
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    // A quarter of the seeds, chosen without a random draw so that the others draw as before.
    let asynchronous = madsim::runtime::Handle::current().seed() % 4 == 3;
    ASYNC.set(asynchronous);
    let role = if asynchronous { "an ASYNC_MASTER" } else { "a SYNC_MASTER" };
    report::note(format!("the master is {role}"));
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    let targets: Vec<usize> =
        schedule.faults.iter().map(|_| thread_rng().gen_range(0..3)).collect();
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    report::note(format!("targets, in order (0 the master): {targets:?}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster =
        Cluster::builder().brokers(3).tune_each(tune).disk_faults(schedule.disk).build(&history);
    let done = Arc::new(AtomicBool::new(false));
    let slaves = Slaves {
        watches: cluster.brokers[1..].iter().map(|b| (b.name.clone(), b.watch())).collect(),
        unheld: Arc::default(),
        promised: !asynchronous,
        acks: Arc::default(),
    };
    let producing = produce(history.clone(), done.clone(), slaves.clone());
    let produced = cluster.client("producer").spawn(producing);
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reading = read(history.clone(), READER, stop_reader.clone(), done.clone());
    let reading = cluster.client(READER).spawn(reading);
    for (fault, &target) in schedule.faults.iter().zip(&targets) {
        while history.sends_settled() < fault.after && !done.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        cluster.strike(target, fault).await;
    }
    cluster.heal();
    produced.await.unwrap();
    // A send held back by a cut can still reach the master and grow its log.
    schedule.held_back_delivered().await;
    let stores = converged(&cluster).await;
    cluster.check_invariants();
    finish_reading(reading, stop_reader, READ_ALL).await;
    let mut verdicts = vec![slaves.verdict(), stores::logs_match(&stores)];
    let replicas: Vec<Entry> = (stores.iter().enumerate())
        .flat_map(|(i, store)| {
            stores::read_all(store, &format!("replica-{i}"), GROUP, TOPIC, QUEUES)
        })
        .collect();
    drop(stores);
    // The master's disk is lost: a new group reads everything from the slaves.
    cluster.lose_for_good(0);
    let stop_after = Arc::new(AtomicBool::new(false));
    let reading = read(history.clone(), AFTER, stop_after.clone(), done.clone());
    let reading = cluster.client(AFTER).spawn(reading);
    finish_reading(reading, stop_after, READ_ALL_AFTER_MASTER).await;
    let mut read = history.entries();
    read.extend(replicas);
    verdicts.extend([
        checkers::one_message_per_place(&read),
        checkers::intact(&read),
        checkers::durable(&read, Some("replica-1")),
        checkers::durable(&read, Some("replica-2")),
        checkers::durable(&read, Some(READER)),
        checkers::durable(&read, Some(AFTER)),
    ]);
    checkers::conclude(&verdicts);
    let crashes: u64 = cluster.brokers.iter().map(|b| b.disk.stats().crashes).sum();
    cluster.stop().await;
    format!("{}; {crashes} power losses over the three brokers", history.summary())
}

/// Waits until every broker is up and has written and dispatched all of the master's durable
/// log, and each slave has copied the master's topics; returns the three stores, the master's
/// first.
async fn converged(cluster: &Cluster) -> Vec<Arc<Store>> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    loop {
        let stores: Vec<Option<Arc<Store>>> =
            cluster.brokers.iter().map(|b| b.running().map(|r| r.store().clone())).collect();
        // Each slave has copied the master's topic table too (every 10 s).
        let topics_copied = cluster.brokers[1..]
            .iter()
            .all(|b| b.running().is_some_and(|broker| broker.topic(TOPIC).is_some()));
        if let ([Some(master), Some(a), Some(b)], true) = (&stores[..], topics_copied) {
            let end = master.flushed_offset();
            // Written and dispatched: what a consumer of each replica would read.
            let caught_up = |s: &Store| s.written_offset() == end && s.dispatched_offset() == end;
            if end == master.written_offset() && caught_up(master) && caught_up(a) && caught_up(b) {
                return vec![master.clone(), a.clone(), b.clone()];
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replicas did not converge within {CONVERGENCE:?} of the faults' end: ends {:?}",
            stores.iter().map(|s| s.as_ref().map(|s| s.written_offset())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
