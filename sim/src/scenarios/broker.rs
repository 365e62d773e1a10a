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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::faults::{strike, FaultPlan, Target};
use crate::history::{body_hash, wall_ms, Entry, Event, History, Place, SendMode};
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
/// The consumer's name in the history.
const CONSUMER: &str = "consumer";
/// Once the faults are over, every acknowledged message is consumed within this.
const LIVENESS: Duration = Duration::from_secs(30);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

fn broker_config() -> BrokerConfig {
    let mut config = crate::sim_broker_config("broker-a", "10.0.1.1", NAMESRV);
    config.flush_offsets_interval_ms = OFFSETS_INTERVAL.as_millis() as u64;
    config.flush_delay_offsets_interval_ms = DELAY_OFFSETS_INTERVAL.as_millis() as u64;
    config
}

/// Where a message sent to `queue` is acknowledged at `offset`.
fn place(queue: i32, offset: i64) -> Place {
    Place { broker: "broker-a".into(), topic: TOPIC.into(), queue, offset }
}

/// The run's history, and whether the producers are done.
#[derive(Clone, Default)]
struct Shared {
    history: History,
    producer_done: Arc<AtomicBool>,
}

type Slot = Arc<Mutex<Option<Arc<Broker>>>>;

/// Producers, one per queue, each sending its share of the messages one at a time: their
/// appends meet in the broker's group commit.
async fn produce(shared: Shared) {
    let producers: Vec<_> = (0..QUEUES)
        .map(|queue| tokio::spawn(produce_queue(shared.history.clone(), queue)))
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    shared.producer_done.store(true, Ordering::Release);
}

