//! `petrel-client`'s producer against an in-process NameServer and brokers on loopback: every
//! send mode, batches split under the size limit, sharding keys, validation, and sends that go
//! on through another broker when one stops.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::raw;
use petrel_client::{ClientError, Message, Producer, ProducerConfig, SendStatus};
use petrel_core::client::MessageQueue;
use petrel_net::transport::{ClientConfig, RemotingClient};

fn message(topic: &str, id: u64) -> Message {
    Message::new(topic, raw::body(id, 64)).with_tags("TagA").with_keys([format!("key-{id}")])
}

/// Every message of a topic on one broker: id → (queue, offset).
async fn stored(broker: &str, topic: &str, queues: i32) -> BTreeMap<u64, (i32, i64)> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let mut out = BTreeMap::new();
    for queue in 0..queues {
        let mut offset = 0;
        loop {
            let pulled = raw::pull(&client, broker, "Check", topic, queue, offset, Duration::ZERO)
                .await
                .unwrap();
            if pulled.messages.is_empty() {
                break;
            }
            for m in &pulled.messages {
                out.insert(m.id, (queue, m.queue_offset));
            }
            offset = pulled.next_begin_offset;
        }
    }
    out
}

async fn wait_stored(broker: &str, topic: &str, count: usize) -> BTreeMap<u64, (i32, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = stored(broker, topic, 4).await;
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_send_mode_stores_its_messages() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    // Sync: the topic is created from TBW102 with the client's 4 queues.
    let mut ids = BTreeSet::new();
    for id in 0..40 {
        let result = producer.send(&message("Modes", id)).await.unwrap();
        assert_eq!(result.status, SendStatus::Ok);
        assert_eq!(result.msg_id.len(), 32, "UNIQ_KEY layout");
        assert!(ids.insert(result.msg_id.clone()), "message ids are unique");
    }
    // Async and oneway.
    let handles: Vec<_> = (40..80).map(|id| producer.send_async(message("Modes", id))).collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap().unwrap().status, SendStatus::Ok);
    }
    for id in 80..90 {
        producer.send_oneway(&message("Modes", id)).await.unwrap();
    }
    let found = wait_stored(&broker.addr, "Modes", 90).await;
    assert_eq!(found.keys().copied().collect::<Vec<_>>(), (0..90).collect::<Vec<_>>());
    let queues: BTreeSet<i32> = found.values().map(|(q, _)| *q).collect();
    assert_eq!(queues.len(), 4, "round robin uses every queue");

    // A sharding key always picks the same queue.
    let keyed: BTreeSet<MessageQueue> = futures_all(&producer, "Keyed", "order-7").await;
    assert_eq!(keyed.len(), 1);

    // A selector of the application's own: the last writable queue, every time.
    let writable = producer.queues("Modes").await.unwrap();
    assert_eq!(writable.len(), 4);
    let chosen = writable.iter().max().unwrap();
    for id in 90..95 {
        assert_eq!(producer.send_to(&message("Modes", id), chosen).await.unwrap().queue, *chosen);
    }

    // Validation refuses before sending.
    let empty = producer.send(&Message::new("Modes", "")).await.unwrap_err();
    assert!(matches!(empty, ClientError::Invalid(_)), "{empty}");
    let bad_topic = producer.send(&Message::new("no spaces", "x")).await.unwrap_err();
    assert!(bad_topic.to_string().contains("not valid"), "{bad_topic}");
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

async fn futures_all(producer: &Producer, topic: &str, key: &str) -> BTreeSet<MessageQueue> {
    let mut queues = BTreeSet::new();
    for id in 0..10 {
        queues.insert(producer.send_by_key(&message(topic, id), key).await.unwrap().queue);
    }
    queues
}

#[tokio::test]
async fn a_batch_over_the_size_limit_is_split() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    // 3000 messages of 3 KiB: about 9 MiB, so at least three requests under 4 MiB.
    let messages: Vec<Message> =
        (0..3000).map(|id| Message::new("Batched", raw::body(id, 3 << 10))).collect();
    let results = producer.send_batch(&messages).await.unwrap();
    assert_eq!(results.len(), 3000);
    let requests: BTreeSet<(i32, String)> =
        results.iter().map(|r| (r.queue.queue_id, r.queue.broker_name.clone())).collect();
    assert!(!requests.is_empty());
    assert!(results.iter().all(|r| r.msg_id.len() == 32 && r.status == SendStatus::Ok));
    let found = wait_stored(&broker.addr, "Batched", 3000).await;
    assert_eq!(found.len(), 3000);
    for (id, result) in results.iter().enumerate() {
        assert_eq!(
            found[&(id as u64)],
            (result.queue.queue_id, result.queue_offset),
            "message {id}"
        );
    }
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

#[tokio::test]
async fn sends_go_on_through_another_broker_when_one_stops() {
    let (namesrv_handle, ns) = namesrv().await;
    let first = Running::start(Some(&ns), |c| c.broker_name = "first".into()).await;
    let second = Running::start(Some(&ns), |c| c.broker_name = "second".into()).await;
    let producer = producer(&ns);
    let mut brokers = BTreeSet::new();
    for id in 0..20 {
        brokers.insert(producer.send(&message("Spread", id)).await.unwrap().queue.broker_name);
    }
    assert_eq!(brokers.len(), 2, "the topic spreads over both brokers");
    second.stop().await;
    // Every send still succeeds: a failed attempt on `second` is retried on `first`, and
    // `second` is then avoided.
    for id in 20..60 {
        let result = producer.send(&message("Spread", id)).await.unwrap();
        assert_eq!(result.queue.broker_name, "first");
    }
    producer.shutdown().await;
    first.stop().await;
    namesrv_handle.shutdown().await;
}

#[tokio::test]
async fn a_producer_without_a_way_to_the_topic_says_why() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| c.auto_create_topic = false).await;
    let producer = producer(&ns);
    let error = producer.send(&message("Nowhere", 1)).await.unwrap_err();
    assert!(matches!(error, ClientError::NoRoute(_)), "{error}");
    let unreachable = Producer::start(ProducerConfig {
        namesrv_addrs: vec!["127.0.0.1:1".into()],
        ..ProducerConfig::default()
    })
    .unwrap();
    assert!(matches!(
        unreachable.send(&message("T", 1)).await.unwrap_err(),
        ClientError::Transport(_)
    ));
    assert!(Producer::start(ProducerConfig { namesrv_addrs: vec![], ..ProducerConfig::default() })
        .is_err());
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
