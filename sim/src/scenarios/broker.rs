//! The broker under simulation: a NameServer, a SYNC_FLUSH broker on a simulated disk, a
//! producer and a consumer. The faults come from a swarm [`FaultPlan`]: each seed picks some of
//! power losses (1-3: the disk keeps, drops or tears each unsynced write, the broker restarts),
//! partitions of the broker (1-2, healed after the outage), extra network latency and a torn
//! write ratio, and places them along the sends. `cargo sim --seed N --scenario broker`
//! prints the schedule.
//!
//! Two producers send to each queue, now and then a few messages as one batch; every fifth
//! message asks for delay level 1 (1 s) and goes through the schedule topic. The broker closes
//! connections idle for 1-4 s (120 s by default), so clients' connections are closed under
//! them during partitions and pauses.
//!
//! The promises checked at the end:
//! - every message the broker acknowledged is consumed (SYNC_FLUSH: acked means durable),
//!   a delayed one no earlier than its delay after it was sent;
//! - a (queue, offset) never names two different messages, and an acknowledged message is
//!   consumed exactly where the acknowledgement said it was stored;
//! - after a restart the consumer resumes from an offset it committed: never past what it had
//!   consumed (no loss), and not before what it committed a persistence interval before the
//!   crash;
//! - every duplicate delivery is explained on its own: the same place read again after a
//!   resume moved the consumer back over it, or another copy of a delayed message that the
//!   delay service stored again because the broker crashed or stopped within a
//!   cursor-persistence interval after it stored the previous copy (at any time before the
//!   next copy while the disk fails writes, since a failed write of the cursors is retried).
//!
//! Run one seed: `cargo sim --seed 7 --scenario broker`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::cluster::Cluster;
use crate::faults::FaultPlan;
use crate::history::{body_hash, wall_ms, Entry, Event, History, Place, SendMode};
use crate::report;
use crate::workload::{self, SendOutcome};
use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_net::codec::codes::response;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::SimDiskFaults;

const BROKER: &str = "10.0.1.1:10911";
const TOPIC: &str = "SimOrders";
const GROUP: &str = "SimConsumers";
const QUEUES: i32 = 4;
/// Producers per queue.
const LANES: u64 = 2;
/// The most messages a producer sends in one batch.
const BATCH_MAX: usize = 4;
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

