//! POP consumption against an in-process broker over loopback, as RocketMQ 5's clients speak
//! it (docs/pop.md): POP_MESSAGE hands messages out and hides them; what is acknowledged
//! (ACK_MESSAGE, BATCH_ACK_MESSAGE) stays gone; what is not comes back through the group's pop
//! retry topic once its invisible time is over; CHANGE_MESSAGE_INVISIBLETIME pushes a message's
//! return later; bad handles are refused with RocketMQ's codes.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::Running;
use petrel_client::raw;
use petrel_core::broker::pop::{encode_bit_set, BatchAck, BatchAckBody, ExtraInfo, TopicKind};
use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, NotificationRequestHeader,
    NotificationResponseHeader, PeekMessageRequestHeader, PollingInfoRequestHeader,
    PollingInfoResponseHeader, PopMessageRequestHeader, PopMessageResponseHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};

const GROUP: &str = "Poppers";
const WAIT: Duration = Duration::from_secs(5);

/// A message a pop handed out, with the handle a client builds for it.
#[derive(Debug, Clone)]
struct Popped {
    id: u64,
    topic: String,
    queue_id: i32,
    offset: i64,
    reconsume_times: i32,
    handle: ExtraInfo,
}

/// One POP_MESSAGE of `topic` (every queue); the code and what it handed out.
async fn pop(
    caller: &RemotingClient,
    addr: &str,
    topic: &str,
    invisible_ms: i64,
) -> (i32, Vec<Popped>) {
    pop_held(caller, addr, (topic, invisible_ms), 0).await
}

/// [`pop`], held up to `poll_ms` when nothing is there.
async fn pop_held(
    caller: &RemotingClient,
    addr: &str,
    (topic, invisible_ms): (&str, i64),
    poll_ms: i64,
) -> (i32, Vec<Popped>) {
    let header = PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: topic.into(),
        queue_id: -1,
        max_msg_nums: 32,
        invisible_time: invisible_ms,
        poll_time: poll_ms,
        born_time: None,
        init_mode: 0,
        exp_type: Some("TAG".into()),
        exp: Some("*".into()),
        order: None,
        attempt_id: None,
    };
    let request = RemotingCommand::request(request::POP_MESSAGE).with_header(&header);
    let wait = WAIT + Duration::from_millis(poll_ms.unsigned_abs());
    let reply = caller.invoke(addr, request, wait).await.unwrap();
    if reply.code != response::SUCCESS {
        return (reply.code, Vec::new());
    }
    let answer: PopMessageResponseHeader = reply.header().unwrap();
    // "retry queueId startOffset;..." -> start offsets by (retry, queue).
    let starts: BTreeMap<(String, i32), i64> = answer
        .start_offset_info
        .unwrap_or_default()
        .split(';')
        .filter(|i| !i.is_empty())
        .map(|item| {
            let f: Vec<&str> = item.split(' ').collect();
            ((f[0].to_owned(), f[1].parse().unwrap()), f[2].parse().unwrap())
        })
        .collect();
    let body = reply.body_bytes();
    let (mut at, mut popped) = (0, Vec::new());
    while at < body.len() {
        let Scanned::Record(record) =
            scan_record(&body[at..], Checks { physical_offset: None, crc: true })
        else {
            panic!("pop body has an invalid record at byte {at}");
        };
        let kind = TopicKind::of(record.topic_str());
        let start = starts[&(kind.code().to_owned(), record.queue_id)];
        let handle = ExtraInfo {
            start_offset: start,
            pop_time: answer.pop_time,
            invisible_time: answer.invisible_time,
            revive_qid: answer.revive_qid,
            kind,
            broker_name: "broker-a".into(),
            queue_id: record.queue_id,
            offset: record.queue_offset,
        };
        popped.push(Popped {
            id: raw::body_id(record.body).unwrap(),
            topic: record.topic_str().to_owned(),
            queue_id: record.queue_id,
            offset: record.queue_offset,
            reconsume_times: record.reconsume_times,
            handle,
        });
        at += record.bytes.len();
    }
    (reply.code, popped)
}

async fn ack(caller: &RemotingClient, addr: &str, message: &Popped) -> i32 {
    let header = AckMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: message.topic.clone(),
        queue_id: message.queue_id,
        extra_info: message.handle.to_string(),
        offset: message.offset,
    };
    let request = RemotingCommand::request(request::ACK_MESSAGE).with_header(&header);
    caller.invoke(addr, request, WAIT).await.unwrap().code
}