async fn produce_queue(history: History, queue: i32) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    for id in (queue as u64..MESSAGES).step_by(QUEUES as usize) {
        let level = i32::from(id % DELAYED_EVERY == DELAYED_EVERY - 1);
        let due_wall = (level > 0).then(|| wall_ms() + DELAY.as_millis() as i64);
        let body_hash = body_hash(&workload::body(id, BODY_BYTES));
        history.record(Event::Sent { id, mode: SendMode::Sync, body_hash, due_wall });
        let outcome =
            workload::send_delayed(&client, BROKER, TOPIC, queue, id, BODY_BYTES, level).await;
        let down = match outcome {
            SendOutcome::Acked { queue_offset } => {
                let place = (level == 0).then(|| place(queue, queue_offset));
                history.record(Event::Acked { id, place });
                false
            }
            SendOutcome::Unknown => {
                history.record(Event::Unanswered { id });
                true
            }
            SendOutcome::Refused { code } => {
                assert!(
                    code == response::SERVICE_NOT_AVAILABLE || code == response::SYSTEM_BUSY,
                    "send {id} refused with {code}"
                );
                history.record(Event::Refused { id, code });
                true
            }
        };
        let pause = if down { 200 } else { thread_rng().gen_range(0..5) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Pulls every queue from its committed offset, committing after each batch; on any error
/// it forgets its positions and asks the broker for the committed ones again.
async fn consume(history: History) {
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
                            let (consumer, broker, topic) =
                                (CONSUMER.into(), "broker-a".into(), TOPIC.into());
                            history.record(Event::Resumed {
                                consumer,
                                broker,
                                topic,
                                queue,
                                before,
                                resumed,
                            });
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
            let none_acked = !history.any_acked();
            let pulled = workload::pull(&client, BROKER, GROUP, TOPIC, queue, offset, hold).await;
            match pulled {
                Ok(pulled) if pulled.code == response::SUCCESS => {
                    for message in &pulled.messages {
                        history.record(Event::Delivered {
                            consumer: CONSUMER.into(),
                            place: place(queue, message.queue_offset),
                            id: message.id,
                            body_hash: message.body_crc,
                            stored_wall: message.store_timestamp,
                        });
                    }
                    positions.insert(queue, pulled.next_begin_offset);
                    cursors.insert(queue, pulled.next_begin_offset);
                    let next = pulled.next_begin_offset;
                    let sent = tokio::time::Instant::now();
                    if workload::commit_offset(&client, BROKER, GROUP, TOPIC, queue, next).await {
                        history.record(Event::Committed {
                            consumer: CONSUMER.into(),
                            broker: "broker-a".into(),
                            topic: TOPIC.into(),
                            queue,
                            offset: next,
                            sent,
                        });
                    }
                }
                // Before the first send creates the topic, the broker does not know it.
                Ok(pulled) if pulled.code == response::TOPIC_NOT_EXIST && none_acked => {
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
    let broker_node = spawn_broker(&handle, &disk, &slot);
    let shared = Shared::default();
    let history = shared.history.clone();
    let producer = handle.create_node().name("producer").ip(ip("10.0.2.1")).build();
    let consumer = handle.create_node().name("consumer").ip(ip("10.0.2.2")).build();
    let produced = producer.spawn(produce(shared.clone()));
    let _consuming = consumer.spawn(consume(history.clone()));

    let target = Target { handle: &handle, node: broker_node.id(), disk: &disk };
    for fault in &schedule.faults {
        while history.sends_settled() < fault.after && !shared.producer_done.load(Ordering::Acquire)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        strike(&target, fault, || {
            *slot.lock().unwrap() = None;
            history.record(Event::Crashed { node: "broker-a".into(), wall: wall_ms() });
        })
        .await;
    }
    history.record(Event::Healed);
    produced.await.unwrap();
    history.settle(None, LIVENESS).await;
    if let Some(broker) = slot.lock().unwrap().as_ref() {
        broker.check_invariants();
    }
    let entries = history.entries();
    let verdicts = [
        checkers::durable(&entries, None),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        checkers::offsets_advance(&entries),
        checkers::never_early(&entries),
        checkers::live(&entries, None, LIVENESS),
        delayed_stay_in_queue(&entries),
        resumes_at_commits(&entries),
        duplicates_explained(&entries),
    ];
    checkers::conclude(&verdicts);
    let stats = disk.stats();
    format!(
        "{}; disk: {} crashes, {} writes torn, {} dropped, {} kept",
        history.summary(),
        stats.crashes,
        stats.writes_torn,
        stats.writes_dropped,
        stats.writes_kept,
    )
}

/// The broker node: `broker-a` on `disk`, its running state in `slot` while it is up.
fn spawn_broker(handle: &Handle, disk: &SimDisk, slot: &Slot) -> madsim::runtime::NodeHandle {
    let (slot, disk) = (slot.clone(), disk.clone());
    handle
        .create_node()
        .name("broker")
        .ip(ip("10.0.1.1"))
        .init(move || {
            let (slot, disk) = (slot.clone(), disk.clone());
            async move {
                let running = broker::start(broker_config(), Arc::new(disk))
                    .await
                    .unwrap_or_else(|e| panic!("the broker must recover from any crash: {e}"));
                *slot.lock().unwrap() = Some(running.state.clone());
                std::future::pending::<()>().await;
            }
        })
        .build()
}

/// A delayed message is delivered in the queue it was sent to.
fn delayed_stay_in_queue(entries: &[Entry]) -> Verdict {
    let delayed: BTreeSet<u64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Sent { id, due_wall: Some(_), .. } => Some(id),
            _ => None,
        })
        .collect();
    for entry in entries {
        if let Event::Delivered { id, place, .. } = &entry.event {
            if delayed.contains(id) && place.queue as u64 != id % QUEUES as u64 {
                let why = format!("delayed message {id} delivered from {place:?}");
                return Verdict::new("delayed_stay_in_queue", Err(why));
            }
        }
    }
    Verdict::new("delayed_stay_in_queue", Ok(format!("{} delayed sends", delayed.len())))
}

/// After a restart the consumer resumes from an offset it committed: not before what it
/// committed a persistence interval before the crash.
fn resumes_at_commits(entries: &[Entry]) -> Verdict {
    let mut resumes = 0;
    for entry in entries {
        if let Event::Resumed { queue, resumed, .. } = entry.event {
            let floor = persisted_floor(entries, queue, entry.at);
            if resumed < floor {
                let why = format!(
                    "queue {queue} resumed at {resumed}, before {floor}, committed well before the crash"
                );
                return Verdict::new("resumes_at_commits", Err(why));
            }
            resumes += 1;
        }
    }
    Verdict::new("resumes_at_commits", Ok(format!("{resumes} resumes")))
}

/// Every duplicate comes from a rewind to a committed offset, or from a delayed message whose
/// first delivery came within a cursor-persistence interval before a crash (stored twice).
fn duplicates_explained(entries: &[Entry]) -> Verdict {
    let crashes: Vec<i64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Crashed { wall, .. } => Some(wall),
            _ => None,
        })
        .collect();
    let mut copies: BTreeMap<u64, BTreeMap<(i32, i64), i64>> = BTreeMap::new();
    let mut delayed = BTreeSet::new();
    let mut rewound = 0;
    for entry in entries {
        match &entry.event {
            Event::Sent { id, due_wall: Some(_), .. } => {
                delayed.insert(*id);
            }
            Event::Delivered { id, place, stored_wall, .. } => {
                copies.entry(*id).or_default().insert((place.queue, place.offset), *stored_wall);
            }
            Event::Resumed { before, resumed, .. } => rewound += before - resumed,
            _ => {}
        }
    }
    let window = (DELAY_OFFSETS_INTERVAL + MARGIN).as_millis() as i64;
    let mut redelivered = 0;
    for (id, places) in copies.iter().filter(|(_, places)| places.len() > 1) {
        let first = places.values().min().copied().unwrap_or_default();
        let near_crash = crashes.iter().any(|c| first <= *c && *c - first <= window);
        if !delayed.contains(id) || !near_crash {
            let why = format!("message {id} stored at {places:?}, not a delayed one near a crash");
            return Verdict::new("duplicates_explained", Err(why));
        }
        redelivered += places.len() as i64 - 1;
    }
    let deliveries = entries.iter().filter(|e| matches!(e.event, Event::Delivered { .. }));
    let duplicates = deliveries.count() as i64 - copies.len() as i64;
    let outcome = match duplicates == rewound + redelivered {
        true => Ok(format!("{duplicates}: {rewound} rewound, {redelivered} delayed stored twice")),
        false => Err(format!(
            "{duplicates} duplicates, but rewinds cover {rewound} and stored twice {redelivered}"
        )),
    };
    Verdict::new("duplicates_explained", outcome)
}

/// The offset of `queue` that must have reached the disk by the last crash before `when`: the
/// latest commit sent after the crash before that one (so the restarted broker took it) and
/// answered at least a persistence interval (plus margin) before this one; failing that, what
/// had to survive the crash before.
fn persisted_floor(entries: &[Entry], queue: i32, when: tokio::time::Instant) -> i64 {
    let crashes =
        entries.iter().filter(|e| matches!(e.event, Event::Crashed { .. }) && e.at <= when);
    let mut floor = 0;
    let mut previous: Option<tokio::time::Instant> = None;
    for crash in crashes.map(|e| e.at) {
        let latest = entries.iter().rfind(|e| match e.event {
            Event::Committed { queue: q, sent, .. } => {
                q == queue
                    && previous.is_none_or(|p| sent > p)
                    && e.at + OFFSETS_INTERVAL + MARGIN <= crash
            }
            _ => false,
        });
        if let Some(Entry { event: Event::Committed { offset, .. }, .. }) = latest {
            floor = *offset;
        }
        previous = Some(crash);
    }
    floor
}
