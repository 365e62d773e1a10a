//! The Rust lite pull consumer under simulation: a NameServer, a SYNC_FLUSH broker on a
//! simulated disk under a swarm fault plan (power losses, partitions, latency, torn writes)
//! while messages flow, a producer, and a pull consumer that polls every queue and now and
//! then seeks one of them somewhere it has read.
//!
//! The promises checked at the end:
//! - a seek is obeyed: the next message the consumer gets from that queue is the one at the
//!   offset it sought;
//! - a (queue, offset) never names two different messages, and an acknowledged message is
//!   read exactly where the acknowledgement said it was stored;
//! - after the last fault, seeking every queue to its start reads every acknowledged message;
//! - a commit is kept: a new consumer of the group starts where the last one committed.
//!
//! Run one seed: `cargo sim --seed 7 --scenario pull_consumer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{Cluster, NAMESRV};
use crate::faults::FaultPlan;
use crate::history::History;
use crate::{report, workload};
use madsim::rand::{thread_rng, Rng};
use petrel_client::{
    ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
    ReceivedMessage, SendStatus,
};
use petrel_core::client::MessageQueue;

const TOPIC: &str = "SimPulled";
const GROUP: &str = "SimSeekers";
const MESSAGES: u64 = 200;

/// Everything the clients saw, for the checkers.
#[derive(Default)]
struct Ledger {
    /// id -> (queue id, queue offset) the broker acknowledged, durable under SYNC_FLUSH.
    acked: BTreeMap<u64, (i32, i64)>,
    /// Sends tried, acknowledged or not.
    sent: u64,
    /// (queue id, offset) -> every id read there.
    read_at: BTreeMap<(i32, i64), BTreeSet<u64>>,
    /// Seeks whose first message was checked, and seeks made.
    seeks_checked: usize,
    seeks: usize,
    producer_done: bool,
    /// The last fault is over: the broker is up and reachable from now on.
    faults_done: bool,
}

type Shared = Arc<Mutex<Ledger>>;

async fn produce(ledger: Shared) {
    let config =
        ProducerConfig { namesrv_addrs: vec![NAMESRV.into()], ..ProducerConfig::default() };
    let producer = Producer::start(config).unwrap();
    for id in 0..MESSAGES {
        let result = producer.send(&Message::new(TOPIC, workload::body(id, 100))).await;
        {
            let mut ledger = ledger.lock().unwrap();
            ledger.sent += 1;
            if let Some(sent) = result.ok().filter(|s| s.status == SendStatus::Ok) {
                ledger.acked.insert(id, (sent.queue.queue_id, sent.queue_offset));
            }
        }
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(5..30))).await;
    }
    ledger.lock().unwrap().producer_done = true;
}

fn consumer() -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: GROUP.into(),
        consume_from: ConsumeFrom::First,
        pull_batch: 8,
        ..PullConsumerConfig::default()
    };
    PullConsumer::start(config).unwrap()
}

