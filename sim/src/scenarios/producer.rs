//! The Rust producer under simulation: a NameServer, two SYNC_FLUSH brokers on simulated disks,
//! and a producer sending through `petrel-client`. One broker is the target of a swarm fault
//! plan while messages flow: power losses with torn writes, partitions, network latency.
//!
//! The promises checked at the end:
//! - every send succeeds: with one broker healthy, a failed attempt is retried on the other;
//! - every acknowledged message is stored exactly where its result says, and no message is
//!   stored twice on one broker (an attempt that timed out may have stored it on the other
//!   before the retry: at least once, as RocketMQ's producer).
//!
//! Run one seed: `cargo sim --seed 7 --scenario producer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::faults::{strike, FaultPlan, Target};
use crate::{report, sim_broker_config, workload};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use petrel::broker;
use petrel_client::{Message, Producer, ProducerConfig, SendResult};
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::{SimDisk, SimDiskFaults};

const NAMESRV: &str = "10.0.0.1:9876";
const TOPIC: &str = "SimSpread";
const MESSAGES: u64 = 150;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("constant address")
}

async fn produce(results: Arc<std::sync::Mutex<Vec<(u64, SendResult)>>>) {
    let config = ProducerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        send_timeout: Duration::from_secs(2),
        ..ProducerConfig::default()
    };
    let producer = Producer::start(config).unwrap();
    // The topic is made on both brokers first, as an operator does: a topic created by its
    // first send lives only on the brokers that send reached, and a retry needs another.
    let admin = RemotingClient::new(ClientConfig::default(), None);
    for broker in ["10.0.1.1:10911", "10.0.1.2:10911"] {
        while !workload::create_topic(&admin, broker, TOPIC, 4).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // both brokers registered it
    for id in 0..MESSAGES {
        let message = Message::new(TOPIC, workload::body(id, 200)).with_keys([format!("k{id}")]);
        let result = producer.send(&message).await;
        let result =
            result.unwrap_or_else(|e| panic!("send {id} failed with one broker healthy: {e}"));
        results.lock().unwrap().push((id, result));
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(0..30))).await;
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    crate::spawn_namesrv(&handle);
    let mut brokers = Vec::new();
    for (name, address) in [("broker-a", "10.0.1.1"), ("broker-b", "10.0.1.2")] {
        let seed: u64 = thread_rng().gen();
        let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
        let disk = SimDisk::new(seed, 1 << 30, faults);
        let node_disk = disk.clone();
        let node = handle
            .create_node()
            .name(name)
            .ip(ip(address))
            .init(move || {
                let disk = node_disk.clone();
                async move {
                    let config = sim_broker_config(name, address, NAMESRV);
                    let _running = broker::start(config, Arc::new(disk)).await.unwrap();
                    std::future::pending::<()>().await;
                }
            })
            .build();
        brokers.push((node.id(), disk, format!("{address}:10911"), name));
    }
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let producer = handle.create_node().name("producer").ip(ip("10.0.2.1")).build();
    let sending = producer.spawn(produce(results.clone()));

    // One broker is the target of a swarm fault plan, its steps counted in sends.
    let victim = thread_rng().gen_range(0..2usize);
    let (victim_id, victim_disk) = (brokers[victim].0, brokers[victim].1.clone());
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    report::note(format!(
        "fault schedule of {} (a step is a send):\n{schedule}",
        brokers[victim].3
    ));
    schedule.apply_latency();
    victim_disk.set_faults(schedule.disk);
    let target = Target { handle: &handle, node: victim_id, disk: &victim_disk };
    for fault in &schedule.faults {
        while (results.lock().unwrap().len() as u64) < fault.after && !sending.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        strike(&target, fault, || {}).await;
    }
    sending.await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every acknowledged message is where its result says, on its broker.
    let checker = handle.create_node().name("checker").ip(ip("10.0.2.2")).build();
    let results = results.lock().unwrap().clone();
    let brokers: BTreeMap<String, String> =
        brokers.iter().map(|(_, _, addr, name)| (name.to_string(), addr.clone())).collect();
    checker.spawn(check(brokers, results)).await.unwrap()
}

/// Reads every queue of both brokers: every acknowledged message is where its result says,
/// and no message is stored twice on one broker.
async fn check(brokers: BTreeMap<String, String>, results: Vec<(u64, SendResult)>) -> String {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut stored: BTreeMap<(String, i32, i64), u64> = BTreeMap::new();
    for (name, addr) in &brokers {
        for queue in 0..4 {
            let mut offset = 0;
            loop {
                let pulled =
                    workload::pull(&client, addr, "Check", TOPIC, queue, offset, Duration::ZERO)
                        .await
                        .unwrap();
                if pulled.messages.is_empty() {
                    break;
                }
                for m in &pulled.messages {
                    assert!(stored.insert((name.clone(), queue, m.queue_offset), m.id).is_none());
                }
                offset = pulled.next_begin_offset;
            }
        }
    }
    let mut per_broker = std::collections::BTreeSet::new();
    for ((name, _, _), id) in &stored {
        assert!(per_broker.insert((name.clone(), *id)), "message {id} stored twice on {name}");
    }
    for (id, result) in &results {
        let place = (result.queue.broker_name.clone(), result.queue.queue_id, result.queue_offset);
        assert_eq!(stored.get(&place), Some(id), "message {id} acknowledged at {place:?}");
    }
    format!("{} sent, {} stored", results.len(), stored.len())
}
