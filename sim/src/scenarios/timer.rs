//! Timer messages under simulation: a NameServer, a SYNC_FLUSH broker under a swarm fault
//! plan (power losses, partitions, disk faults, latency) and a push consumer of the real
//! topic. The wheel is small so that the run crosses its roll boundary again and again: a
//! six-slot roll window, a timer log of 40 units a file.
//!
//! Two producers send timer messages with `TIMER_DELIVER_MS` drawn from the seed: some already
//! past (delivered at once), most within the roll window, a third beyond it (rolled once or
//! more). Every sixth message whose time is still ahead is cancelled right after its send
//! (`TIMER_DEL_UNIQKEY`, naming its time). Sends are not retried. On a third of the seeds the
//! broker puts slots under flow control (`timerCongestNumEachSlot` 2), refusing some sends
//! SYSTEM_ERROR; a refused message must never be delivered (`intact`).
//!
//! The promises checked at the end:
//! - a timer message is never delivered before its time, by the store's clock;
//! - every acknowledged timer message that no cancel was sent for is delivered, and once the
//!   faults are over, within [`LATE`] of its time (the broker recovering counted from the
//!   faults' end);
//! - the broker stores each timer message in its real topic once: every delivery of a message
//!   comes from one place, across power losses and restarts;
//! - a message whose cancel was acknowledged before its time is never delivered, and none is
//!   delivered after its cancel was acknowledged;
//! - after the faults the broker answers GET_TIMER_METRICS in RocketMQ's JSON, counting no
//!   more of the topic waiting than were sent and not refused;
//! - and the shared ones: a place names one message, and a delivered message was sent (a
//!   cancel is never delivered) and is whole.
//!
//! Run one seed: `cargo sim --seed 7 --scenario timer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::clients;
use crate::cluster::Cluster;
use crate::faults::FaultPlan;
use crate::history::{body_hash, wall_ms, Entry, Event, History, SendMode};
use crate::report;
use crate::workload::{self, SendOutcome};
use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_core::broker::timer::{delete_key, names, TimerSettings};
use petrel_core::broker::timer_metrics::TimerMetrics;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};

const BROKER: &str = "10.0.1.1:10911";
const TOPIC: &str = "SimTimers";
const GROUP: &str = "SimTimerReaders";
const QUEUES: i32 = 4;
const PRODUCERS: u64 = 2;
const MESSAGES: u64 = 160;
const BODY_BYTES: usize = 200;
/// Ids of cancels start here: a cancel is a message too, and must never be delivered.
const CANCEL_BASE: u64 = 1_000_000;
/// Every this many messages, one is cancelled (when its time is still ahead).
const CANCEL_EVERY: u64 = 6;
/// `timerRollWindowSlot` in this scenario: 6 s.
const ROLL_WINDOW_SLOTS: i64 = 6;
/// `timerFlushIntervalMs` in this scenario.
const TIMER_FLUSH: Duration = Duration::from_millis(500);
/// Once the broker is up, a message is delivered within this after its time: its slot ends
/// up to a second after it, the enqueue pipeline catches up on the next second, and the slot's
/// puts follow.
const LATE: Duration = Duration::from_millis(2_500);
/// How long after the faults' end the broker may take to recover before [`LATE`] applies.
const RECOVERY: Duration = Duration::from_secs(10);
/// The consumer's name in the history.
const CONSUMER: &str = "consumer";

/// `timerCongestNumEachSlot` on a third of the seeds (seed divisible by 3): a slot holding
/// two messages takes a third only by chance and a fifth never.
const CONGESTED_SLOT: i64 = 2;

/// Whether this seed's broker puts slots under flow control (read from the seed, so that no
/// random draw moves).
fn flow_controlled() -> bool {
    madsim::runtime::Handle::current().seed().is_multiple_of(3)
}

