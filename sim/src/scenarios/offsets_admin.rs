//! An operator moving consumer offsets under simulation: a SYNC_FLUSH broker holding a topic
//! of 4 queues (80 messages, sent before any fault: half before a time `T`, half after), whose
//! disk and network then come under a swarm plan with two more power losses, and an admin
//! node that, 300 times, commits an offset of a source group (UPDATE_CONSUMER_OFFSET, what a
//! member or mqadmin's updateOffset does), clones the source group's offsets into a second
//! group (CLONE_GROUP_OFFSET: mqadmin's cloneGroupOffset), resets a third group to `T` as
//! mqadmin's resetOffsetByTime does when no member is online (SEARCH_OFFSET_BY_TIMESTAMP, then
//! UPDATE_CONSUMER_OFFSET of each queue), or reads a group's offset (QUERY_CONSUMER_OFFSET).
//! Once the faults are over it clones and resets once more and reads every offset back.
//!
//! The promises checked:
//! - every offset read is one some commit, clone or reset could still have left there
//!   ([`crate::registers`]); the broker writes offsets out every `flushConsumerOffsetInterval`
//!   (as RocketMQ), so a crash may take a group back to any offset it had before: after a
//!   crash only what was written since replaces an older value;
//! - the offset a search for `T` answers is never past the first message stored at or after
//!   `T` (a reset by time skips nothing), and is that message's when reads are not flipped;
//! - on the healed cluster, a clone answered SUCCESS leaves the clone group at the source's
//!   offsets, and a reset by time leaves the group at each queue's first message after `T`,
//!   within [`LIVENESS`].
//!
//! Run one seed: `cargo sim --seed 7 --scenario offsets_admin`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel::broker::BrokerConfig;
use petrel_core::broker::subscriptions::SubscriptionGroupConfig;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    CloneGroupOffsetRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use tokio::time::Instant;

use crate::checkers::Verdict;
use crate::cluster::{Cluster, Strike};
use crate::faults::FaultPlan;
use crate::history::{wall_ms, Event, History};
use crate::registers::{Operator, Value};
use crate::{clients, report};

const TOPIC: &str = "SimOffsets";
const SOURCE: &str = "SimOffsetsSource";
const CLONE: &str = "SimOffsetsClone";
const RESET: &str = "SimOffsetsReset";
const QUEUES: i32 = 4;
/// Messages sent before `T`, and as many after.
const HALF: u64 = 40;
/// The admin's requests; the faults are placed along them.
const STEPS: u64 = 300;
/// Once the faults are over, the last clone and reset are made and read within this.
const LIVENESS: Duration = Duration::from_secs(30);

fn tune(config: &mut BrokerConfig) {
    config.default_topic_queue_nums = QUEUES;
    config.flush_offsets_interval_ms = 1_000;
}

fn register(group: &str, queue: i32) -> String {
    format!("{group} queue {queue}")
}

/// What the run knows of the topic: each queue's first offset stored at or after `T`, and
/// its end.
struct Topic {
    reset_time: i64,
    first_after: Vec<u64>,
    ends: Vec<u64>,
    /// Whether reads may come back with a bit flipped (a search may then stop short).
    flipped_reads: bool,
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm_restarting().schedule(STEPS);
    report::note(format!("fault schedule of broker-a (a step is an admin request):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().tune(tune).build(&history);
    let broker = cluster.broker_addrs()[0].clone();
    let producing = history.clone();
    let topic = cluster.client("producer").spawn(async move { produce(producing).await });
    let mut topic = topic.await.unwrap();
    topic.flipped_reads = schedule.disk.read_bitflip_ratio > 0.0;
    let topic = Arc::new(topic);

    let start = Instant::now();
    let shared = Operator::record(start);
    {
        let registers = &mut shared.lock().unwrap().registers;
        for group in [SOURCE, CLONE, RESET] {
            for queue in 0..QUEUES {
                registers.took(&register(group, queue), None, (start, start), "the start");
            }
        }
    }
    let misses = Arc::new(Mutex::new(Vec::new()));
    let admin = cluster.client("admin");
    let preparing = admin.spawn({
        let (shared, broker, topic) = (shared.clone(), broker.clone(), topic.clone());
        async move { prepare(&Operator::new(&broker, &shared), &topic).await }
    });
    preparing.await.unwrap();
    cluster.fault_disks(schedule.disk);
    let steps = Arc::new(AtomicU64::new(0));
    let operating = admin.spawn({
        let (shared, steps, broker) = (shared.clone(), steps.clone(), broker.clone());
        let (topic, misses) = (topic.clone(), misses.clone());
        async move { operate(&Operator::new(&broker, &shared), &topic, &misses, &steps).await }
    });
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))).collect();
    cluster.play(strikes, || steps.load(Ordering::Acquire), || operating.is_finished()).await;
    cluster.heal();
    operating.await.unwrap();
    let settling = admin.spawn({
        let (shared, topic, misses) = (shared.clone(), topic.clone(), misses.clone());
        async move { settle(&Operator::new(&broker, &shared), &topic, &misses).await }
    });
    settling.await.unwrap();
    cluster.check_invariants();

    let name = crate::cluster::broker_name(0);
    let lapses = history.entries().into_iter().filter(|e| {
        matches!(&e.event, Event::Crashed { node, .. } | Event::Stopped { node, .. } if *node == name)
    });
    let lapses: Vec<Instant> = lapses.map(|e| e.at).collect();
    {
        let registers = &mut shared.lock().unwrap().registers;
        lapses.iter().for_each(|at| registers.lapse(*at));
    }
    let misses = misses.lock().unwrap().clone();
    let verdict = Verdict::new(
        "searches by time skip nothing",
        match misses.first() {
            None => Ok(format!("the first after T: {:?}", topic.first_after)),
            Some(miss) => Err(miss.clone()),
        },
    );
    Operator::conclude(&shared, vec![verdict]);
    cluster.stop().await;
    format!(
        "{STEPS} admin requests under {} faults, {} crashes",
        schedule.faults.len(),
        lapses.len()
    )
}