/// The topic's queues, once its route exists (the first send creates it).
async fn assigned(consumer: &PullConsumer) -> Vec<MessageQueue> {
    loop {
        if let Ok(queues) = consumer.queues(TOPIC).await {
            if !queues.is_empty() && consumer.assign(&queues).await.is_ok() {
                return queues;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn record(ledger: &Shared, messages: &[ReceivedMessage]) {
    let mut ledger = ledger.lock().unwrap();
    for m in messages {
        let id = workload::body_id(&m.body).unwrap();
        ledger.read_at.entry((m.queue.queue_id, m.queue_offset)).or_default().insert(id);
    }
}

/// Polls while the producer runs, seeking a random queue back or forward within what it has
/// read about one poll in eight. The first message from a sought queue must be the one sought.
async fn seek_around(ledger: Shared, consumer: &PullConsumer, queues: &[MessageQueue]) {
    let mut sought: BTreeMap<i32, i64> = BTreeMap::new();
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    while !{
        let ledger = ledger.lock().unwrap();
        ledger.producer_done && ledger.faults_done
    } {
        if thread_rng().gen_ratio(1, 8) {
            let queue = &queues[thread_rng().gen_range(0..queues.len())];
            let top = highest.get(&queue.queue_id).map_or(0, |h| h + 1);
            let offset = thread_rng().gen_range(0..=top);
            consumer.seek(queue, offset).unwrap();
            sought.insert(queue.queue_id, offset);
            ledger.lock().unwrap().seeks += 1;
        }
        let Ok(messages) = consumer.poll(Duration::from_millis(300)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        record(&ledger, &messages);
        for m in &messages {
            let queue = m.queue.queue_id;
            if let Some(offset) = sought.remove(&queue) {
                assert_eq!(m.queue_offset, offset, "queue {queue} was sought to {offset}");
                ledger.lock().unwrap().seeks_checked += 1;
            }
            let top = highest.entry(queue).or_insert(m.queue_offset);
            *top = (*top).max(m.queue_offset);
        }
    }
}

/// Seeks every queue to its start and reads until nothing new comes for a while; returns
/// the ids read.
async fn sweep(ledger: &Shared, consumer: &PullConsumer, queues: &[MessageQueue]) -> BTreeSet<u64> {
    for queue in queues {
        consumer.seek(queue, 0).unwrap();
    }
    let mut ids = BTreeSet::new();
    let mut quiet = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while quiet < 10 && tokio::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(300)).await {
            Ok(messages) if !messages.is_empty() => {
                quiet = 0;
                record(ledger, &messages);
                ids.extend(messages.iter().map(|m| workload::body_id(&m.body).unwrap()));
            }
            Ok(_) => quiet += 1,
            // The broker is up after the last fault, but a connection broken by it may take
            // a request to notice: try again, without counting it as quiet.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    ids
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!("fault schedule (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    let cluster = Cluster::builder().disk_faults(schedule.disk).build(&History::default());
    let ledger: Shared = Arc::default();
    let producer_ledger = ledger.clone();
    let sending = cluster.client("producer").spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        produce(producer_ledger).await;
    });
    let consumer_ledger = ledger.clone();
    let reading = cluster.client("consumer").spawn(async move {
        let consumer = consumer();
        let queues = assigned(&consumer).await;
        seek_around(consumer_ledger.clone(), &consumer, &queues).await;
        let swept = sweep(&consumer_ledger, &consumer, &queues).await;
        while consumer.commit().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        consumer.shutdown().await.unwrap();
        swept
    });

    // The faults start once a send was acknowledged: the first send creates the topic, and a
    // broker cut off before its first registration is unknown to the NameServer for a whole
    // registration period, so no route would exist for the consumer to read.
    while ledger.lock().unwrap().acked.is_empty() && !ledger.lock().unwrap().producer_done {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for fault in &schedule.faults {
        while ledger.lock().unwrap().sent < fault.after && !ledger.lock().unwrap().producer_done {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.strike(0, fault).await;
    }
    cluster.heal();
    ledger.lock().unwrap().faults_done = true;
    sending.await.unwrap();
    let swept = reading.await.unwrap();

    cluster.check_invariants();
    let summary = check(&ledger.lock().unwrap(), &swept);
    resume_check(&cluster).await;
    summary
}

/// The promises on what was read; a summary of the run.
fn check(ledger: &Ledger, swept: &BTreeSet<u64>) -> String {
    for ((queue, offset), ids) in &ledger.read_at {
        assert_eq!(ids.len(), 1, "queue {queue} offset {offset} named {ids:?}");
    }
    for (id, (queue, offset)) in &ledger.acked {
        assert!(swept.contains(id), "acknowledged message {id} not read after the last fault");
        let there = ledger.read_at.get(&(*queue, *offset));
        assert!(
            there.is_some_and(|ids| ids.contains(id)),
            "{id} acked at {queue}:{offset}, read elsewhere"
        );
    }
    format!(
        "{} acked, {} seeks ({} checked)",
        ledger.acked.len(),
        ledger.seeks,
        ledger.seeks_checked
    )
}

/// A new consumer of the group starts where the last one committed at shutdown: the end of
/// every queue, so it reads nothing old; a message sent now is the one it reads.
async fn resume_check(cluster: &Cluster) {
    cluster
        .client("resumer")
        .spawn(async move {
            let consumer = consumer();
            assigned(&consumer).await;
            let config =
                ProducerConfig { namesrv_addrs: vec![NAMESRV.into()], ..ProducerConfig::default() };
            let producer = Producer::start(config).unwrap();
            producer.send(&Message::new(TOPIC, workload::body(MESSAGES, 100))).await.unwrap();
            let mut read = Vec::new();
            for _ in 0..10 {
                let messages = consumer.poll(Duration::from_millis(300)).await.unwrap();
                read.extend(messages.iter().map(|m| workload::body_id(&m.body).unwrap()));
            }
            assert_eq!(read, vec![MESSAGES], "the group resumes at its committed offsets");
        })
        .await
        .unwrap();
}
