//! The Rust push consumer under simulation: a NameServer, a SYNC_FLUSH broker, a producer and
//! two members of one consumer group. One member loses power while messages flow and comes
//! back later; the group rebalances around it both times, by an allocation strategy drawn
//! from the seed (averagely, by circle, or consistent hashing).
//!
//! The promises checked at the end:
//! - every acknowledged message is consumed;
//! - a message is consumed at most once more per membership change it lived through (three
//!   here: the second member taking its share, the failure, the return).
//!
//! Run one seed: `cargo sim --seed 7 --scenario consumer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{report, workload};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage,
};
use petrel_core::client::allocate::Strategy;
use petrel_storage::disk::{SimDisk, SimDiskFaults};

const NAMESRV: &str = "10.0.0.1:9876";
const TOPIC: &str = "SimConsumed";
const MESSAGES: u64 = 200;

type Consumed = Arc<Mutex<Vec<u64>>>;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

async fn member(consumed: Consumed, strategy: Strategy) {
    let config = PushConsumerConfig {
        strategy,
        namesrv_addrs: vec![NAMESRV.into()],
        group: "SimGroup".into(),
        subscriptions: [(TOPIC.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_secs(1),
        commit_interval: Duration::from_millis(500),
        hold: Duration::from_millis(500),
        ..PushConsumerConfig::default()
    };
    let _consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        consumed.lock().unwrap().push(workload::body_id(&message.body).unwrap());
        ConsumeResult::Success
    })
    .unwrap();
    std::future::pending::<()>().await;
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    let strategy = [Strategy::Averagely, Strategy::AveragelyByCircle, Strategy::CONSISTENT_HASH]
        [thread_rng().gen_range(0..3usize)];
    report::note(format!("allocation strategy: {}", strategy.name()));
    crate::spawn_namesrv(&handle);
    let disk = SimDisk::new(thread_rng().gen(), 1 << 30, SimDiskFaults::default());
    crate::spawn_broker(&handle, &disk);
    let consumed: Consumed = Arc::default();
    let mut members = Vec::new();
    for (n, address) in ["10.0.2.1", "10.0.2.2"].iter().enumerate() {
        let consumed = consumed.clone();
        let node = handle
            .create_node()
            .name(format!("member-{n}"))
            .ip(ip(address))
            .init(move || member(consumed.clone(), strategy))
            .build();
        members.push(node.id());
    }
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let producer_acked = acked.clone();
    let producer = handle.create_node().name("producer").ip(ip("10.0.3.1")).build();
    let sending = producer.spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let config =
            ProducerConfig { namesrv_addrs: vec![NAMESRV.into()], ..ProducerConfig::default() };
        let producer = Producer::start(config).unwrap();
        for id in 0..MESSAGES {
            if producer.send(&Message::new(TOPIC, workload::body(id, 100))).await.is_ok() {
                producer_acked.lock().unwrap().push(id);
            }
            tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(5..40))).await;
        }
    });

    // One member fails after a random number of sends and comes back a while later.
    let target = thread_rng().gen_range(10..MESSAGES as usize / 2);
    while acked.lock().unwrap().len() < target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = members[thread_rng().gen_range(0..2usize)];
    handle.kill(victim);
    tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(500..4_000))).await;
    handle.restart(victim);
    sending.await.unwrap();

    check(&acked, &consumed).await
}

/// Waits until every acknowledged message was consumed, then bounds the duplicates.
async fn check(acked: &Mutex<Vec<u64>>, consumed: &Mutex<Vec<u64>>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let missing = |acked: &[u64], consumed: &[u64]| -> Vec<u64> {
        acked.iter().filter(|id| !consumed.contains(id)).copied().collect()
    };
    loop {
        let lost = missing(&acked.lock().unwrap(), &consumed.lock().unwrap());
        if lost.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged but never consumed: {lost:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut deliveries: BTreeMap<u64, usize> = BTreeMap::new();
    for id in consumed.lock().unwrap().iter() {
        *deliveries.entry(*id).or_default() += 1;
    }
    // Each membership change while messages flow may hand a queue over at a commit older than
    // the old owner's last consumption (the commit interval's window). The topic is created by
    // the first send, so the members take its queues one after the other then (one change),
    // and the failure and the return are two more: at most 1 + 3 deliveries.
    let worst = deliveries.values().max().copied().unwrap_or(0);
    assert!(worst <= 4, "a message delivered {worst} times: {deliveries:?}");
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    format!("{} acked, {duplicates} duplicates", acked.lock().unwrap().len())
}
