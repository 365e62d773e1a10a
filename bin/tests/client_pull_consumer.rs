//! `petrel-client`'s lite pull consumer against an in-process NameServer and broker: it reads
//! every message the producer sent, resumes a group from its committed offsets, starts from a
//! time, sees only new messages when it starts at the end, and seeks; subscribed members share
//! a topic's queues, filter by tag, and hand their queues over when one leaves. Its pulls are
//! LITE_PULL_MESSAGE, as Java's `DefaultLitePullConsumer`'s are, which the broker refuses
//! while `litePullMessageEnable` is off.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::raw;
use petrel_client::{ConsumeFrom, Message, PullConsumer, PullConsumerConfig};
use petrel_core::client::MessageQueue;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::PullMessageRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};

fn consumer(namesrv: &str, group: &str, from: ConsumeFrom) -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: group.to_owned(),
        consume_from: from,
        ..PullConsumerConfig::default()
    };
    PullConsumer::start(config).unwrap()
}

/// Polls until `count` messages arrived or nothing more comes; returns their ids.
async fn receive(consumer: &PullConsumer, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < count && Instant::now() < deadline {
        for message in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            ids.push(raw::body_id(&message.body).unwrap());
            assert_eq!(message.tags(), Some("TagA"));
            assert_eq!(message.msg_id.len(), 32);
        }
    }
    ids
}

#[tokio::test]
async fn the_pull_consumer_reads_resumes_and_seeks() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    let send = |id: u64| Message::new("Pulled", raw::body(id, 32)).with_tags("TagA");
    for id in 0..100 {
        producer.send(&send(id)).await.unwrap();
    }

    let first = consumer(&ns, "Readers", ConsumeFrom::First);
    let queues = first.queues("Pulled").await.unwrap();
    assert_eq!(queues.len(), 4);
    first.assign(&queues).await.unwrap();
    let mut got = receive(&first, 100).await;
    got.sort();
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "every message, once");
    first.shutdown().await.unwrap();

    // The same group resumes from its commits: only what was sent since.
    for id in 100..110 {
        producer.send(&send(id)).await.unwrap();
    }
    let again = consumer(&ns, "Readers", ConsumeFrom::First);
    again.assign(&queues).await.unwrap();
    let mut got = receive(&again, 10).await;
    got.sort();
    assert_eq!(got, (100..110).collect::<Vec<_>>());
    assert!(again.poll(Duration::from_millis(100)).await.unwrap().is_empty(), "nothing more");

    // Seeking queue 0 back to its start reads that queue again.
    again.seek(&queues[0], 0).unwrap();
    let replay: BTreeSet<u64> = receive(&again, 1).await.into_iter().collect();
    assert!(!replay.is_empty() && replay.iter().all(|id| *id < 110));

    // A new group that starts from a time sees what was stored from then on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for id in 200..210 {
        producer.send(&send(id)).await.unwrap();
    }
    let timed = consumer(&ns, "FromTime", ConsumeFrom::Timestamp(since));
    timed.assign(&queues).await.unwrap();
    let mut got = receive(&timed, 10).await;
    got.sort();
    assert_eq!(got, (200..210).collect::<Vec<_>>(), "only what was stored after the time");

    // A new group that starts at the end sees only new messages.
    let latest = consumer(&ns, "Latecomers", ConsumeFrom::Last);
    latest.assign(&queues).await.unwrap();
    producer.send(&send(500)).await.unwrap();
    assert_eq!(receive(&latest, 1).await, vec![500]);

    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

fn member(namesrv: &str) -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: "Sharers".to_owned(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(200),
        commit_interval: Duration::from_millis(100),
        ..PullConsumerConfig::default()
    };
    PullConsumer::start(config).unwrap()
}

/// Waits until each member holds exactly its share of the topic's 4 queues.
async fn wait_settled(members: &[&PullConsumer]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let held: Vec<BTreeSet<MessageQueue>> =
            members.iter().map(|m| m.assignment().into_iter().collect()).collect();
        let all: BTreeSet<&MessageQueue> = held.iter().flatten().collect();
        let disjoint = held.iter().map(BTreeSet::len).sum::<usize>() == all.len();
        if all.len() == 4 && disjoint && held.iter().all(|h| members.len() == 1 || h.len() == 2) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the group did not settle");
}

