//! The Rust producer under simulation: a NameServer, two SYNC_FLUSH brokers on simulated disks,
//! and a producer sending through `petrel-client`. One broker is the target of a swarm fault
//! plan while messages flow: power losses with torn writes, partitions, network latency.
//!
//! Each message is sent sync, async (a few in flight) or oneway, as the seed draws.
//!
//! The promises checked at the end:
//! - every sync and async send succeeds: with one broker healthy, a failed attempt is retried
//!   on the other;
//! - every acknowledged message is stored exactly where its result says, whole, and no
//!   message is stored twice on one broker (an attempt that timed out may have stored it on
//!   the other before the retry: at least once, as RocketMQ's producer); a oneway message is
//!   stored at most once.
//!
//! Run one seed: `cargo sim --seed 7 --scenario producer`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::checkers::{self, Verdict};
use crate::cluster::{Cluster, Strike, NAMESRV};
use crate::faults::FaultPlan;
use crate::history::{body_hash, Entry, Event, History, Place, SendMode};
use crate::{report, workload};
use madsim::rand::{thread_rng, Rng};
use petrel_client::{ClientError, Message, Producer, ProducerConfig, SendResult, SendStatus};
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::SimDiskFaults;

const TOPIC: &str = "SimSpread";
const MESSAGES: u64 = 150;
/// At most this many async sends wait for their answers at once.
const ASYNC_IN_FLIGHT: usize = 4;
/// Once the faults are over, every acknowledged message is readable within this.
const LIVENESS: Duration = Duration::from_secs(30);

/// Records the outcome of an answered (sync or async) send of message `id`: acknowledged when
/// the broker says it is durable; stored but maybe not durable otherwise (FLUSH_DISK_TIMEOUT
/// after a failed fsync, for one).
fn settled(history: &History, id: u64, result: Result<SendResult, ClientError>) {
    let result = result.unwrap_or_else(|e| panic!("send {id} failed with one broker healthy: {e}"));
    if result.status != SendStatus::Ok {
        history.record(Event::InDoubt { id });
        return;
    }
    let queue = &result.queue;
    let place = Place {
        broker: queue.broker_name.clone(),
        topic: queue.topic.clone(),
        queue: queue.queue_id,
        offset: result.queue_offset,
    };
    let stored_at = petrel_client::raw::stored_at(&result.offset_msg_id);
    history.record(Event::Acked { id, place: Some(place), stored_at });
}

/// Sends every message once, each sync, async (up to a few in flight) or oneway as the seed
/// draws, recording each send and its outcome.
async fn produce(history: History) {
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
    let mut in_flight = std::collections::VecDeque::new();
    for id in 0..MESSAGES {
        let body = workload::body(id, 200);
        let mode = match thread_rng().gen_range(0..10) {
            0..5 => SendMode::Sync,
            5..9 => SendMode::Async,
            _ => SendMode::Oneway,
        };
        history.record(Event::Sent { id, mode, body_hash: body_hash(&body), due_wall: None });
        let message = Message::new(TOPIC, body).with_keys([format!("k{id}")]);
        match mode {
            SendMode::Sync => settled(&history, id, producer.send(&message).await),
            SendMode::Async => in_flight.push_back((id, producer.send_async(message))),
            SendMode::Oneway => {
                // A oneway send is never answered: stored or not, nobody is told.
                let _ = producer.send_oneway(&message).await;
                history.record(Event::InDoubt { id });
            }
        }
        while in_flight.len() > ASYNC_IN_FLIGHT || (id + 1 == MESSAGES && !in_flight.is_empty()) {
            let (id, handle) = in_flight.pop_front().unwrap();
            settled(&history, id, handle.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(0..30))).await;
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let history = History::default();
    let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
    let cluster = Cluster::builder().brokers(2).disk_faults(faults).build(&history);
    let sending = cluster.client("producer").spawn(produce(history.clone()));

    // One broker is the target of a swarm fault plan, its steps counted in sends.
    let victim = thread_rng().gen_range(0..2usize);
    let schedule = FaultPlan::swarm().schedule(MESSAGES);
    let name = &cluster.brokers[victim].name;
    report::note(format!("fault schedule of {name} (a step is a send):\n{schedule}"));
    schedule.apply_latency();
    cluster.brokers[victim].disk.set_faults(schedule.disk);
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(victim, f.clone())));
    cluster.play(strikes.collect(), || history.sends_settled(), || sending.is_finished()).await;
    cluster.heal();
    sending.await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every queue of both brokers is read back whole.
    let brokers: BTreeMap<String, String> =
        cluster.brokers.iter().map(|b| (b.name.clone(), b.addr.clone())).collect();
    cluster.client("checker").spawn(read_back(brokers, history.clone())).await.unwrap();
    cluster.check_invariants();
    let entries = history.entries();
    let mut verdicts = checkers::delivery(&entries, None, LIVENESS);
    verdicts.extend([checkers::offsets_advance(&entries), once_per_broker(&entries)]);
    checkers::conclude(&verdicts);
    cluster.stop().await;
    history.summary().to_string()
}

/// Reads every queue of both brokers from its start, recording what it reads.
async fn read_back(brokers: BTreeMap<String, String>, history: History) {
    let client = RemotingClient::new(ClientConfig::default(), None);
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
                    let place = Place {
                        broker: name.clone(),
                        topic: TOPIC.into(),
                        queue,
                        offset: m.queue_offset,
                    };
                    history.record(Event::Delivered {
                        consumer: "reader".into(),
                        place,
                        id: m.id,
                        body_hash: m.body_crc,
                        stored_wall: m.store_timestamp,
                    });
                }
                offset = pulled.next_begin_offset;
            }
        }
    }
}

/// No message is stored twice on one broker: the producer retries on another broker, and a
/// oneway send is never retried.
fn once_per_broker(entries: &[Entry]) -> Verdict {
    let mut stored = BTreeSet::new();
    for entry in entries {
        if let Event::Delivered { id, place, .. } = &entry.event {
            if !stored.insert((place.broker.as_str(), *id)) {
                let why = format!("message {id} stored twice on {}", place.broker);
                return Verdict::new("once_per_broker", Err(why));
            }
        }
    }
    Verdict::new("once_per_broker", Ok(format!("{} stored", stored.len())))
}
