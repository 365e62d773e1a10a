//! `petrel-client`'s orderly push consumer against an in-process NameServer and broker:
//! messages sent by key reach a group that grows from one member to two and shrinks back,
//! each key's once and in send order, and no queue is consumed by two members at once;
//! a suspended message holds its queue until it is consumed, and after `max_reconsume_times`
//! suspensions goes to the dead-letter queue; a topic the NameServer's ORDER_TOPIC_CONFIG
//! names is ordered in its route and in the broker's topic table.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::route::{self, TopicRoute};
use petrel_client::{
    ConsumeFrom, Message, OrderlyContext, OrderlyResult, Producer, PullConsumer,
    PullConsumerConfig, PushConsumer, PushConsumerConfig, ReceivedMessage,
};
use petrel_core::client::MessageQueue;
use petrel_core::kv::NAMESPACE_ORDER_TOPIC_CONFIG;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use petrel_net::headers::namesrv::PutKvConfigRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};

const KEYS: u64 = 8;

fn config(ns: &str, group: &str, topic: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: group.to_owned(),
        subscriptions: [(topic.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(300),
        commit_interval: Duration::from_millis(100),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    }
}

/// Body "key/seq".
fn parse(message: &ReceivedMessage) -> (u64, u64) {
    let body = std::str::from_utf8(&message.body).unwrap();
    let (key, seq) = body.split_once('/').unwrap();
    (key.parse().unwrap(), seq.parse().unwrap())
}

/// Sends `seqs` of every key, each by its key.
async fn send(producer: &Producer, topic: &str, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        for key in 0..KEYS {
            let message = Message::new(topic, format!("{key}/{seq}"));
            producer.send_by_key(&message, &format!("key-{key}")).await.unwrap();
        }
    }
}

/// Who consumes which queue now, and every (key, seq) in delivery order.
#[derive(Default)]
struct Seen {
    consuming: BTreeMap<MessageQueue, String>,
    order: Vec<(u64, u64)>,
}

fn member(ns: &str, name: &'static str, seen: &Arc<Mutex<Seen>>) -> PushConsumer {
    let seen = seen.clone();
    let listener = move |message: &ReceivedMessage, context: &OrderlyContext| {
        let queue = context.queue.clone();
        let other = seen.lock().unwrap().consuming.insert(queue.clone(), name.to_owned());
        assert_eq!(other, None, "{queue} consumed by {name} and {other:?} at once");
        let (asked, answered) = (context.lock_asked_at, context.lock_answered_at);
        assert!(asked.is_some(), "a clustering member consumes under a lock");
        assert!(
            answered >= asked,
            "a lock answered ({answered:?}) before it was asked ({asked:?})"
        );
        std::thread::sleep(Duration::from_millis(1));
        let mut seen = seen.lock().unwrap();
        seen.consuming.remove(&queue);
        seen.order.push(parse(message));
        OrderlyResult::Success
    };
    PushConsumer::start_orderly(config(ns, "InOrder", "Ordered"), listener).unwrap()
}