/// Pops (each pop hiding for `invisible_ms`) until `want` ids came (or `within` passed); what
/// came, by id.
async fn pop_until(
    caller: &RemotingClient,
    addr: &str,
    (topic, invisible_ms): (&str, i64),
    want: &BTreeSet<u64>,
    within: Duration,
) -> BTreeMap<u64, Popped> {
    let deadline = Instant::now() + within;
    let mut got = BTreeMap::new();
    while Instant::now() < deadline && !want.iter().all(|id| got.contains_key(id)) {
        for message in pop(caller, addr, topic, invisible_ms).await.1 {
            got.insert(message.id, message);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    got
}

async fn setup(topic: &str, messages: u64) -> (Running, RemotingClient) {
    let broker = Running::start(None, |_| {}).await;
    let caller = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&caller, &broker.addr, topic, 2).await);
    for id in 0..messages {
        raw::send(&caller, &broker.addr, topic, (id % 2) as i32, id, 32).await;
    }
    (broker, caller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_come_back_through_the_pop_retry_topic() {
    let (broker, caller) = setup("Popped", 10).await;
    let addr = broker.addr.as_str();
    let all: BTreeSet<u64> = (0..10).collect();
    let first = pop_until(&caller, addr, ("Popped", 2_000), &all, WAIT).await;
    assert_eq!(first.keys().copied().collect::<BTreeSet<_>>(), all);
    assert_eq!(
        pop(&caller, addr, "Popped", 2_000).await.0,
        response::POLLING_TIMEOUT,
        "all hidden"
    );
    for message in first.values().filter(|m| m.id % 2 == 0) {
        assert_eq!(ack(&caller, addr, message).await, response::SUCCESS);
    }
    let odd: BTreeSet<u64> = (0..10).filter(|id| id % 2 == 1).collect();
    let back = pop_until(&caller, addr, ("Popped", 60_000), &odd, Duration::from_secs(20)).await;
    assert_eq!(back.keys().copied().collect::<BTreeSet<_>>(), odd, "exactly the unacknowledged");
    for message in back.values() {
        assert_eq!(message.topic, "%RETRY%Poppers_Popped");
        assert_eq!((message.queue_id, message.reconsume_times), (0, 1));
        assert_eq!(ack(&caller, addr, message).await, response::SUCCESS);
    }
    let again = pop_until(&caller, addr, ("Popped", 60_000), &all, Duration::from_secs(8)).await;
    assert!(again.is_empty(), "acknowledged messages came back: {:?}", again.keys());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_acks_and_a_longer_invisible_time() {
    let (broker, caller) = setup("Batched", 6).await;
    let addr = broker.addr.as_str();
    let popped = pop_until(&caller, addr, ("Batched", 2_000), &(0..6).collect(), WAIT).await;
    assert_eq!(popped.len(), 6);
    // Ack ids 0 and 1 in one batch (each its queue's first message), push id 2's return 30 s out.
    let mut acks = Vec::new();
    for message in popped.values().filter(|m| m.id < 2) {
        let bits: BTreeSet<usize> =
            [(message.offset - message.handle.start_offset) as usize].into();
        acks.push(BatchAck {
            c: GROUP.into(),
            t: "Batched".into(),
            r: "0".into(),
            so: message.handle.start_offset,
            q: message.queue_id,
            rq: message.handle.revive_qid,
            pt: message.handle.pop_time,
            it: message.handle.invisible_time,
            b: encode_bit_set(&bits),
        });
    }
    let body = BatchAckBody { broker_name: "broker-a".into(), acks };
    let request = RemotingCommand::request(request::BATCH_ACK_MESSAGE)
        .with_body(serde_json::to_vec(&body).unwrap());
    assert_eq!(caller.invoke(addr, request, WAIT).await.unwrap().code, response::SUCCESS);
    let later = &popped[&2];
    let header = ChangeInvisibleTimeRequestHeader {
        consumer_group: GROUP.into(),
        topic: later.topic.clone(),
        queue_id: later.queue_id,
        extra_info: later.handle.to_string(),
        offset: later.offset,
        invisible_time: 30_000,
    };
    let request =
        RemotingCommand::request(request::CHANGE_MESSAGE_INVISIBLETIME).with_header(&header);
    assert_eq!(caller.invoke(addr, request, WAIT).await.unwrap().code, response::SUCCESS);
    let rest: BTreeSet<u64> = [3, 4, 5].into();
    let back = pop_until(&caller, addr, ("Batched", 60_000), &rest, Duration::from_secs(20)).await;
    assert_eq!(
        back.keys().copied().collect::<BTreeSet<_>>(),
        rest,
        "not the acked, not the pushed"
    );
    broker.stop().await;
}

#[tokio::test]
async fn bad_acks_are_refused_with_rocketmqs_codes() {
    let (broker, caller) = setup("Refused", 1).await;
    let addr = broker.addr.as_str();
    let popped = pop_until(&caller, addr, ("Refused", 60_000), &[0].into(), WAIT).await;
    let good = popped[&0].clone();
    let ask = |topic: &str, queue_id: i32, offset: i64, extra_info: &str| {
        let header = AckMessageRequestHeader {
            consumer_group: GROUP.into(),
            topic: topic.into(),
            queue_id,
            extra_info: extra_info.into(),
            offset,
        };
        RemotingCommand::request(request::ACK_MESSAGE).with_header(&header)
    };
    let handle = good.handle.to_string();
    let cases = [
        (ask("Nope", 0, 0, &handle), response::TOPIC_NOT_EXIST),
        (ask("Refused", 9, 0, &handle), response::MESSAGE_ILLEGAL),
        (ask("Refused", good.queue_id, 99, &handle), response::NO_MESSAGE),
        (ask("Refused", good.queue_id, good.offset, "1 2 3"), response::SYSTEM_ERROR),
    ];
    for (request, code) in cases {
        let reply = caller.invoke(addr, request, WAIT).await.unwrap();
        assert_eq!(reply.code, code, "{:?}", reply.remark);
        assert!(!reply.remark.unwrap_or_default().is_empty(), "a refusal says why");
    }
    let mut big = PopMessageRequestHeader::default();
    (big.consumer_group, big.topic, big.queue_id, big.max_msg_nums) =
        (GROUP.into(), "Refused".into(), -1, 33);
    let reply = caller
        .invoke(addr, RemotingCommand::request(request::POP_MESSAGE).with_header(&big), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.code, response::INVALID_PARAMETER);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pop_is_held_until_a_message_comes_or_its_poll_time_ends() {
    let (broker, caller) = setup("Held", 0).await;
    let addr = broker.addr.clone();
    let started = Instant::now();
    assert_eq!(pop_held(&caller, &addr, ("Held", 60_000), 500).await.0, response::POLLING_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(400), "held for its poll time");
    let sender = RemotingClient::new(ClientConfig::default(), None);
    let send_to = addr.clone();
    let sending = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        raw::send(&sender, &send_to, "Held", 0, 7, 32).await;
    });
    let started = Instant::now();
    let (code, popped) = pop_held(&caller, &addr, ("Held", 60_000), 10_000).await;
    assert_eq!(
        (code, popped.iter().map(|m| m.id).collect::<Vec<_>>()),
        (response::SUCCESS, vec![7])
    );
    assert!(started.elapsed() < Duration::from_secs(5), "answered when the message came");
    sending.await.unwrap();
    broker.stop().await;
}

/// NOTIFICATION for the group: whether a pop would find something (held up to `poll_ms`).
async fn notified(caller: &RemotingClient, addr: &str, topic: &str, poll_ms: i64) -> bool {
    let header = NotificationRequestHeader {
        consumer_group: GROUP.into(),
        topic: topic.into(),
        queue_id: -1,
        poll_time: poll_ms,
        born_time: None,
        order: None,
        attempt_id: None,
    };
    let request = RemotingCommand::request(request::NOTIFICATION).with_header(&header);
    let reply = caller.invoke(addr, request, WAIT).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS);
    reply.header::<NotificationResponseHeader>().unwrap().has_msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_notification_and_polling_info_take_nothing() {
    let (broker, caller) = setup("Peeked", 4).await;
    let addr = broker.addr.clone();
    let peek = |queue_id| {
        let header = PeekMessageRequestHeader {
            topic: "Peeked".into(),
            queue_id,
            max_msg_nums: 32,
            consumer_group: GROUP.into(),
        };
        RemotingCommand::request(request::PEEK_MESSAGE).with_header(&header)
    };
    let deadline = Instant::now() + WAIT;
    let mut reply = caller.invoke(&addr, peek(-1), WAIT).await.unwrap();
    while reply.body_bytes().len() < 4 * 32 && Instant::now() < deadline {
        reply = caller.invoke(&addr, peek(-1), WAIT).await.unwrap();
    }
    assert_eq!(reply.code, response::SUCCESS);
    assert!(notified(&caller, &addr, "Peeked", 0).await, "a pop would find them");
    let popped = pop_until(&caller, &addr, ("Peeked", 60_000), &(0..4).collect(), WAIT).await;
    assert_eq!(popped.len(), 4, "peeking hid nothing");
    assert_eq!(caller.invoke(&addr, peek(-1), WAIT).await.unwrap().code, response::PULL_NOT_FOUND);
    assert!(!notified(&caller, &addr, "Peeked", 0).await, "all taken");
    let started = Instant::now();
    assert!(!notified(&caller, &addr, "Peeked", 400).await);
    assert!(started.elapsed() >= Duration::from_millis(300), "held for its poll time");

    let (caller2, addr2) = (RemotingClient::new(ClientConfig::default(), None), addr.clone());
    let held =
        tokio::spawn(async move { pop_held(&caller2, &addr2, ("Peeked", 60_000), 3_000).await.0 });
    let info = PollingInfoRequestHeader {
        consumer_group: GROUP.into(),
        topic: "Peeked".into(),
        queue_id: -1,
    };
    let ask = || RemotingCommand::request(request::POLLING_INFO).with_header(&info);
    let deadline = Instant::now() + WAIT;
    let mut polling = 0;
    while polling == 0 && Instant::now() < deadline {
        let reply = caller.invoke(&addr, ask(), WAIT).await.unwrap();
        polling = reply.header::<PollingInfoResponseHeader>().unwrap().polling_num;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(polling, 1, "the held pop is counted");
    assert_eq!(held.await.unwrap(), response::POLLING_TIMEOUT);
    let reply = caller.invoke(&addr, ask(), WAIT).await.unwrap();
    assert_eq!(reply.header::<PollingInfoResponseHeader>().unwrap().polling_num, 0);
    broker.stop().await;
}