/// Polls every member until `count` messages arrived between them; their ids.
async fn poll_all(members: &[&PullConsumer], count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < count && Instant::now() < deadline {
        for member in members {
            for message in member.poll(Duration::from_millis(50)).await.unwrap() {
                assert_eq!(message.tags(), Some("TagA"), "the subscription filters by tag");
                ids.push(raw::body_id(&message.body).unwrap());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_members_share_a_topic_and_hand_queues_over() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    for id in 0..60 {
        let tag = if id < 40 { "TagA" } else { "TagB" };
        producer.send(&Message::new("Shared", raw::body(id, 32)).with_tags(tag)).await.unwrap();
    }
    let (a, b) = (member(&ns), member(&ns));
    a.subscribe("Shared", "TagA").await.unwrap();
    b.subscribe("Shared", "TagA").await.unwrap();
    assert!(b.assign(&[]).await.is_err(), "assign and subscribe do not mix");
    wait_settled(&[&a, &b]).await;
    let mut got = poll_all(&[&a, &b], 40).await;
    got.sort();
    assert_eq!(got, (0..40).collect::<Vec<_>>(), "each TagA message once between the two");

    // b leaves, committing; a takes every queue and goes on from the commits.
    b.shutdown().await.unwrap();
    wait_settled(&[&a]).await;
    for id in 100..110 {
        producer.send(&Message::new("Shared", raw::body(id, 32)).with_tags("TagA")).await.unwrap();
    }
    let mut got = poll_all(&[&a], 10).await;
    got.sort();
    assert_eq!(got, (100..110).collect::<Vec<_>>(), "only the new messages, once");
    a.shutdown().await.unwrap();
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// A pull of queue 0 as Java's lite pull consumer sends it (PullSysFlag suspend, subscription
/// and lite: 0x16), or as its push consumer does (without the lite bit) under PULL_MESSAGE.
fn pull_request(code: i32) -> RemotingCommand {
    let lite = if code == request::LITE_PULL_MESSAGE { 0x10 } else { 0 };
    let header = PullMessageRequestHeader {
        consumer_group: "JavaLite".into(),
        topic: "Lite".into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: 0x2 | 0x4 | lite,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    RemotingCommand::request(code).with_header(&header)
}

#[tokio::test]
async fn lite_pulls_are_served_unless_the_broker_forbids_them() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |config| config.lite_pull = false).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    assert!(raw::create_topic(&client, addr, "Lite", 1).await);
    let producer = producer(&ns);
    for id in 0..5 {
        producer.send(&Message::new("Lite", raw::body(id, 32)).with_tags("TagA")).await.unwrap();
    }
    let wait = Duration::from_secs(3);

    let refused = client.invoke(addr, pull_request(request::LITE_PULL_MESSAGE), wait).await;
    let refused = refused.unwrap();
    assert_eq!(refused.code, response::NO_PERMISSION, "{:?}", refused.remark);
    let remark = refused.remark.unwrap_or_default();
    assert!(remark.contains("lite pull consumer is forbidden"), "{remark}");
    let pulled = client.invoke(addr, pull_request(request::PULL_MESSAGE), wait).await.unwrap();
    assert_eq!(pulled.code, response::SUCCESS, "a push consumer's pull is still served");

    // The SDK's lite pull consumer pulls as Java's does: it reads nothing while forbidden.
    let reader = consumer(&ns, "Readers", ConsumeFrom::First);
    reader.assign(&reader.queues("Lite").await.unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert!(reader.poll(Duration::from_millis(100)).await.unwrap_or_default().is_empty());
    }

    // The setting takes effect at once.
    let enable = RemotingCommand::request(request::UPDATE_BROKER_CONFIG)
        .with_body(b"litePullMessageEnable=true\n".to_vec());
    let updated = client.invoke(addr, enable, wait).await.unwrap();
    assert_eq!(updated.code, response::SUCCESS, "{:?}", updated.remark);
    let served = client.invoke(addr, pull_request(request::LITE_PULL_MESSAGE), wait).await.unwrap();
    assert_eq!(served.code, response::SUCCESS, "{:?}", served.remark);
    let mut got = receive(&reader, 5).await;
    got.sort();
    assert_eq!(got, (0..5).collect::<Vec<_>>());

    reader.shutdown().await.unwrap();
    producer.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
