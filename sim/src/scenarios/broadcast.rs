//! Broadcasting consumers under simulation: a NameServer, a SYNC_FLUSH broker, a producer
//! and two members of one broadcasting group, each keeping its offsets in its own local file.
//! One member loses power while messages flow and comes back later, reading its file again.
//!
//! The promises checked at the end:
//! - every member consumes every acknowledged message;
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::workload;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, MessageModel, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage, SendStatus,
};
use petrel_storage::disk::{SimDisk, SimDiskFaults};

const NAMESRV: &str = "10.0.0.1:9876";
const TOPIC: &str = "SimBroadcast";
const MESSAGES: u64 = 200;

/// How often members write their offsets files in this scenario.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Time to spare on top of that interval when bounding a redelivery.
const MARGIN: Duration = Duration::from_millis(500);

/// Every delivery to one member: the message id and when.
type Consumed = Arc<Mutex<Vec<(u64, tokio::time::Instant)>>>;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

async fn member(dir: PathBuf, instance: String, consumed: Consumed) {
    let config = PushConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: "SimEveryone".into(),
        subscriptions: [(TOPIC.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        message_model: MessageModel::Broadcasting,
        local_offsets_dir: dir,
        instance_name: instance,
        rebalance_interval: Duration::from_secs(1),
        commit_interval: COMMIT_INTERVAL,
        hold: Duration::from_millis(500),
        ..PushConsumerConfig::default()
    };
    let _consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        let id = workload::body_id(&message.body).unwrap();
        consumed.lock().unwrap().push((id, tokio::time::Instant::now()));
        ConsumeResult::Success
    })
    .unwrap();
    std::future::pending::<()>().await;
}

/// Waits until every member consumed every acknowledged message.
async fn wait_all_consumed(acked: &Mutex<Vec<u64>>, members: &[Consumed]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (n, consumed) in members.iter().enumerate() {
        loop {
            let lost: Vec<u64> = {
                let consumed = consumed.lock().unwrap();
                let ids: BTreeSet<u64> = consumed.iter().map(|(id, _)| *id).collect();
                acked.lock().unwrap().iter().filter(|id| !ids.contains(id)).copied().collect()
            };
            if lost.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {n} never consumed acknowledged messages {lost:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
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
    crate::spawn_namesrv(&handle);
    let disk = SimDisk::new(thread_rng().gen(), 1 << 30, SimDiskFaults::default());
    crate::spawn_broker(&handle, &disk);
    let consumed: [Consumed; 2] = Default::default();
    let mut members = Vec::new();
    for (n, address) in ["10.0.2.1", "10.0.2.2"].iter().enumerate() {
        let (consumed, dir) = (consumed[n].clone(), dir.clone());
        let node = handle
            .create_node()
            .name(format!("member-{n}"))
            .ip(ip(address))
            .init(move || member(dir.clone(), format!("member-{n}"), consumed.clone()))
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
            let sent = producer.send(&Message::new(TOPIC, workload::body(id, 100))).await;
            if sent.is_ok_and(|s| s.status == SendStatus::Ok) {
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
    let victim = thread_rng().gen_range(0..2usize);
    let crash = tokio::time::Instant::now();
    handle.kill(members[victim]);
    tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(500..4_000))).await;
    handle.restart(members[victim]);
    sending.await.unwrap();
    wait_all_consumed(&acked, &consumed).await;

    check_deliveries(&consumed, victim, crash);
    let _ = std::fs::remove_dir_all(&dir);
    format!(
        "{} acked; member {victim} failed and consumed {} times in all",
        acked.lock().unwrap().len(),
        consumed[victim].lock().unwrap().len()
    )
}

/// The survivor consumed each message once; the victim at most twice, and twice only what it
/// consumed within a commit interval (plus a margin) before it failed at `crash`.
fn check_deliveries(consumed: &[Consumed], victim: usize, crash: tokio::time::Instant) {
    for (n, consumed) in consumed.iter().enumerate() {
        let mut deliveries: BTreeMap<u64, Vec<tokio::time::Instant>> = BTreeMap::new();
        for (id, at) in consumed.lock().unwrap().iter() {
            deliveries.entry(*id).or_default().push(*at);
        }
        for (id, times) in &deliveries {
            let allowed = if n == victim { 2 } else { 1 };
            assert!(
                times.len() <= allowed,
                "member {n} consumed message {id} {} times",
                times.len()
            );
            // The victim rewinds to its last offsets file: only what it consumed within a
            // commit interval before the crash comes again.
            if times.len() == 2 {
                let before = crash.duration_since(times[0]);
                assert!(
                    times[0] <= crash && before <= COMMIT_INTERVAL + MARGIN,
                    "message {id} came again though consumed {before:?} before the crash"
                );
            }
        }
    }
}
