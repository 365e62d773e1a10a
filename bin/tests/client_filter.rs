//! SQL92 filtering end to end, against an in-process NameServer and a broker with
//! `enablePropertyFilter=true`: push, pull and POP consumers subscribed with SQL92 receive
//! exactly the messages their expression selects; a bad expression is refused at heartbeat,
//! at pull and at CHECK_CLIENT_CONFIG with where it goes wrong; a pull that carries no
//! expression is filtered by the one its group's heartbeat registered, which the broker keeps
//! in `config/consumerFilter.json` across a restart.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::raw;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, PullConsumer, PullConsumerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage, SimpleConsumer, SimpleConsumerConfig, Subscription,
};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::PullMessageRequestHeader;
use petrel_net::transport::{ClientConfig, RemotingClient};

const TOPIC: &str = "Filtered";
const EXPRESSION: &str = "region = 'eu' AND n >= 50 AND (TAGS = 'TagA' OR n BETWEEN 190 AND 199)";
const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// The message `id`: `n=id`, a region by turns, TagA on even ids and TagB on odd ones.
fn message(id: u64) -> Message {
    let mut m = Message::new(TOPIC, raw::body(id, 32)).with_tags(if id.is_multiple_of(2) {
        "TagA"
    } else {
        "TagB"
    });
    m.properties.insert("n".into(), id.to_string());
    m.properties.insert("region".into(), REGIONS[(id % 3) as usize].into());
    m
}

/// What EXPRESSION selects, worked out by hand.
fn selected(ids: std::ops::Range<u64>) -> BTreeSet<u64> {
    ids.filter(|id| id % 3 == 0 && *id >= 50 && (id % 2 == 0 || (190..200).contains(id))).collect()
}

fn push_config(ns: &str, group: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: group.to_owned(),
        subscriptions: [(TOPIC.to_owned(), Subscription::sql92(EXPRESSION))].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(300),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    }
}

/// Waits until `seen` holds `want`, and a little longer for anything unwanted.
async fn settle(seen: &Mutex<BTreeSet<u64>>, want: &BTreeSet<u64>) -> BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !want.is_subset(&seen.lock().unwrap()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn sql92_subscribers_receive_exactly_what_their_expression_selects() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| c.property_filter = true).await;
    let producer = producer(&ns);
    for id in 0..200 {
        producer.send(&message(id)).await.unwrap();
    }
    let want = selected(0..200);
    assert_eq!(want.len(), 26);

    let pushed = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = pushed.clone();
    let push = PushConsumer::start(push_config(&ns, "SqlPush"), move |m: &ReceivedMessage| {
        assert!(sink.lock().unwrap().insert(raw::body_id(&m.body).unwrap()), "delivered twice");
        ConsumeResult::Success
    })
    .unwrap();
    assert_eq!(settle(&pushed, &want).await, want, "push consumer");
    push.shutdown().await;

    let pull = PullConsumer::start(PullConsumerConfig {
        namesrv_addrs: vec![ns.clone()],
        group: "SqlPull".into(),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    })
    .unwrap();
    pull.subscribe(TOPIC, Subscription::sql92(EXPRESSION)).await.unwrap();
    let mut pulled = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pulled.len() < want.len() && Instant::now() < deadline {
        for m in pull.poll(Duration::from_millis(200)).await.unwrap() {
            assert!(pulled.insert(raw::body_id(&m.body).unwrap()), "pulled twice");
        }
    }
    assert!(pull.poll(Duration::from_millis(300)).await.unwrap().is_empty(), "nothing more");
    assert_eq!(pulled, want, "pull consumer");
    pull.shutdown().await.unwrap();

    let pop = SimpleConsumer::start(SimpleConsumerConfig {
        namesrv_addrs: vec![ns.clone()],
        group: "SqlPop".into(),
        topic: TOPIC.into(),
        subscription: Subscription::sql92(EXPRESSION),
        await_duration: Duration::from_millis(300),
        ..SimpleConsumerConfig::default()
    })
    .unwrap();
    let mut popped = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && popped.len() < want.len() {
        for m in pop.receive(32, Duration::from_secs(60)).await.unwrap() {
            assert!(popped.insert(raw::body_id(&m.message.body).unwrap()), "popped twice");
            pop.ack(&m).await.unwrap();
        }
    }
    assert!(pop.receive(32, Duration::from_secs(60)).await.unwrap().is_empty(), "nothing more");
    assert_eq!(popped, want, "POP consumer");
    broker.stop().await;
}

