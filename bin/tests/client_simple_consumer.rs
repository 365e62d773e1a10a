//! `petrel-client`'s POP consumer (`SimpleConsumer`) against an in-process NameServer and
//! broker: two members of one group share a topic with no rebalance, each message handed to
//! one of them; what is acknowledged is done, what is not comes back once its invisible
//! duration is over (with reconsume times 1, under the topic's name), and a longer invisible
//! duration holds a message back. Orderly members get each queue in order, one receive at a
//! time, the queue out until its messages are acknowledged or visible again, across a restart
//! too.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{loopback_config, namesrv, producer, wait_routed, Running};
use petrel::broker;
use petrel_client::raw;
use petrel_client::{Message, PoppedMessage, SimpleConsumer, SimpleConsumerConfig};
use petrel_storage::disk::FsDisk;

fn member(ns: &str) -> SimpleConsumer {
    SimpleConsumer::start(SimpleConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "Simple".into(),
        topic: "Popping".into(),
        await_duration: Duration::from_millis(300),
        ..SimpleConsumerConfig::default()
    })
    .unwrap()
}

/// Receives with both members until `want` ids came (or `within`), hiding each for
/// `invisible`; who got what, by id.
async fn receive_until(
    members: &[&SimpleConsumer],
    want: &BTreeSet<u64>,
    invisible: Duration,
    within: Duration,
) -> BTreeMap<u64, (usize, PoppedMessage)> {
    let deadline = Instant::now() + within;
    let mut got = BTreeMap::new();
    while Instant::now() < deadline && !want.iter().all(|id| got.contains_key(id)) {
        for (n, member) in members.iter().enumerate() {
            for popped in member.receive(16, invisible).await.unwrap() {
                let id = raw::body_id(&popped.message.body).unwrap();
                assert!(got.insert(id, (n, popped)).is_none(), "message {id} handed out twice");
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_a_topic_and_unacknowledged_messages_come_back() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    for id in 0..40 {
        producer.send(&Message::new("Popping", raw::body(id, 32))).await.unwrap();
    }
    let (a, b) = (member(&ns), member(&ns));
    let all: BTreeSet<u64> = (0..40).collect();
    let first =
        receive_until(&[&a, &b], &all, Duration::from_secs(2), Duration::from_secs(10)).await;
    assert_eq!(first.keys().copied().collect::<BTreeSet<_>>(), all, "each message to one member");
    let members = [&a, &b];
    assert!((0..2).all(|n| first.values().any(|(got, _)| *got == n)), "both members received");
    for (id, (n, popped)) in &first {
        assert_eq!(popped.message.topic, "Popping");
        match id % 4 {
            0 => {}
            1 => {
                let later = members[*n].change_invisible_duration(popped, Duration::from_secs(60));
                later.await.unwrap();
            }
            _ => members[*n].ack(popped).await.unwrap(),
        }
    }
    let back: BTreeSet<u64> = (0..40).filter(|id| id % 4 == 0).collect();
    let again =
        receive_until(&[&a, &b], &back, Duration::from_secs(60), Duration::from_secs(20)).await;
    assert_eq!(again.keys().copied().collect::<BTreeSet<_>>(), back, "exactly the unacknowledged");
    for (n, popped) in again.values() {
        assert_eq!(popped.message.reconsume_times, 1);
        assert_eq!(popped.message.topic, "Popping", "under the topic's name");
        assert!(popped.message.queue.topic.starts_with("%RETRY%Simple_"));
        members[*n].ack(popped).await.unwrap();
    }
    let none =
        receive_until(&[&a, &b], &all, Duration::from_secs(60), Duration::from_secs(6)).await;
    assert!(none.is_empty(), "acknowledged or held back: {:?}", none.keys());
    a.shutdown().await;
    b.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

fn orderly_member(ns: &str) -> SimpleConsumer {
    SimpleConsumer::start(SimpleConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "SimpleInOrder".into(),
        topic: "PoppingInOrder".into(),
        await_duration: Duration::from_millis(300),
        orderly: true,
        ..SimpleConsumerConfig::default()
    })
    .unwrap()
}

/// Ids by key (`id % 2`), in the order they came.
fn by_key(popped: &[PoppedMessage]) -> BTreeMap<u64, Vec<u64>> {
    let mut keys: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for message in popped {
        let id = raw::body_id(&message.message.body).unwrap();
        keys.entry(id % 2).or_default().push(id);
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_members_get_each_queue_in_order_and_wait_for_its_acks() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    for id in 0..24 {
        let message = Message::new("PoppingInOrder", raw::body(id, 32));
        producer.send_by_key(&message, &format!("key-{}", id % 2)).await.unwrap();
    }
    // A pop takes what is dispatched: all 24 must be, for one receive to take them all.
    broker.wait_dispatched("PoppingInOrder", 24).await;
    let (a, b) = (orderly_member(&ns), orderly_member(&ns));
    let hide = Duration::from_secs(3);
    let first = a.receive(32, hide).await.unwrap();
    let popped_at = Instant::now();
    let keys = by_key(&first);
    assert_eq!(keys.values().map(Vec::len).sum::<usize>(), 24, "one receive takes every queue");
    for ids in keys.values() {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "each key in send order: {ids:?}");
    }
    assert!(b.receive(32, hide).await.unwrap().is_empty(), "every queue is out with a");
    let (acked, rest): (Vec<_>, Vec<_>) =
        first.iter().partition(|m| raw::body_id(&m.message.body).unwrap() < 12);
    for message in &acked {
        a.ack(message).await.unwrap();
    }
    assert!(popped_at.elapsed() < hide, "the test was too slow to see the queues blocked");
    assert!(b.receive(32, hide).await.unwrap().is_empty(), "the rest is still out with a");
    tokio::time::sleep(hide.saturating_sub(popped_at.elapsed()) + Duration::from_millis(300)).await;
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while again.len() < rest.len() && Instant::now() < deadline {
        again.extend(b.receive(32, Duration::from_secs(60)).await.unwrap());
    }
    let expected: BTreeMap<u64, Vec<u64>> = by_key(&rest.into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(by_key(&again), expected, "the unacknowledged rest again, in order");
    assert!(again.iter().all(|m| m.message.reconsume_times == 1), "handed out once before");
    for message in &again {
        b.ack(message).await.unwrap();
    }
    assert!(a.receive(32, hide).await.unwrap().is_empty(), "all acknowledged");
    a.shutdown().await;
    b.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// Receives with `member` until it gets something or `within` passed; what it got.
async fn receive_some(
    member: &SimpleConsumer,
    hide: Duration,
    within: Duration,
) -> Vec<PoppedMessage> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        // Right after a restart the route may still name the old port: try again.
        if let Ok(got) = member.receive(32, hide).await {
            if !got.is_empty() {
                return got;
            }
        }
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_out_with_an_orderly_member_stays_out_across_a_restart() {
    let (namesrv_handle, ns) = namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = loopback_config(Some(&ns), dir.path());
        config.store.commit_log_file_bytes = 16 << 20;
        config
    };
    let first = broker::start(config(), Arc::new(FsDisk)).await.unwrap();
    wait_routed(&ns, "broker-a").await;
    let producer = producer(&ns);
    for id in 0..8 {
        let message = Message::new("PoppingInOrder", raw::body(id, 32));
        producer.send_by_key(&message, "one-key").await.unwrap();
    }
    // A send is answered once appended; its unit is dispatched after, and an orderly pop of
    // fewer than eight would hold the queue with the rest unseen.
    common::wait_dispatched(&first, "PoppingInOrder", 8).await;
    let hide = Duration::from_secs(8);
    let out = orderly_member(&ns).receive(32, hide).await.unwrap();
    let popped_at = Instant::now();
    assert_eq!(out.len(), 8);
    first.shutdown().await.unwrap();
    let file = dir.path().join("config").join("consumerOrderInfo.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"PoppingInOrder@SimpleInOrder\""), "{text}");
    let _second = broker::start(config(), Arc::new(FsDisk)).await.unwrap();
    wait_routed(&ns, "broker-a").await;
    let b = orderly_member(&ns);
    let early =
        receive_some(&b, hide, hide.saturating_sub(popped_at.elapsed() + Duration::from_secs(1)))
            .await;
    assert!(early.is_empty(), "handed out again while out: {} messages", early.len());
    let again = receive_some(&b, hide, Duration::from_secs(10)).await;
    let ids: Vec<u64> = again.iter().map(|m| raw::body_id(&m.message.body).unwrap()).collect();
    assert_eq!(ids, (0..8).collect::<Vec<_>>(), "once visible again, in order");
    assert!(again.iter().all(|m| m.message.reconsume_times == 1), "counted across the restart");
    b.shutdown().await;
    producer.shutdown().await;
    namesrv_handle.shutdown().await;
}