/// Sends the topic's messages, half before `T` and half after, with no fault yet; where each
/// queue's first message at or after `T` is.
async fn produce(history: History) -> Topic {
    // Once the broker has registered: a send before finds no route.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = clients::produce(history.clone(), TOPIC, 0..HALF, 100, 0..20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reset_time = wall_ms();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = clients::produce(history.clone(), TOPIC, HALF..2 * HALF, 100, 0..20).await;
    assert_eq!(before.len() + after.len(), 2 * HALF as usize, "a send failed with no fault");
    let mut first_after = vec![u64::MAX; QUEUES as usize];
    let mut ends = vec![0; QUEUES as usize];
    for entry in history.entries() {
        if let Event::Acked { id, place: Some(place), .. } = entry.event {
            let (queue, offset) = (place.queue as usize, place.offset as u64);
            ends[queue] = ends[queue].max(offset + 1);
            if id >= HALF {
                first_after[queue] = first_after[queue].min(offset);
            }
        }
    }
    for (first, end) in first_after.iter_mut().zip(&ends) {
        *first = (*first).min(*end);
    }
    Topic { reset_time, first_after, ends, flipped_reads: false }
}

/// The three groups (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, as mqadmin's updateSubGroup: a
/// broker takes offsets only of a group it knows) and the source group's first offsets, made
/// before the faults begin and given time to be written out.
async fn prepare(op: &Operator, topic: &Topic) {
    for group in [SOURCE, CLONE, RESET] {
        let config = to_json(&SubscriptionGroupConfig::named(group), JsonStyle::Fastjson);
        let command = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP);
        let command = command.with_body(config);
        let answer = op.ask("UPDATE_AND_CREATE_SUBSCRIPTIONGROUP", command).await;
        assert_eq!(answer.map(|r| r.code), Some(response::SUCCESS), "{group} not created");
    }
    for queue in 0..QUEUES {
        let offset = thread_rng().gen_range(0..=topic.ends[queue as usize]);
        while !commit(op, SOURCE, queue, offset).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

/// The admin's requests: [`STEPS`] of them, 50-250 ms apart, each drawn at random.
async fn operate(op: &Operator, topic: &Topic, misses: &Mutex<Vec<String>>, steps: &AtomicU64) {
    for step in 0..STEPS {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(50..250))).await;
        let queue = thread_rng().gen_range(0..QUEUES);
        match thread_rng().gen_range(0..8) {
            0 | 1 => {
                let offset = thread_rng().gen_range(0..=topic.ends[queue as usize]);
                commit(op, SOURCE, queue, offset).await;
            }
            2 => {
                clone(op).await;
            }
            3 => {
                reset(op, topic, misses).await;
            }
            _ => {
                let group = [SOURCE, CLONE, RESET][thread_rng().gen_range(0..3)];
                read(op, group, queue).await;
            }
        }
        steps.store(step + 1, Ordering::Release);
    }
}

/// UPDATE_CONSUMER_OFFSET of `group`'s `queue`; whether it was answered SUCCESS.
async fn commit(op: &Operator, group: &str, queue: i32, offset: u64) -> bool {
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: TOPIC.to_owned(),
        queue_id: queue,
        commit_offset: offset as i64,
    };
    let command = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(&header);
    op.write(("UPDATE_CONSUMER_OFFSET", command), &register(group, queue), value(offset)).await
}

