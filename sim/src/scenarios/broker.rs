//! The broker under simulation: a NameServer, a SYNC_FLUSH broker on a simulated disk, a
//! producer and a consumer. The faults come from a swarm [`FaultPlan`]: each seed picks some of
//! power losses (1-3: the disk keeps, drops or tears each unsynced write, the broker restarts),
//! partitions of the broker (1-2, healed after the outage), extra network latency and a torn
//! write ratio, and places them along the sends. `cargo sim --seed N --scenario broker`
//! prints the schedule.
//!
//! Every fifth message asks for delay level 1 (1 s) and goes through the schedule topic.
//!
//! The promises checked at the end:
//! - every message the broker acknowledged is consumed (SYNC_FLUSH: acked means durable),
//!   a delayed one no earlier than its delay after it was sent;
//! - a (queue, offset) never names two different messages, and an acknowledged message is
//!   consumed exactly where the acknowledgement said it was stored;
//! - after a restart the consumer resumes from an offset it committed: never past what it had
//!   consumed (no loss), and not before what it committed a persistence interval before the
//!   crash;
//! - duplicates are exactly what the rewinds cover, plus delayed messages delivered again
//!   because the crash came before their schedule cursor was written, and only those
//!   delivered within a cursor-persistence interval before a crash.
//!
//! Run one seed: `cargo sim --seed 7 --scenario broker`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::faults::{strike, FaultPlan, Target};
use crate::report;
use crate::workload::{self, SendOutcome};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel::broker::{self, Broker, BrokerConfig};
use petrel_net::codec::codes::response;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::SimDisk;

const NAMESRV: &str = "10.0.0.1:9876";
const BROKER: &str = "10.0.1.1:10911";
const TOPIC: &str = "SimOrders";
const GROUP: &str = "SimConsumers";
const QUEUES: i32 = 4;
const MESSAGES: u64 = 300;
const BODY_BYTES: usize = 300;
/// How often the broker writes consumer offsets in this scenario.
const OFFSETS_INTERVAL: Duration = Duration::from_millis(500);
/// How often the broker writes the delay cursors in this scenario.
const DELAY_OFFSETS_INTERVAL: Duration = Duration::from_millis(500);
/// Time to spare on top of those intervals when bounding a rewind or a redelivery.
const MARGIN: Duration = Duration::from_millis(500);
/// Every this many messages, one is delayed by level 1.
const DELAYED_EVERY: u64 = 5;
const DELAY: Duration = Duration::from_secs(1);

/// Wall-clock milliseconds (simulated), the clock store timestamps use.
fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

fn broker_config() -> BrokerConfig {
    let mut config = crate::sim_broker_config("broker-a", "10.0.1.1", NAMESRV);
    config.flush_offsets_interval_ms = OFFSETS_INTERVAL.as_millis() as u64;
    config.flush_delay_offsets_interval_ms = DELAY_OFFSETS_INTERVAL.as_millis() as u64;
    config
}

/// Everything the clients saw, for the checkers.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<u64, (i32, i64)>,
    unknown: BTreeSet<u64>,
    /// Delayed messages, with the wall time just before each was sent.
    delayed: BTreeMap<u64, i64>,
    /// Every message consumed, in order: (queue, offset, id, store timestamp).
    consumed: Vec<(i32, i64, u64, i64)>,
    /// Offsets the broker took as committed: queue -> [(sent, answered, offset)]. The broker
    /// took each at some moment between its two times.
    commits: BTreeMap<i32, Vec<(tokio::time::Instant, tokio::time::Instant, i64)>>,
    /// Each resume after a lost connection: (queue, where the consumer was, where it resumed).
    resumes: Vec<(i32, i64, i64, tokio::time::Instant)>,
    crashes: Vec<tokio::time::Instant>,
    crashes_wall: Vec<i64>,
    producer_done: bool,
}

type Shared = Arc<Mutex<Ledger>>;
type Slot = Arc<Mutex<Option<Arc<Broker>>>>;

/// Producers, one per queue, each sending its share of the messages one at a time: their
/// appends meet in the broker's group commit.
async fn produce(ledger: Shared) {
    let producers: Vec<_> =
        (0..QUEUES).map(|queue| tokio::spawn(produce_queue(ledger.clone(), queue))).collect();
    for producer in producers {
        producer.await.unwrap();
    }
    ledger.lock().unwrap().producer_done = true;
}

