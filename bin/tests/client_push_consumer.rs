//! `petrel-client`'s push consumer against an in-process NameServer and broker: one member
//! receives everything; a group that grows to three members and shrinks back shares the queues
//! (averagely, and by consistent hashing) and loses nothing; a failed message comes back
//! through the retry topic; broadcasting members each receive everything and resume from
//! their own offsets files.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::raw;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, MessageModel, Producer, PushConsumer, PushConsumerConfig,
    ReceivedMessage,
};
use petrel_core::broker::schedule::DelayLevels;
use petrel_core::client::allocate::{allocate, Strategy};
use petrel_core::client::MessageQueue;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};

type Seen = Arc<Mutex<Vec<(u64, i32)>>>;

fn config(ns: &str, group: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: group.to_owned(),
        subscriptions: [("Pushed".to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(300),
        commit_interval: Duration::from_millis(100),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    }
}

fn member(ns: &str, group: &str, seen: Seen, fail_first: bool) -> PushConsumer {
    start(config(ns, group), seen, fail_first)
}

/// Records every delivery; fails ids that are multiples of 10 the first time if asked.
fn start(config: PushConsumerConfig, seen: Seen, fail_first: bool) -> PushConsumer {
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

/// Waits until the members hold the 4 queues between them, each exactly its share by
/// `strategy` among these members: the group has settled.
async fn wait_assigned(members: &[&PushConsumer], strategy: Strategy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids: Vec<String> = members.iter().map(|m| m.client_id().to_owned()).collect();
    while Instant::now() < deadline {
        let held: Vec<Vec<MessageQueue>> = members
            .iter()
            .map(|m| m.assigned().into_iter().filter(|q| q.topic == "Pushed").collect())
            .collect();
        let all: Vec<MessageQueue> = held.iter().flatten().cloned().collect();
        let settled = all.len() == 4
            && members
                .iter()
                .zip(&held)
                .all(|(m, mine)| *mine == allocate(strategy, m.client_id(), &all, &ids));
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the queues were not shared out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_its_queues_as_it_grows_and_shrinks() {
    grow_and_shrink(Strategy::Averagely).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_group_shares_its_queues_as_it_grows_and_shrinks() {
    grow_and_shrink(Strategy::CONSISTENT_HASH).await;
}

/// A group of one member, then three, then one again.
async fn grow_and_shrink(strategy: Strategy) {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    send(&producer, 0..100).await;
    let seen: Seen = Arc::default();
    let group = format!("Sharing{}", strategy.name());
    let member = |seen: &Seen| {
        start(PushConsumerConfig { strategy, ..config(&ns, &group) }, seen.clone(), false)
    };
    let a = member(&seen);
    let got = wait_all(&seen, 0..100).await;
    assert!((0..100).all(|id| got.contains(&id)), "one member receives everything");

    let b = member(&seen);
    let c = member(&seen);
    wait_assigned(&[&a, &b, &c], strategy).await;
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
    wait_assigned(&[&a], strategy).await;
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
    let producer = producer(&ns);
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

/// GET_CONSUMER_RUNNING_INFO sent to the broker reaches the member it names, whose answer
/// (`ConsumerRunningInfo`) comes back: its settings, subscriptions and each queue it holds
/// with the offset it would commit. A member the broker does not know is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_tells_an_admin_what_it_is_running_through_the_broker() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    send(&producer, 0..20).await;
    let seen: Seen = Arc::default();
    let consumer = member(&ns, "Running", seen.clone(), false);
    wait_all(&seen, 0..20).await;
    wait_assigned(&[&consumer], Strategy::Averagely).await;
    let ask = |client: &str| {
        let header = GetConsumerRunningInfoRequestHeader {
            consumer_group: "Running".into(),
            client_id: client.into(),
            jstack_enable: Some(false),
        };
        RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO).with_header(&header)
    };
    let admin = RemotingClient::new(ClientConfig::default(), None);
    let timeout = Duration::from_secs(5);
    let answer = admin.invoke(&broker.addr, ask(consumer.client_id()), timeout).await.unwrap();
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let body = String::from_utf8(answer.body.to_vec()).unwrap();
    // fastjson's form: the queues are object keys, in queue order (the retry topic's first).
    let first = r#"{"mqPopTable":{},"mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"%RETRY%Running"}:{"cachedMsgCount":0,"#;
    assert!(body.starts_with(first), "{body}");
    let properties = &body[body.find(r#""properties":"#).unwrap()..];
    assert!(properties.contains(r#""PROP_CONSUME_TYPE":"CONSUME_PASSIVELY""#), "{body}");
    assert!(properties.contains(r#""consumerGroup":"Running""#), "{body}");
    assert!(body.contains(r#""subString":"*""#) && body.contains(r#""topic":"%RETRY%Running""#));
    // Each queue's commit offset: every message of it was consumed.
    let ends = (0..4).map(|q| broker.queue_end("Pushed", q));
    for (queue, end) in ends.enumerate() {
        let key = format!(r#"{{"brokerName":"broker-a","queueId":{queue},"topic":"Pushed"}}:{{"#);
        let info = &body[body.find(&key).unwrap() + key.len() - 1..];
        assert!(info.contains(&format!(r#""commitOffset":{end},"#)), "queue {queue}: {body}");
    }
    let stranger = admin.invoke(&broker.addr, ask("nobody@Running#0"), timeout).await.unwrap();
    assert_eq!(
        (stranger.code, stranger.remark.as_deref()),
        (response::SYSTEM_ERROR, Some("The Consumer <Running> <nobody@Running#0> not online"))
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// A broadcasting member keeping its offsets under `dir` as `instance`.
fn broadcaster(ns: &str, dir: &std::path::Path, instance: &str, seen: Seen) -> PushConsumer {
    let config = PushConsumerConfig {
        message_model: MessageModel::Broadcasting,
        local_offsets_dir: dir.to_owned(),
        instance_name: instance.to_owned(),
        ..config(ns, "Everyone")
    };
    start(config, seen, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_members_each_receive_everything_and_resume_from_their_own_offsets() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    let dir = std::env::temp_dir().join(format!("petrel-broadcast-{}", std::process::id()));
    send(&producer, 0..50).await;
    let (seen_a, seen_b): (Seen, Seen) = (Arc::default(), Arc::default());
    let a = broadcaster(&ns, &dir, "a", seen_a.clone());
    let b = broadcaster(&ns, &dir, "b", seen_b.clone());
    for seen in [&seen_a, &seen_b] {
        let got = wait_all(seen, 0..50).await;
        assert!((0..50).all(|id| got.contains(&id)), "every member receives every message");
    }
    assert_eq!(a.assigned().len(), 4, "a broadcasting member reads every queue");
    b.shutdown().await;
    assert!(dir.join("b").join("Everyone").join("offsets.json").exists());

    send(&producer, 50..80).await;
    wait_all(&seen_a, 50..80).await;
    let seen_again: Seen = Arc::default();
    let b = broadcaster(&ns, &dir, "b", seen_again.clone());
    let got = wait_all(&seen_again, 50..80).await;
    assert_eq!(got, (50..80).collect(), "b resumes where it stopped, from its own file");
    // A failed message is dropped in broadcasting: nothing came a second time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for seen in [&seen_a, &seen_b, &seen_again] {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|(_, times)| *times == 0), "no retries in broadcasting");
        let ids: BTreeSet<u64> = seen.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), seen.len(), "no duplicates");
    }
    a.shutdown().await;
    b.shutdown().await;
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