fn tune(config: &mut BrokerConfig) {
    config.flush_offsets_interval_ms = 500;
    config.timer.settings = TimerSettings::new(true, 1_000, ROLL_WINDOW_SLOTS, 60);
    if flow_controlled() {
        config.timer.settings.congest_num_each_slot = CONGESTED_SLOT;
    }
    config.timer.flush_interval_ms = TIMER_FLUSH.as_millis() as u64;
    config.timer.log_file_bytes = 40 * 52;
}

/// The delay (ms) message `id` asks for, from now: past, within the window, or beyond it.
fn draw_delay() -> i64 {
    let mut rng = thread_rng();
    match rng.gen_range(0..100) {
        0..10 => -rng.gen_range(0..3_000),
        10..65 => rng.gen_range(200..5_000),
        _ => rng.gen_range(6_000..25_000),
    }
}

/// The producers, each sending its share one message at a time.
async fn produce(history: History, done: Arc<AtomicBool>) {
    let lanes: Vec<_> =
        (0..PRODUCERS).map(|lane| tokio::spawn(produce_lane(history.clone(), lane))).collect();
    for lane in lanes {
        lane.await.unwrap();
    }
    done.store(true, Ordering::Release);
}

async fn produce_lane(history: History, lane: u64) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    for id in (lane..MESSAGES).step_by(PRODUCERS as usize) {
        let queue = thread_rng().gen_range(0..QUEUES);
        let due = wall_ms() + draw_delay();
        let body_hash = body_hash(&workload::body(id, BODY_BYTES));
        history.record(Event::Sent { id, mode: SendMode::Sync, body_hash, due_wall: Some(due) });
        let extra = format!("{}\u{1}{due}\u{2}", names::DELIVER_MS);
        let outcome = workload::send_with(&client, BROKER, TOPIC, queue, id, BODY_BYTES, &extra);
        let acked = settle(&history, id, outcome.await);
        if acked && id % CANCEL_EVERY == 0 && due > wall_ms() + 500 {
            cancel(&client, &history, id, queue, due).await;
        }
        let pause = if acked { thread_rng().gen_range(0..150) } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Sends a cancel of message `id` (due at `due`); records it when acknowledged.
async fn cancel(client: &RemotingClient, history: &History, id: u64, queue: i32, due: i64) {
    let key = delete_key(TOPIC, &workload::unique_key(id));
    let extra =
        format!("{}\u{1}{due}\u{2}{}\u{1}{key}\u{2}", names::DELIVER_MS, names::DEL_UNIQKEY);
    let cancel_id = CANCEL_BASE + id;
    let sent = workload::send_with(client, BROKER, TOPIC, queue, cancel_id, BODY_BYTES, &extra);
    // In doubt or refused (its time passed on the way, the broker was down): the message may
    // or may not go, and nothing is promised of it.
    let acked_wall = matches!(sent.await, SendOutcome::Acked { .. }).then(wall_ms);
    history.record(Event::Cancelled { id, acked_wall });
}

/// Records what became of one send; whether it was acknowledged.
fn settle(history: &History, id: u64, outcome: SendOutcome) -> bool {
    match outcome {
        SendOutcome::Acked { stored_at, .. } => {
            // A timer message waits in the timer topic: its place is not where it is read.
            history.record(Event::Acked { id, place: None, stored_at: stored_at.first().copied() });
            true
        }
        SendOutcome::Unknown | SendOutcome::NotDurable { .. } => {
            history.record(Event::InDoubt { id });
            false
        }
        SendOutcome::Refused { code } => {
            // SYSTEM_ERROR: a slot under flow control, only where the seed turned it on.
            let congested = code == response::SYSTEM_ERROR && flow_controlled();
            assert!(
                code == response::SERVICE_NOT_AVAILABLE
                    || code == response::SYSTEM_BUSY
                    || congested,
                "send of {id} refused with {code}"
            );
            history.record(Event::Refused { id, code });
            false
        }
    }
}

/// The messages that must be delivered: acknowledged, and no cancel sent for them.
fn expected(entries: &[Entry]) -> BTreeSet<u64> {
    let cancelled: BTreeSet<u64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Cancelled { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    let acked = entries.iter().filter_map(|e| match e.event {
        Event::Acked { id, .. } => Some(id),
        _ => None,
    });
    acked.filter(|id| !cancelled.contains(id)).collect()
}

/// Waits until every expected message was delivered, or until `bound` after the last time
/// any message is due.
async fn settle_all(history: &History, bound: Duration) {
    let last_due = history
        .entries()
        .iter()
        .filter_map(|e| match e.event {
            Event::Sent { due_wall, .. } => due_wall,
            _ => None,
        })
        .max()
        .unwrap_or(0);
    loop {
        let entries = history.entries();
        let delivered = history.delivered(Some(CONSUMER));
        if expected(&entries).is_subset(&delivered)
            || wall_ms() > last_due + bound.as_millis() as i64
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let done = Arc::new(AtomicBool::new(false));
    let cluster = Cluster::builder().tune(tune).disk_faults(schedule.disk).build(&history);
    let produced = cluster.client("producer").spawn(produce(history.clone(), done.clone()));
    let config = clients::push_config(GROUP, TOPIC);
    let consuming = clients::push_consume(CONSUMER.into(), history.clone(), config);
    let _consuming = cluster.client(CONSUMER).spawn(consuming);
    for fault in &schedule.faults {
        while history.sends_settled() < fault.after && !done.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(thread_rng().gen_range(0..3_000))).await;
        cluster.strike(0, fault).await;
    }
    cluster.heal();
    produced.await.unwrap();
    settle_all(&history, RECOVERY + Duration::from_secs(30)).await;
    // A little longer, so that a copy stored twice or a cancelled message would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = cluster.client("operator").spawn(ask_timer_metrics()).await.unwrap();
    cluster.check_invariants();
    let entries = history.entries();
    let verdicts = [
        checkers::never_early(&entries),
        delivered_on_time(&entries),
        checkers::stored_once(&entries),
        cancels_hold(&entries),
        checkers::one_message_per_place(&entries),
        checkers::intact(&entries),
        timer_metrics_hold(&entries, metrics),
    ];
    checkers::conclude(&verdicts);
    let stats = cluster.brokers[0].disk.stats();
    cluster.stop().await;
    let cancels = entries.iter().filter(|e| matches!(e.event, Event::Cancelled { .. })).count();
    format!(
        "{}; {cancels} cancels acknowledged; disk: {} crashes, {} writes torn, {} failed fsyncs",
        history.summary(),
        stats.crashes,
        stats.writes_torn,
        stats.failed_syncs,
    )
}

/// GET_TIMER_METRICS once the faults are over, as a RocketMQ slave asks its master: the
/// answer's code and body.
async fn ask_timer_metrics() -> (i32, Vec<u8>) {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let ask = RemotingCommand::request(request::GET_TIMER_METRICS);
    match client.invoke(BROKER, ask, Duration::from_secs(3)).await {
        Ok(answer) => (answer.code, answer.body_bytes().to_vec()),
        Err(_) => (-1, Vec::new()),
    }
}

/// After the faults, the broker answers GET_TIMER_METRICS with RocketMQ's JSON, and its count
/// of the topic's waiting messages is no more than were sent and not refused.
fn timer_metrics_hold(entries: &[Entry], (code, body): (i32, Vec<u8>)) -> Verdict {
    let outcome = (|| {
        if code != response::SUCCESS {
            return Err(format!("GET_TIMER_METRICS answered {code} after the faults"));
        }
        let metrics: TimerMetrics = from_json(&body)
            .map_err(|e| format!("GET_TIMER_METRICS answered what is not its JSON: {e}"))?;
        let refused = entries.iter().filter(|e| matches!(e.event, Event::Refused { .. })).count();
        let sent = entries.iter().filter(|e| matches!(e.event, Event::Sent { .. })).count();
        let count = metrics.timing_count.get(TOPIC).map_or(0, |m| m.count);
        match (0..=(sent - refused) as i64).contains(&count) {
            true => Ok(format!("{count} of {TOPIC} waiting by the metrics")),
            false => Err(format!("the metrics count {count} waiting of {} sent", sent - refused)),
        }
    })();
    Verdict::new("timer_metrics_hold", outcome)
}

/// The wall time (ms) of the simulated instant `at` (the two clocks move together).
fn wall_at(at: tokio::time::Instant) -> i64 {
    wall_ms() - tokio::time::Instant::now().saturating_duration_since(at).as_millis() as i64
}

/// The wall time (ms) an event of the history happened at, if it did.
fn wall_of(entries: &[Entry], matches: impl Fn(&Event) -> bool) -> Option<i64> {
    entries.iter().find(|e| matches(&e.event)).map(|e| wall_at(e.at))
}

/// Every expected message is delivered; one due after the broker recovered from the faults
/// is delivered within [`LATE`] of its time.
fn delivered_on_time(entries: &[Entry]) -> Verdict {
    let healed = wall_of(entries, |e| *e == Event::Healed).unwrap_or(i64::MAX);
    let up_from = healed.saturating_add(RECOVERY.as_millis() as i64);
    let due = due_times(entries);
    let mut first: BTreeMap<u64, i64> = BTreeMap::new();
    for entry in entries {
        if let Event::Delivered { id, stored_wall, .. } = entry.event {
            first.entry(id).or_insert(stored_wall);
        }
    }
    let (mut timed, mut slowest) = (0, 0);
    for id in expected(entries) {
        let Some(&stored) = first.get(&id) else {
            let why = format!("acknowledged timer message {id} (due {}) never delivered", due[&id]);
            return Verdict::new("delivered_on_time", Err(why));
        };
        let due = due[&id];
        if due >= up_from {
            // A message due before its send was acknowledged is due then.
            let acked = wall_of(entries, |e| matches!(e, Event::Acked { id: a, .. } if *a == id));
            let late = stored - due.max(acked.unwrap_or(due));
            if late > LATE.as_millis() as i64 {
                let why = format!("timer message {id} due {due} delivered {late} ms late");
                return Verdict::new("delivered_on_time", Err(why));
            }
            timed += 1;
            slowest = slowest.max(late);
        }
    }
    let found = format!("{timed} due after recovery, the latest {slowest} ms after its time");
    Verdict::new("delivered_on_time", Ok(found))
}

/// Each message's time (wall ms).
fn due_times(entries: &[Entry]) -> BTreeMap<u64, i64> {
    entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Sent { id, due_wall: Some(due), .. } => Some((id, due)),
            _ => None,
        })
        .collect()
}

/// A message whose cancel was acknowledged before its time is never delivered; none is
/// delivered (stored) after its cancel was acknowledged.
fn cancels_hold(entries: &[Entry]) -> Verdict {
    let due = due_times(entries);
    let cancels: BTreeMap<u64, i64> = entries
        .iter()
        .filter_map(|e| match e.event {
            Event::Cancelled { id, acked_wall: Some(acked) } => Some((id, acked)),
            _ => None,
        })
        .collect();
    for entry in entries {
        let Event::Delivered { id, stored_wall, .. } = entry.event else { continue };
        let Some(&acked) = cancels.get(&id) else { continue };
        if acked < due[&id] || stored_wall > acked {
            let why = format!(
                "timer message {id} (due {}) stored at {stored_wall}, its cancel acknowledged at {acked}",
                due[&id]
            );
            return Verdict::new("cancels_hold", Err(why));
        }
    }
    Verdict::new("cancels_hold", Ok(format!("{} cancels acknowledged", cancels.len())))
}
