//! `petrel-client`'s push consumer against an in-process NameServer and broker: one member
//! receives everything; a group that grows to three members and shrinks back shares the queues
//! and loses nothing; a failed message comes back through the retry topic.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{namesrv, Running};
use petrel_client::raw;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage,
};
use petrel_core::broker::schedule::DelayLevels;

type Seen = Arc<Mutex<Vec<(u64, i32)>>>;

fn member(ns: &str, group: &str, seen: Seen, fail_first: bool) -> PushConsumer {
    let config = PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: group.to_owned(),
        subscriptions: [("Pushed".to_owned(), "*".to_owned())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(300),
        commit_interval: Duration::from_millis(100),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    };
    PushConsumer::start(config, move |message: &ReceivedMessage| {
        let id = raw::body_id(&message.body).unwrap();
        seen.lock().unwrap().push((id, message.reconsume_times));
        if fail_first && id.is_multiple_of(10) && message.reconsume_times == 0 {
            ConsumeResult::Later
        } else {
            ConsumeResult::Success
        }
    })
    .unwrap()
}

async fn send(producer: &Producer, ids: std::ops::Range<u64>) {
    for id in ids {
        producer.send(&Message::new("Pushed", raw::body(id, 32))).await.unwrap();
    }
}

async fn wait_all(seen: &Seen, ids: std::ops::Range<u64>) -> BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: BTreeSet<u64> = seen.lock().unwrap().iter().map(|(id, _)| *id).collect();
        if ids.clone().all(|id| got.contains(&id)) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_assigned(members: &[&PushConsumer], each: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let counts: Vec<usize> = members
            .iter()
            .map(|m| m.assigned().iter().filter(|q| q.topic == "Pushed").count())
            .collect();
        if counts.iter().sum::<usize>() == 4 && counts.iter().all(|c| *c >= each) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the queues were not shared out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_its_queues_as_it_grows_and_shrinks() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = Producer::start(ProducerConfig {
        namesrv_addrs: vec![ns.clone()],
        ..ProducerConfig::default()
    })
    .unwrap();
    send(&producer, 0..100).await;
    let seen: Seen = Arc::default();
    let a = member(&ns, "Sharing", seen.clone(), false);
    let got = wait_all(&seen, 0..100).await;
    assert!((0..100).all(|id| got.contains(&id)), "one member receives everything");

    let b = member(&ns, "Sharing", seen.clone(), false);
    let c = member(&ns, "Sharing", seen.clone(), false);
    wait_assigned(&[&a, &b, &c], 1).await;
    let mine: Vec<BTreeSet<_>> =
        [&a, &b, &c].iter().map(|m| m.assigned().into_iter().collect()).collect();
    assert!(
        mine[0].is_disjoint(&mine[1])
            && mine[1].is_disjoint(&mine[2])
            && mine[0].is_disjoint(&mine[2])
    );
    send(&producer, 100..200).await;
    let got = wait_all(&seen, 100..200).await;
    assert!(
        (100..200).all(|id| got.contains(&id)),
        "three members receive everything between them"
    );

    b.shutdown().await;
    c.shutdown().await;
    wait_assigned(&[&a], 4).await;
    send(&producer, 200..300).await;
    let got = wait_all(&seen, 200..300).await;
    assert!((200..300).all(|id| got.contains(&id)), "the last member takes every queue back");
    // Members that leave commit what they consumed, so the messages sent after the group grew
    // were each delivered once. Each of the two joins may have handed a queue to its new member
    // at a commit made before the old member's last consumption (the commit interval's window,
    // as in RocketMQ): the first 100 may come once more per join, no more.
    let mut deliveries = std::collections::BTreeMap::new();
    for (id, _) in seen.lock().unwrap().iter() {
        *deliveries.entry(*id).or_insert(0) += 1;
    }
    let twice: Vec<(u64, i32)> =
        deliveries.iter().filter(|(_, n)| **n > 1).map(|(i, n)| (*i, *n)).collect();
    assert!((100..300).all(|id| deliveries[&id] == 1), "delivered more than once: {twice:?}");
    assert!((0..100).all(|id| deliveries[&id] <= 3), "delivered more than 1 + 2 joins: {twice:?}");
    a.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_comes_back_through_the_retry_topic() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.store.delay_levels = DelayLevels::parse("1s 1s 1s 1s 1s").unwrap();
    })
    .await;
    let producer = Producer::start(ProducerConfig {
        namesrv_addrs: vec![ns.clone()],
        ..ProducerConfig::default()
    })
    .unwrap();
    send(&producer, 0..30).await;
    let seen: Seen = Arc::default();
    let consumer = member(&ns, "Retrying", seen.clone(), true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let retried = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(id, times)| id.is_multiple_of(10) && *times == 1)
            .count()
    };
    while retried() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(retried(), 3, "messages 0, 10 and 20 came back once, with reconsumeTimes 1");
    consumer.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