fn tune(config: &mut BrokerConfig) {
    config.flush_offsets_interval_ms = OFFSETS_INTERVAL.as_millis() as u64;
    config.flush_delay_offsets_interval_ms = DELAY_OFFSETS_INTERVAL.as_millis() as u64;
    // Idle connections closed after 1-4 s instead of 120: a partition or a pause between
    // sends makes the broker close its clients' connections, which they must make again.
    let idle = Duration::from_millis(thread_rng().gen_range(1_000..=4_000));
    config.server.connection.idle_timeout = Some(idle);
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

/// Producers, two per queue, each sending its share of the messages one request at a time:
/// their appends meet in the broker's group commit and in their queue.
async fn produce(shared: Shared) {
    let producers: Vec<_> = (0..QUEUES)
        .flat_map(|queue| (0..LANES).map(move |lane| (queue, lane)))
        .map(|(queue, lane)| tokio::spawn(produce_lane(shared.history.clone(), queue, lane)))
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    shared.producer_done.store(true, Ordering::Release);
}

/// The delay level message `id` is sent with.
fn delay_level(id: u64) -> i32 {
    i32::from(id % DELAYED_EVERY == DELAYED_EVERY - 1)
}

/// One producer of `queue`: now and then it sends its next few messages as one batch (never
/// a delayed one: RocketMQ takes no delay level in a batch).
async fn produce_lane(history: History, queue: i32, lane: u64) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let ids: Vec<u64> = (queue as u64..MESSAGES)
        .step_by(QUEUES as usize)
        .filter(|id| id / QUEUES as u64 % LANES == lane)
        .collect();
    let mut next = 0;
    while next < ids.len() {
        let batch: Vec<u64> = match delay_level(ids[next]) == 0 && thread_rng().gen_ratio(1, 4) {
            true => {
                let undelayed = ids[next..].iter().take_while(|id| delay_level(**id) == 0);
                undelayed.take(BATCH_MAX).copied().collect()
            }
            false => vec![ids[next]],
        };
        next += batch.len();
        let level = delay_level(batch[0]);
        let due_wall = (level > 0).then(|| wall_ms() + DELAY.as_millis() as i64);
        for &id in &batch {
            let body_hash = body_hash(&workload::body(id, BODY_BYTES));
            history.record(Event::Sent { id, mode: SendMode::Sync, body_hash, due_wall });
        }
        let outcome = match batch.len() {
            1 => {
                let id = batch[0];
                workload::send_delayed(&client, BROKER, TOPIC, queue, id, BODY_BYTES, level).await
            }
            _ => workload::send_batch(&client, BROKER, TOPIC, queue, &batch, BODY_BYTES).await,
        };
        let down = settle(&history, queue, level, &batch, outcome);
        let pause = if down { 200 } else { thread_rng().gen_range(0..5) };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Records what became of the messages of one request; whether the broker seemed down.
fn settle(history: &History, queue: i32, level: i32, ids: &[u64], outcome: SendOutcome) -> bool {
    match outcome {
        SendOutcome::Acked { queue_offset, stored_at } => {
            for (i, &id) in ids.iter().enumerate() {
                // A delayed message waits elsewhere first: its place is not where it is read.
                let place = (level == 0).then(|| place(queue, queue_offset + i as i64));
                let stored_at = stored_at.get(i).copied().filter(|_| level == 0);
                history.record(Event::Acked { id, place, stored_at });
            }
            false
        }
        // Stored or not, as far as the producer can tell.
        SendOutcome::Unknown | SendOutcome::NotDurable { .. } => {
            ids.iter().for_each(|&id| history.record(Event::InDoubt { id }));
            true
        }
        SendOutcome::Refused { code } => {
            assert!(
                code == response::SERVICE_NOT_AVAILABLE || code == response::SYSTEM_BUSY,
                "send of {ids:?} refused with {code}"
            );
            ids.iter().for_each(|&id| history.record(Event::Refused { id, code }));
            true
        }
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
            let pulled = workload::pull(&client, BROKER, GROUP, TOPIC, queue, offset, hold).await;
            match pulled {
                Ok(pulled) if pulled.code == response::SUCCESS => {
                    positions.insert(queue, pulled.next_begin_offset);
                    cursors.insert(queue, pulled.next_begin_offset);
                    take(&history, &client, queue, &pulled).await;
                }
                // Before the first send creates the topic, the broker does not know it; nor
                // after a power loss, when the disk failed the write of the topic table (the
                // next send creates it again).
                Ok(pulled) if pulled.code == response::TOPIC_NOT_EXIST => {
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

/// Records what a pull of `queue` delivered, then commits the offset after it.
async fn take(history: &History, client: &RemotingClient, queue: i32, pulled: &workload::Pulled) {
    for message in &pulled.messages {
        history.record(Event::Delivered {
            consumer: CONSUMER.into(),
            place: place(queue, message.queue_offset),
            id: message.id,
            body_hash: message.body_crc,
            stored_wall: message.store_timestamp,
        });
    }
    let next = pulled.next_begin_offset;
    let sent = tokio::time::Instant::now();
    let answered = workload::commit_offset(client, BROKER, GROUP, TOPIC, queue, next).await;
    history.record(Event::Committed {
        consumer: CONSUMER.into(),
        broker: "broker-a".into(),
        topic: TOPIC.into(),
        queue,
        offset: next,
        sent,
        answered,
    });
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let shared = Shared::default();
    let history = shared.history.clone();
    let cluster = Cluster::builder().tune(tune).disk_faults(schedule.disk).build(&history);
    let produced = cluster.client("producer").spawn(produce(shared.clone()));
    let _consuming = cluster.client("consumer").spawn(consume(history.clone()));
    for fault in &schedule.faults {
        while history.sends_settled() < fault.after && !shared.producer_done.load(Ordering::Acquire)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        cluster.strike(0, fault).await;
    }
    cluster.heal();
    produced.await.unwrap();
    history.settle(None, LIVENESS).await;
    cluster.check_invariants();
    let entries = history.entries();
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.extend([
        checkers::offsets_advance(&entries),
        checkers::never_early(&entries),
        delayed_stay_in_queue(&entries),
        resumes_at_commits(&entries, &schedule.disk),
        duplicates_explained(&entries, &schedule.disk),
    ]);
    checkers::conclude(&verdicts);
    let stats = cluster.brokers[0].disk.stats();
    cluster.stop().await;
    format!(
        "{}; disk: {} crashes, {} writes torn, {} dropped, {} kept, {} failed fsyncs, \
         {} ENOSPC, {} bit flips",
        history.summary(),
        stats.crashes,
        stats.writes_torn,
        stats.writes_dropped,
        stats.writes_kept,
        stats.failed_syncs,
        stats.enospc,
        stats.bit_flips,
    )
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
/// committed a persistence interval before the crash. Promised only while the disk does not
/// fail writes: a failed write of the offsets is tried again a period later, and again.
fn resumes_at_commits(entries: &[Entry], disk: &SimDiskFaults) -> Verdict {
    if disk.fails_writes() {
        let why = "not promised: the disk fails writes";
        return Verdict::new("resumes_at_commits", Ok(why.into()));
    }
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

/// Every delivery of a message the consumer already had is explained, one delivery at a time:
/// - the same place read again, after a resume that moved the consumer back over it since its
///   last delivery (a resume explains one more read of each offset it covers, and none of the
///   offsets the consumer never came back to before the run ended);
/// - or another place of a delayed message: a copy the delay service stored again because the
///   broker crashed or stopped before its cursor reached the disk: within a cursor-persistence
///   interval after it stored the previous copy while the disk does not fail writes, and at
///   any time before the next copy when it does (a failed write of the cursors is retried a
///   period later, and again).
fn duplicates_explained(entries: &[Entry], disk: &SimDiskFaults) -> Verdict {
    let crashes: Vec<i64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Crashed { wall, .. } | Event::Stopped { wall, .. } => Some(wall),
            _ => None,
        })
        .collect();
    let mut delayed = BTreeSet::new();
    // Each place delivered so far: its message, and whether a resume has since moved the
    // consumer back over it.
    let mut places: BTreeMap<(i32, i64), (u64, bool)> = BTreeMap::new();
    // Each message's copies: when each place it was delivered from stored it.
    let mut copies: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    let mut reread = 0;
    for entry in entries {
        match &entry.event {
            Event::Sent { id, due_wall: Some(_), .. } => {
                delayed.insert(*id);
            }
            // A resume forward (a commit that arrived late) moves the consumer back over nothing.
            Event::Resumed { queue, before, resumed, .. } if resumed < before => {
                for (_, (_, rewound)) in places.range_mut((*queue, *resumed)..(*queue, *before)) {
                    *rewound = true;
                }
            }
            Event::Delivered { id, place, stored_wall, .. } => {
                match places.insert((place.queue, place.offset), (*id, false)) {
                    Some((earlier, true)) if earlier == *id => reread += 1,
                    Some((earlier, false)) if earlier == *id => {
                        let why = format!(
                            "message {id} delivered again from {place:?} with no resume before it"
                        );
                        return Verdict::new("duplicates_explained", Err(why));
                    }
                    // A place that names another message is one_message_per_place's verdict.
                    _ => copies.entry(*id).or_default().push(*stored_wall),
                }
            }
            _ => {}
        }
    }
    let window = match disk.fails_writes() {
        true => i64::MAX,
        false => (DELAY_OFFSETS_INTERVAL + MARGIN).as_millis() as i64,
    };
    let mut stored_again = 0;
    for (id, stores) in copies.iter_mut().filter(|(_, stores)| stores.len() > 1) {
        stores.sort_unstable();
        for pair in stores.windows(2) {
            let (previous, next) = (pair[0], pair[1]);
            let crashed =
                crashes.iter().any(|c| previous <= *c && *c - previous <= window && *c < next);
            if !delayed.contains(id) || !crashed {
                let why = format!(
                    "message {id} stored at {previous} and again at {next} (wall ms), \
                     not a delayed one stored again after a crash"
                );
                return Verdict::new("duplicates_explained", Err(why));
            }
            stored_again += 1;
        }
    }
    let found = format!("{reread} read again after resumes, {stored_again} delayed stored again");
    Verdict::new("duplicates_explained", Ok(found))
}

/// The offset of `queue` that must have reached the disk by the last crash before `when`: the
/// latest commit sent after the crash before that one (so the restarted broker took it) and
/// answered at least a persistence interval (plus margin) before this one; failing that, what
/// had to survive the crash before. A commit never answered may still be on its way (the
/// network delivers a request late, as TCP retransmits it) and overwrite a newer one, so the
/// floor is no higher than any such commit sent between the two crashes.
fn persisted_floor(entries: &[Entry], queue: i32, when: tokio::time::Instant) -> i64 {
    let crashes =
        entries.iter().filter(|e| matches!(e.event, Event::Crashed { .. }) && e.at <= when);
    let mut floor = 0;
    let mut previous: Option<tokio::time::Instant> = None;
    for crash in crashes.map(|e| e.at) {
        let since = |sent: tokio::time::Instant| previous.is_none_or(|p| sent > p) && sent < crash;
        let latest = entries.iter().rfind(|e| match e.event {
            Event::Committed { queue: q, sent, answered: true, .. } => {
                q == queue && since(sent) && e.at + OFFSETS_INTERVAL + MARGIN <= crash
            }
            _ => false,
        });
        if let Some(Entry { event: Event::Committed { offset, .. }, .. }) = latest {
            floor = *offset;
        }
        for entry in entries {
            if let Event::Committed { queue: q, offset, sent, answered: false, .. } = entry.event {
                if q == queue && since(sent) {
                    floor = floor.min(offset);
                }
            }
        }
        previous = Some(crash);
    }
    floor
}
