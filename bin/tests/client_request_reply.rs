//! Request-reply against an in-process NameServer and broker: `Producer::request` sends a
//! request a push consumer answers with `reply::reply_to`, which its producer sends as
//! SEND_REPLY_MESSAGE_V2; the broker passes the reply to the requester
//! (PUSH_REPLY_MESSAGE_TO_CLIENT) and stores it in the cluster's reply topic
//! (`storeReplyMessageEnable`). A reply whose requester the broker cannot reach is refused
//! SYSTEM_ERROR with RocketMQ's remark, and a request nobody answers times out.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{namesrv, producer, Running};
use petrel_client::reply::{self, reply_to};
use petrel_client::{
    ClientError, ConsumeFrom, ConsumeResult, Message, ProducerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage,
};
use petrel_net::codec::codes::response;
use tokio::sync::mpsc;

const TOPIC: &str = "Questions";
const REPLIES: &str = "DefaultCluster_REPLY_TOPIC";

/// A push consumer of [`TOPIC`] whose every message is answered `re: <body>` by a producer of
/// its own (the reply asking to be delivered at `at`, when given); stops with the test.
fn responder(ns: &str, at: Option<SystemTime>) -> PushConsumer {
    let (send, mut received) = mpsc::unbounded_channel::<ReceivedMessage>();
    let replier = producer(ns);
    tokio::spawn(async move {
        while let Some(request) = received.recv().await {
            let body = [b"re: ".as_slice(), &request.body].concat();
            let mut reply = reply_to(&request, body).unwrap();
            if let Some(at) = at {
                reply = reply.with_delivery_time(at);
            }
            replier.send(&reply).await.unwrap();
        }
    });
    let config = PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "Responders".to_owned(),
        subscriptions: [(TOPIC.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(300),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    };
    PushConsumer::start(config, move |message: &ReceivedMessage| {
        send.send(message.clone()).unwrap();
        ConsumeResult::Success
    })
    .unwrap()
}

#[tokio::test]
async fn a_request_gets_its_reply_through_the_broker() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let responding = responder(&ns, None);
    // Two producers of one group started in the same moment: each is its own client, which
    // its requests' replies name.
    let (requester, second) = (producer(&ns), producer(&ns));
    // The first request waits for the topic's creation and the responder's first rebalance.
    let reply = requester.request(&Message::new(TOPIC, "first"), Duration::from_secs(10)).await;
    let reply = reply.unwrap();
    assert_eq!(&reply.body[..], b"re: first");
    assert_eq!(reply.properties.get("MSG_TYPE").map(String::as_str), Some("reply"));
    for name in [reply::CORRELATION_ID, reply::ARRIVE_TIME, "PUSH_REPLY_TIME", reply::TTL] {
        assert!(reply.properties.contains_key(name), "the reply carries {name}");
    }
    assert_eq!(reply.topic, REPLIES);

    // Requests in flight together, from both producers, each get their own reply.
    let asked = (0..8).map(|i| {
        let requester = if i % 2 == 0 { requester.clone() } else { second.clone() };
        tokio::spawn(async move {
            let message = Message::new(TOPIC, format!("q{i}"));
            requester.request(&message, Duration::from_secs(5)).await.unwrap()
        })
    });
    for (i, reply) in asked.collect::<Vec<_>>().into_iter().enumerate() {
        assert_eq!(reply.await.unwrap().body, format!("re: q{i}").into_bytes());
    }
    // Every reply is also stored in the reply topic (storeReplyMessageEnable), just after
    // the requester took it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while broker.queue_end(REPLIES, 0) < 9 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(broker.queue_end(REPLIES, 0), 9);

    responding.shutdown().await;
    requester.shutdown().await;
    second.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

#[tokio::test]
async fn a_reply_the_broker_cannot_pass_on_is_refused_and_an_unanswered_request_times_out() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |config| config.store_reply = false).await;
    let config =
        ProducerConfig { namesrv_addrs: vec![ns.clone()], retries: 0, ..ProducerConfig::default() };
    let replier = petrel_client::Producer::start(config).unwrap();
    let mut reply = Message::new(REPLIES, "to nobody");
    reply.properties.insert("MSG_TYPE".into(), "reply".into());
    let refused = replier.send(&reply).await.unwrap_err();
    let ClientError::Broker { code, remark } = refused else { panic!("{refused}") };
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.contains("properties[REPLY_TO_CLIENT] is null"), "{remark}");
    reply.properties.insert(reply::REPLY_TO_CLIENT.into(), "gone@1".into());
    let refused = replier.send(&reply).await.unwrap_err();
    let ClientError::Broker { code, remark } = refused else { panic!("{refused}") };
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.contains("channel of <gone@1> not found"), "{remark}");
    assert_eq!(broker.queue_end(REPLIES, 0), 0, "storeReplyMessageEnable=false stores none");

    let requester = producer(&ns);
    let unanswered = Message::new(TOPIC, "anyone?");
    match requester.request(&unanswered, Duration::from_millis(800)).await {
        Err(ClientError::NoReply(waited)) => assert_eq!(waited, Duration::from_millis(800)),
        other => panic!("a request nobody answers times out, not {other:?}"),
    }

    replier.shutdown().await;
    requester.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}

/// `timerCongestNumEachSlot=0`: a reply asking for a crowded timer slot still reaches its
/// requester (RocketMQ's reply processor pushes before it stores), and is not stored.
#[tokio::test]
async fn a_reply_for_a_crowded_timer_slot_is_passed_on_and_not_stored() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| c.timer.settings.congest_num_each_slot = 0).await;
    let at = SystemTime::now() + Duration::from_secs(60);
    let filler = producer(&ns);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut taken = 0;
    while filler.send(&Message::new("Filler", "x").with_delivery_time(at)).await.is_ok() {
        taken += 1;
        assert!(Instant::now() < deadline, "the slot never counted its message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wheel = "rmq_sys_wheel_timer";
    while broker.queue_end(wheel, 0) < taken {
        assert!(Instant::now() < deadline, "the fillers never reached the timer queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let responding = responder(&ns, Some(at));
    let requester = producer(&ns);
    let reply = requester.request(&Message::new(TOPIC, "late?"), Duration::from_secs(10)).await;
    assert_eq!(&reply.unwrap().body[..], b"re: late?");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(broker.queue_end(wheel, 0), taken, "the reply was not stored in the wheel");
    assert_eq!(broker.queue_end(REPLIES, 0), 0);

    responding.shutdown().await;
    requester.shutdown().await;
    filler.shutdown().await;
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