fn value(offset: u64) -> Value {
    Some(offset.to_string())
}

/// CLONE_GROUP_OFFSET of the topic from the source group to the clone group (offline or not:
/// the source has no members); whether it was answered SUCCESS.
async fn clone(op: &Operator) -> bool {
    let header = CloneGroupOffsetRequestHeader {
        src_group: SOURCE.to_owned(),
        dest_group: CLONE.to_owned(),
        topic: Some(TOPIC.to_owned()),
        offline: Some(thread_rng().gen_bool(0.5)),
    };
    let command = RemotingCommand::request(request::CLONE_GROUP_OFFSET).with_header(&header);
    let sent = Instant::now();
    let reply = op.ask("CLONE_GROUP_OFFSET", command).await;
    let took = reply.is_some_and(|r| r.code == response::SUCCESS);
    let answered = took.then(Instant::now);
    let registers = &mut op.recorded().registers;
    for queue in 0..QUEUES {
        registers.copy(&register(SOURCE, queue), &register(CLONE, queue), sent, answered);
    }
    took
}

/// The reset group to `T` as mqadmin makes it with no member online: each queue's offset for
/// `T` searched, then committed. Whether every queue was.
async fn reset(op: &Operator, topic: &Topic, misses: &Mutex<Vec<String>>) -> bool {
    let mut all = true;
    for queue in 0..QUEUES {
        let header = SearchOffsetRequestHeader {
            topic: TOPIC.to_owned(),
            queue_id: queue,
            timestamp: topic.reset_time,
            boundary_type: None,
        };
        let command =
            RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(&header);
        let found = match op.ask("SEARCH_OFFSET_BY_TIMESTAMP", command).await {
            Some(r) if r.code == response::SUCCESS => {
                r.header::<OffsetResponseHeader>().unwrap().offset as u64
            }
            _ => {
                all = false;
                continue;
            }
        };
        let first = topic.first_after[queue as usize];
        if found > first || (found != first && !topic.flipped_reads) {
            misses.lock().unwrap().push(format!(
                "queue {queue}: the search for T answered {found}, its first message at or \
                 after T is at {first}"
            ));
        }
        all &= commit(op, RESET, queue, found).await;
    }
    all
}

/// QUERY_CONSUMER_OFFSET of `group`'s `queue` (QUERY_NOT_FOUND: none); what it answered, if
/// it did.
async fn read(op: &Operator, group: &str, queue: i32) -> Option<Value> {
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: TOPIC.to_owned(),
        queue_id: queue,
        set_zero_if_not_found: Some(false),
    };
    let command = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(&header);
    let sent = Instant::now();
    let read = match op.ask("QUERY_CONSUMER_OFFSET", command).await? {
        r if r.code == response::SUCCESS => {
            value(r.header::<OffsetResponseHeader>().unwrap().offset as u64)
        }
        r if r.code == response::QUERY_NOT_FOUND => None,
        _ => return None,
    };
    op.read(&register(group, queue), read.clone(), sent);
    Some(read)
}

/// On the healed cluster: the source's offsets read, a clone and a reset made, and every
/// offset read again, each request asked again until answered, within [`LIVENESS`]. The
/// clone group then holds the source's offsets and the reset group each queue's first
/// message after `T`.
async fn settle(op: &Operator, topic: &Topic, misses: &Mutex<Vec<String>>) {
    // Requests the faults held back land first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deadline = Instant::now() + LIVENESS;
    let again = || {
        assert!(
            Instant::now() < deadline,
            "the broker did not answer {LIVENESS:?} after the faults"
        );
        tokio::time::sleep(Duration::from_millis(200))
    };
    let read_surely = |group: &'static str, queue: i32| async move {
        loop {
            match read(op, group, queue).await {
                Some(value) => break value,
                None => again().await,
            }
        }
    };
    let mut source = BTreeMap::new();
    for queue in 0..QUEUES {
        source.insert(queue, read_surely(SOURCE, queue).await);
    }
    while !clone(op).await {
        again().await;
    }
    while !reset(op, topic, misses).await {
        again().await;
    }
    for queue in 0..QUEUES {
        let (cloned, reset) = (read_surely(CLONE, queue).await, read_surely(RESET, queue).await);
        if read_surely(SOURCE, queue).await == source[&queue] {
            assert_eq!(cloned, source[&queue], "the clone of queue {queue} on the healed cluster");
        }
        let first = value(topic.first_after[queue as usize]);
        assert_eq!(reset, first, "the reset of queue {queue} on the healed cluster");
    }
}