fn heartbeat(group: &str, expression: &str, version: i64) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"10.0.0.9@filters","producerDataSet":[],"consumerDataSet":[{{"groupName":"{group}","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","unitMode":false,"subscriptionDataSet":[{{"classFilterMode":false,"topic":"{TOPIC}","subString":"{expression}","tagsSet":[],"codeSet":[],"subVersion":{version},"expressionType":"SQL92"}}]}}]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body)
}

fn pull(group: &str, queue: i32, subscription: Option<&str>, sub_version: i64) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: TOPIC.into(),
        queue_id: queue,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: if subscription.is_some() { 0x4 } else { 0 },
        commit_offset: -1,
        suspend_timeout_millis: 0,
        subscription: subscription.map(str::to_owned),
        sub_version,
        expression_type: Some("SQL92".into()),
        max_msg_bytes: None,
    };
    RemotingCommand::request(request::PULL_MESSAGE).with_header(&header)
}

async fn call(client: &RemotingClient, addr: &str, command: RemotingCommand) -> RemotingCommand {
    client.invoke(addr, command, Duration::from_secs(3)).await.unwrap()
}

/// The `n` of every message a pull answer holds (records back to back).
fn ns_of(reply: &RemotingCommand) -> BTreeSet<u64> {
    use petrel_core::record::{scan_record, Checks, Scanned};
    let (mut out, mut at) = (BTreeSet::new(), 0);
    while at < reply.body.len() {
        let checks = Checks { physical_offset: None, crc: false };
        let Scanned::Record(record) = scan_record(&reply.body[at..], checks) else {
            panic!("a record")
        };
        let n = record.property(b"n").expect("every message has n");
        out.insert(std::str::from_utf8(n).unwrap().parse().unwrap());
        at += record.bytes.len();
    }
    out
}