async fn produce_queue(ledger: Shared, queue: i32) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    for id in (queue as u64..MESSAGES).step_by(QUEUES as usize) {
        let level = i32::from(id % DELAYED_EVERY == DELAYED_EVERY - 1);
        let sent_at = wall_ms();
        let outcome =
            workload::send_delayed(&client, BROKER, TOPIC, queue, id, BODY_BYTES, level).await;
        let down = {
            let mut ledger = ledger.lock().unwrap();
            if level > 0 {
                ledger.delayed.insert(id, sent_at);
            }
            match outcome {
                SendOutcome::Acked { queue_offset } => {
                    ledger.acked.insert(id, (queue, queue_offset));
                    false
                }
                SendOutcome::Unknown => {
                    ledger.unknown.insert(id);
                    true
                }
                SendOutcome::Refused { code } => {
                    assert!(
                        code == response::SERVICE_NOT_AVAILABLE || code == response::SYSTEM_BUSY,
                        "send {id} refused with {code}"
                    );
                    true
                }
            }
        };
        let pause = if down { 200 } else { thread_rng().gen_range(0..5) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Pulls every queue from its committed offset, committing after each batch; on any error
/// it forgets its positions and asks the broker for the committed ones again.
async fn consume(ledger: Shared) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    // Where each queue will be read next; a queue missing here asks the broker first.
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    // Where each queue was read up to, kept across lost connections.
    let mut cursors: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        for queue in 0..QUEUES {
            if let std::collections::btree_map::Entry::Vacant(position) = positions.entry(queue) {
                match workload::query_offset(&client, BROKER, GROUP, TOPIC, queue).await {
                    Ok(committed) => {
                        let resumed = committed.unwrap_or(0);
                        if let Some(before) = cursors.insert(queue, resumed) {
                            let now = tokio::time::Instant::now();
                            ledger.lock().unwrap().resumes.push((queue, before, resumed, now));
                        }
                        position.insert(resumed);
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let offset = positions[&queue];
            let hold = Duration::from_millis(300);
            let acked_before = ledger.lock().unwrap().acked.len();
            let pulled = workload::pull(&client, BROKER, GROUP, TOPIC, queue, offset, hold).await;
            match pulled {
                Ok(pulled) if pulled.code == response::SUCCESS => {
                    {
                        let mut seen = ledger.lock().unwrap();
                        for message in &pulled.messages {
                            let stored = message.store_timestamp;
                            seen.consumed.push((queue, message.queue_offset, message.id, stored));
                        }
                    }
                    positions.insert(queue, pulled.next_begin_offset);
                    cursors.insert(queue, pulled.next_begin_offset);
                    let next = pulled.next_begin_offset;
                    let sent = tokio::time::Instant::now();
                    if workload::commit_offset(&client, BROKER, GROUP, TOPIC, queue, next).await {
                        let answered = tokio::time::Instant::now();
                        let mut seen = ledger.lock().unwrap();
                        seen.commits.entry(queue).or_default().push((sent, answered, next));
                    }
                }
                // Before the first send creates the topic, the broker does not know it.
                Ok(pulled) if pulled.code == response::TOPIC_NOT_EXIST && acked_before == 0 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(pulled) => assert!(
                    pulled.code == response::PULL_NOT_FOUND
                        || pulled.code == response::PULL_RETRY_IMMEDIATELY,
                    "pull of queue {queue} at {offset} answered {}: the consumer may only wait",
                    pulled.code
                ),
                Err(_) => {
                    positions.clear();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let disk_seed: u64 = thread_rng().gen();
    let disk = SimDisk::new(disk_seed, 1 << 30, schedule.disk);
    crate::spawn_namesrv(&handle);
    let slot: Slot = Arc::default();
    let broker_slot = slot.clone();
    let broker_disk = disk.clone();
    let broker_node = handle
        .create_node()
        .name("broker")
        .ip(ip("10.0.1.1"))
        .init(move || {
            let (slot, disk) = (broker_slot.clone(), broker_disk.clone());
            async move {
                let running = broker::start(broker_config(), Arc::new(disk))
                    .await
                    .unwrap_or_else(|e| panic!("the broker must recover from any crash: {e}"));
                *slot.lock().unwrap() = Some(running.state.clone());
                std::future::pending::<()>().await;
            }
        })
        .build();
    let ledger: Shared = Arc::default();
    let producer = handle.create_node().name("producer").ip(ip("10.0.2.1")).build();
    let consumer = handle.create_node().name("consumer").ip(ip("10.0.2.2")).build();
    let produced = producer.spawn(produce(ledger.clone()));
    let _consuming = consumer.spawn(consume(ledger.clone()));

    let target = Target { handle: &handle, node: broker_node.id(), disk: &disk };
    for fault in &schedule.faults {
        let sent = |l: &Ledger| (l.acked.len() + l.unknown.len()) as u64;
        while sent(&ledger.lock().unwrap()) < fault.after && !ledger.lock().unwrap().producer_done {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        strike(&target, fault, || {
            *slot.lock().unwrap() = None;
            let mut ledger = ledger.lock().unwrap();
            ledger.crashes.push(tokio::time::Instant::now());
            ledger.crashes_wall.push(wall_ms());
        })
        .await;
    }
    produced.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let ledger = ledger.lock().unwrap();
            let consumed: BTreeSet<u64> = ledger.consumed.iter().map(|c| c.2).collect();
            ledger.acked.keys().all(|id| consumed.contains(id))
        };
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(broker) = slot.lock().unwrap().as_ref() {
        broker.check_invariants();
    }
    let summary = check(&ledger.lock().unwrap(), &disk);
    summary
}

/// The promises, on the finished run's ledger; a summary of the run.
fn check(ledger: &Ledger, disk: &SimDisk) -> String {
    assert!(ledger.producer_done);
    // No acknowledged message is lost.
    let consumed_ids: BTreeSet<u64> = ledger.consumed.iter().map(|c| c.2).collect();
    let lost: Vec<u64> =
        ledger.acked.keys().filter(|id| !consumed_ids.contains(id)).copied().collect();
    assert!(lost.is_empty(), "acknowledged under SYNC_FLUSH but never consumed: {lost:?}");
    // A (queue, offset) names one message; an acked message is where its ack said, a delayed
    // one in its queue and not before it was due.
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut copies: BTreeMap<u64, BTreeMap<(i32, i64), i64>> = BTreeMap::new();
    for &(queue, offset, id, stored) in &ledger.consumed {
        let first = *at.entry((queue, offset)).or_insert(id);
        assert_eq!(first, id, "queue {queue} offset {offset} named two messages");
        copies.entry(id).or_default().insert((queue, offset), stored);
        if let Some(&sent_at) = ledger.delayed.get(&id) {
            assert_eq!(queue as u64, id % QUEUES as u64, "delayed message {id} in another queue");
            let due = sent_at + DELAY.as_millis() as i64;
            assert!(stored >= due, "delayed message {id} delivered at {stored}, due at {due}");
        } else if let Some(&(acked_queue, acked_offset)) = ledger.acked.get(&id) {
            assert_eq!((queue, offset), (acked_queue, acked_offset), "message {id} moved");
        }
        assert!(
            ledger.acked.contains_key(&id) || ledger.unknown.contains(&id),
            "message {id} consumed but its send was refused"
        );
    }
    // A message is stored twice only when it is a delayed one whose first delivery came within
    // a cursor-persistence interval before a crash.
    let mut redelivered: i64 = 0;
    let window = (DELAY_OFFSETS_INTERVAL + MARGIN).as_millis() as i64;
    for (id, places) in &copies {
        if places.len() == 1 {
            continue;
        }
        assert!(ledger.delayed.contains_key(id), "message {id} stored at {places:?}");
        let first = places.values().min().copied().unwrap_or_default();
        let near_crash = ledger.crashes_wall.iter().any(|c| first <= *c && *c - first <= window);
        assert!(near_crash, "delayed message {id} delivered again long after a crash: {places:?}");
        redelivered += places.len() as i64 - 1;
    }
    // Resumes: never past what was consumed, never before what was committed a persistence
    // interval before the last crash (offsets committed since the restart before it).
    let mut rewound: i64 = 0;
    for &(queue, before, resumed, when) in &ledger.resumes {
        assert!(
            resumed <= before,
            "queue {queue} resumed at {resumed}, past {before}: messages skipped"
        );
        let floor = persisted_floor(ledger, queue, when);
        assert!(
            resumed >= floor,
            "queue {queue} resumed at {resumed}, before {floor}, committed well before the crash"
        );
        rewound += before - resumed;
    }
    let duplicates = ledger.consumed.len() as i64 - consumed_ids.len() as i64;
    assert_eq!(
        duplicates,
        rewound + redelivered,
        "every duplicate comes from a rewind to a committed offset or a delayed redelivery"
    );
    let stats = disk.stats();
    format!(
        "{} acked, {} unknown, {} consumed, {duplicates} duplicates \
         ({redelivered} delayed redeliveries), {} resumes; \
         disk: {} crashes, {} writes torn, {} dropped, {} kept",
        ledger.acked.len(),
        ledger.unknown.len(),
        ledger.consumed.len(),
        ledger.resumes.len(),
        stats.crashes,
        stats.writes_torn,
        stats.writes_dropped,
        stats.writes_kept,
    )
}

/// The offset of `queue` that must have reached the disk by the last crash before `when`: the
/// latest commit sent after the crash before that one (so the restarted broker took it) and
/// answered at least a persistence interval (plus margin) before this one; failing that, what
/// had to survive the crash before.
fn persisted_floor(ledger: &Ledger, queue: i32, when: tokio::time::Instant) -> i64 {
    let commits = ledger.commits.get(&queue).map(Vec::as_slice).unwrap_or_default();
    let mut floor = 0;
    let mut previous: Option<tokio::time::Instant> = None;
    for &crash in ledger.crashes.iter().filter(|c| **c <= when) {
        let latest = commits.iter().rfind(|(sent, answered, _)| {
            previous.is_none_or(|p| *sent > p) && *answered + OFFSETS_INTERVAL + MARGIN <= crash
        });
        if let Some((_, _, offset)) = latest {
            floor = *offset;
        }
        previous = Some(crash);
    }
    floor
}