/// Waits until every seq below `seqs` of every key was delivered.
async fn wait_all(seen: &Arc<Mutex<Seen>>, seqs: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let got: BTreeSet<(u64, u64)> = seen.lock().unwrap().order.iter().copied().collect();
        if (0..KEYS).all(|k| (0..seqs).all(|s| got.contains(&(k, s)))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not every message up to seq {seqs} was delivered");
}

/// Each key's deliveries are exactly its seqs below `seqs`, in send order: a member that lets a
/// queue go commits before it unlocks, and the next locks before it reads the commit.
fn assert_in_order(order: &[(u64, u64)], seqs: u64) {
    for key in 0..KEYS {
        let mine: Vec<u64> = order.iter().filter(|(k, _)| *k == key).map(|(_, s)| *s).collect();
        assert_eq!(mine, (0..seqs).collect::<Vec<_>>(), "key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_group_keeps_each_keys_order_as_it_grows_and_shrinks() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    send(&producer, "Ordered", 0..20).await;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let a = member(&ns, "a", &seen);
    wait_all(&seen, 20).await;
    held_locked(&broker, &a).await;
    let b = member(&ns, "b", &seen);
    send(&producer, "Ordered", 20..60).await;
    wait_all(&seen, 60).await;
    assert!(!b.assigned().is_empty(), "the second member took a share");
    b.shutdown().await;
    send(&producer, "Ordered", 60..80).await;
    wait_all(&seen, 80).await;
    a.shutdown().await;
    assert_in_order(&seen.lock().unwrap().order, 80);
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// The member's running info, asked through the broker (GET_CONSUMER_RUNNING_INFO): orderly,
/// and each queue of the topic it holds locked, with the time of its lock's grant.
async fn held_locked(broker: &Running, member: &PushConsumer) {
    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: "InOrder".into(),
        client_id: member.client_id().into(),
        jstack_enable: None,
    };
    let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO).with_header(&header);
    let admin = RemotingClient::new(ClientConfig::default(), None);
    let answer = admin.invoke(&broker.addr, ask, Duration::from_secs(5)).await.unwrap();
    let body = String::from_utf8(answer.body.to_vec()).unwrap();
    assert!(body.contains(r#""PROP_CONSUMEORDERLY":"true""#), "{body}");
    for queue in 0..4 {
        let key = format!(r#"{{"brokerName":"broker-a","queueId":{queue},"topic":"Ordered"}}:{{"#);
        let info = &body[body.find(&key).unwrap_or_else(|| panic!("{body}")) + key.len() - 1..];
        let info: serde_json::Value =
            serde_json::Deserializer::from_str(info).into_iter().next().unwrap().unwrap();
        assert_eq!(info["locked"], true, "queue {queue}: {body}");
        assert!(info["lastLockTimestamp"].as_i64().unwrap() > 0, "queue {queue}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_message_holds_its_queue_then_goes_to_the_dead_letter_queue() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    send(&producer, "Suspended", 0..5).await;
    let order: Arc<Mutex<Vec<(u64, u64, u32)>>> = Arc::default();
    let seen = order.clone();
    let listener = move |message: &ReceivedMessage, context: &OrderlyContext| {
        let (key, seq) = parse(message);
        seen.lock().unwrap().push((key, seq, context.suspensions));
        if seq == 2 {
            OrderlyResult::Suspend
        } else {
            OrderlyResult::Success
        }
    };
    let config = PushConsumerConfig {
        max_reconsume_times: Some(2),
        ..config(&ns, "Suspending", "Suspended")
    };
    let consumer = PushConsumer::start_orderly(config, listener).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while order.lock().unwrap().len() < usize::try_from(KEYS * 7).unwrap() {
        assert!(Instant::now() < deadline, "not every message came: {:?}", order.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.shutdown().await;
    for key in 0..KEYS {
        let mine: Vec<(u64, u32)> =
            order.lock().unwrap().iter().filter(|m| m.0 == key).map(|m| (m.1, m.2)).collect();
        assert_eq!(mine, [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (3, 0), (4, 0)], "key {key}");
    }
    let dead = dead_letters(&ns, "%DLQ%Suspending").await;
    assert_eq!(dead, (0..KEYS).map(|k| (k, 2)).collect(), "each key's seq 2 is a dead letter");
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// Everything in `topic`, as (key, seq).
async fn dead_letters(ns: &str, topic: &str) -> BTreeSet<(u64, u64)> {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "Reader".into(),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    };
    let reader = PullConsumer::start(config).unwrap();
    reader.assign(&reader.queues(topic).await.unwrap()).await.unwrap();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < usize::try_from(KEYS).unwrap() && Instant::now() < deadline {
        for message in reader.poll(Duration::from_millis(500)).await.unwrap() {
            got.insert(parse(&message));
        }
    }
    reader.shutdown().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_in_order_topic_config_is_ordered_in_its_route_and_on_the_broker() {
    let config = petrel::namesrv::NamesrvConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        order_message_enable: true,
        ..petrel::namesrv::NamesrvConfig::default()
    };
    let namesrv_handle =
        petrel::namesrv::start(config, std::sync::Arc::new(petrel_storage::disk::FsDisk))
            .await
            .unwrap();
    let ns = format!("127.0.0.1:{}", namesrv_handle.local_addr.port());
    let broker = Running::start(Some(&ns), |c| c.register_period_ms = 1_000).await;
    let caller = RemotingClient::new(ClientConfig::default(), None);
    assert!(petrel_client::raw::create_topic(&caller, &broker.addr, "Strict", 4).await);
    let header = PutKvConfigRequestHeader {
        namespace: NAMESPACE_ORDER_TOPIC_CONFIG.into(),
        key: "Strict".into(),
        value: "broker-a:4;broker-gone:2".into(),
    };
    let put = RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&header);
    let reply = caller.invoke(&ns, put, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS);

    let timeout = Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(10);
    let data = loop {
        // The broker registers its new topic in the background.
        let namesrvs = std::slice::from_ref(&ns);
        if let Some(data) = route::fetch(&caller, namesrvs, "Strict", timeout).await.unwrap() {
            break data;
        }
        assert!(Instant::now() < deadline, "Strict never routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let route = TopicRoute::from_data("Strict", &data, i32::MAX);
    assert!(route.ordered);
    assert_eq!(route.write_queues.len(), 6, "the queues the conf names, the gone broker's too");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ask = RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG);
        let reply = caller.invoke(&broker.addr, ask, timeout).await.unwrap();
        let all: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let table = &all["topicConfigTable"];
        if table["Strict"]["order"] == true {
            assert_eq!(table["TBW102"]["order"], false, "only the topics the conf names");
            break;
        }
        assert!(Instant::now() < deadline, "the broker never marked Strict ordered: {table}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