#[tokio::test]
async fn bad_expressions_are_refused_and_registered_ones_filter_pulls_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = common::loopback_config(None, dir.path());
        c.property_filter = true;
        c.flush_offsets_interval_ms = 100;
        c
    };
    let disk = Arc::new(petrel_storage::disk::FsDisk);
    let handle = petrel::broker::start(config(), disk.clone()).await.unwrap();
    let addr = handle.state.addr().to_owned();
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &addr, TOPIC, 1).await);
    for id in 0..20 {
        let extra = format!("n\u{1}{id}\u{2}");
        raw::send_with(&client, &addr, TOPIC, 0, id, 16, &extra).await;
    }

    let refused = call(&client, &addr, heartbeat("Bad", "a > > 1", 1)).await;
    assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert!(refused.remark.unwrap().contains("at column 5"));
    let class = heartbeat("Bad", "n > 1", 1);
    let class_body = String::from_utf8(class.body.to_vec())
        .unwrap()
        .replace(r#""classFilterMode":false"#, r#""classFilterMode":true"#);
    let class = RemotingCommand::request(request::HEART_BEAT).with_body(class_body);
    let refused = call(&client, &addr, class).await;
    assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert!(refused.remark.unwrap().contains("classFilterMode"));
    let mut class_pull = pull("Bad", 0, Some("n > 1"), 1);
    let header: PullMessageRequestHeader = class_pull.header().unwrap();
    class_pull = RemotingCommand::request(request::PULL_MESSAGE)
        .with_header(&PullMessageRequestHeader { sys_flag: 0x4 | 0x8, ..header });
    let refused = call(&client, &addr, class_pull).await;
    assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert!(refused.remark.unwrap().contains("classFilterMode"));
    let check = |expression: &str| {
        let body = format!(
            r#"{{"clientId":"10.0.0.9@filters","group":"Checked","subscriptionData":{{"classFilterMode":false,"codeSet":[],"expressionType":"SQL92","subString":"{expression}","subVersion":1,"tagsSet":[],"topic":"{TOPIC}"}}}}"#
        );
        RemotingCommand::request(request::CHECK_CLIENT_CONFIG).with_body(body)
    };
    assert_eq!(call(&client, &addr, check("n > 1")).await.code, response::SUCCESS);
    let refused = call(&client, &addr, check("n > 1 n")).await;
    assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert!(refused.remark.unwrap().contains("at column 7"));
    let refused = call(&client, &addr, pull("Bad", 0, Some("n BETWEEN 9 AND 1"), 1)).await;
    assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
    assert!(refused.remark.unwrap().contains("low bound of BETWEEN"));

    // A pull carrying its expression is filtered by it.
    let reply = call(&client, &addr, pull("Own", 0, Some("n < 5 AND n <> 2"), 1)).await;
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(ns_of(&reply), BTreeSet::from([0, 1, 3, 4]));

    // A pull without one is filtered by its group's registered expression, at its version.
    let expression = "n >= 10 AND n < 14";
    assert_eq!(
        call(&client, &addr, heartbeat("Kept", expression, 7)).await.code,
        response::SUCCESS
    );
    let reply = call(&client, &addr, pull("Kept", 0, None, 7)).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    assert_eq!(ns_of(&reply), BTreeSet::from([10, 11, 12, 13]));
    let newer = call(&client, &addr, pull("Kept", 0, None, 8)).await;
    assert_eq!(newer.code, response::SUBSCRIPTION_NOT_LATEST);

    // The registry is written in RocketMQ's layout, and read back after a restart.
    let file = dir.path().join("config/consumerFilter.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains(expression)) {
        assert!(Instant::now() < deadline, "consumerFilter.json never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let kept = &written["filterDataByTopic"][TOPIC]["groupFilterData"]["Kept"];
    assert_eq!(kept["expressionType"], "SQL92");
    assert_eq!(kept["clientVersion"], 7);
    assert_eq!(kept["deadTime"], 0);
    handle.shutdown().await.unwrap();

    // Loaded, the filter is dead until the group's heartbeat revives it: the same filter, born
    // before the restart (a new registration would be born now).
    let handle = petrel::broker::start(config(), disk).await.unwrap();
    let addr = handle.state.addr().to_owned();
    assert_eq!(
        call(&client, &addr, heartbeat("Kept", expression, 7)).await.code,
        response::SUCCESS
    );
    let reply = call(&client, &addr, pull("Kept", 0, None, 7)).await;
    assert_eq!(ns_of(&reply), BTreeSet::from([10, 11, 12, 13]));
    handle.shutdown().await.unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let revived = &again["filterDataByTopic"][TOPIC]["groupFilterData"]["Kept"];
    assert_eq!(revived["bornTime"], kept["bornTime"]);
    // The group's only connection closed as the broker stopped: the filter died then.
    assert_eq!(revived["dead"], true);
}

/// With `enablePropertyFilter=false` (RocketMQ's default) an SQL92 pull is refused as RocketMQ
/// refuses it, with the setting named; POP filters regardless, as RocketMQ's does.
#[tokio::test]
async fn sql92_pulls_are_refused_while_property_filters_are_off_and_pops_are_not() {
    let broker = Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &broker.addr, TOPIC, 1).await);
    for id in 0..4 {
        raw::send_with(&client, &broker.addr, TOPIC, 0, id, 16, &format!("n\u{1}{id}\u{2}")).await;
    }
    let reply = call(&client, &broker.addr, pull("Off", 0, Some("n > 1"), 1)).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    let remark = reply.remark.unwrap();
    assert!(remark.starts_with("The broker does not support consumer to filter message by SQL92"));
    assert!(remark.contains("enablePropertyFilter=true"));
    let pop = petrel_net::headers::broker::PopMessageRequestHeader {
        consumer_group: "OffPop".into(),
        topic: TOPIC.into(),
        queue_id: -1,
        max_msg_nums: 32,
        invisible_time: 60_000,
        poll_time: 0,
        born_time: None,
        init_mode: 0,
        exp_type: Some("SQL92".into()),
        exp: Some("n > 1".into()),
        order: None,
        attempt_id: None,
    };
    let reply = call(
        &client,
        &broker.addr,
        RemotingCommand::request(request::POP_MESSAGE).with_header(&pop),
    )
    .await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    assert_eq!(ns_of(&reply), BTreeSet::from([2, 3]));
    broker.stop().await;
}
