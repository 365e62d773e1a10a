//! Timer messages (RocketMQ 5's wheel) through `petrel-client` against an in-process
//! NameServer and broker: each is delivered at its time and not before, a cancel sent before
//! that time keeps its message back, a time past `timerMaxDelaySec` is refused, and pending
//! messages survive a restart of the broker on its store, counted in `config/timermetrics`,
//! which GET_TIMER_METRICS answers as the file holds it.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{loopback_config, namesrv, producer, wait_routed, Running};
use petrel::broker;
use petrel_client::{
    ClientError, ConsumeFrom, Message, PullConsumer, PullConsumerConfig, ReceivedMessage,
};
use petrel_core::broker::timer::TimerSettings;
use petrel_core::codes::response;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};
use petrel_storage::disk::FsDisk;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn consumer(namesrv: &str, topic: &str) -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: format!("{topic}Readers"),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    };
    let consumer = PullConsumer::start(config).unwrap();
    let queues = consumer.queues(topic).await.unwrap();
    consumer.assign(&queues).await.unwrap();
    consumer
}

/// Polls for `within`, noting when each message (by body) was first received.
async fn collect(
    consumer: &PullConsumer,
    within: Duration,
) -> BTreeMap<String, (i64, ReceivedMessage)> {
    let mut got = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        for message in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            let body = String::from_utf8(message.body.to_vec()).unwrap();
            assert!(got.insert(body.clone(), (now_ms(), message)).is_none(), "{body} twice");
        }
    }
    got
}

#[tokio::test]
async fn timer_messages_arrive_at_their_time_and_a_cancel_keeps_one_back() {
    let (_namesrv, ns) = namesrv().await;
    let _broker = Running::start(Some(&ns), |_| {}).await;
    let producer = producer(&ns);
    let sent_at = now_ms();
    let at = sent_at + 1_500;
    let timed = Message::new("Timed", "at")
        .with_delivery_time(UNIX_EPOCH + Duration::from_millis(at as u64));
    producer.send(&timed).await.unwrap();
    let delayed = Message::new("Timed", "after").with_delay(Duration::from_millis(2_200));
    producer.send(&delayed).await.unwrap();
    let doomed = Message::new("Timed", "cancelled")
        .with_delivery_time(UNIX_EPOCH + Duration::from_millis(at as u64));
    let doomed_id = producer.send(&doomed).await.unwrap().msg_id;
    producer.send(&Message::cancel("Timed", &doomed_id, at)).await.unwrap();
    producer.send(&Message::new("Timed", "now")).await.unwrap();

    let consumer = consumer(&ns, "Timed").await;
    let got = collect(&consumer, Duration::from_millis(5_000)).await;
    let bodies: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(bodies, ["after", "at", "now"], "the cancelled message never comes");
    let (received, message) = &got["at"];
    assert!(*received >= at && message.store_timestamp >= at, "never early: {message:?}");
    assert!(message.store_timestamp < at + 1_500, "within a second of its time: {message:?}");
    assert!(!message.properties.contains_key("REAL_TOPIC"));
    assert!(message.properties.contains_key("TIMER_DEQUEUE_MS"));
    let (_, message) = &got["after"];
    assert!(message.store_timestamp >= sent_at + 2_200, "never early: {message:?}");
    let (_, message) = &got["now"];
    assert!(message.store_timestamp < at, "a plain message does not wait");
}

#[tokio::test]
async fn a_time_past_the_maximum_is_refused_with_the_reason() {
    let (_namesrv, ns) = namesrv().await;
    let _broker = Running::start(Some(&ns), |c| c.timer.settings.max_delay_sec = 60).await;
    let producer = producer(&ns);
    producer.send(&Message::new("Far", "warm")).await.unwrap();
    let far = Message::new("Far", "far").with_delay(Duration::from_secs(61));
    match producer.send(&far).await {
        Err(ClientError::Broker { code, remark }) => {
            assert_eq!(code, response::MESSAGE_ILLEGAL);
            assert!(remark.contains("max delay 60000ms"), "{remark}");
        }
        other => panic!("a delay past timerMaxDelaySec was taken: {other:?}"),
    }
    producer.send(&Message::new("Far", "near").with_delay(Duration::from_secs(60))).await.unwrap();
}

/// `timerCongestNumEachSlot=0`: a slot takes messages until the wheel counts one in it (its
/// enqueue lags the sends a little), then refuses every further one with RocketMQ's
/// WHEEL_TIMER_FLOW_CONTROL answer, while another slot still takes one.
#[tokio::test]
async fn a_congested_slot_refuses_timer_messages() {
    let (_namesrv, ns) = namesrv().await;
    let _broker = Running::start(Some(&ns), |c| c.timer.settings.congest_num_each_slot = 0).await;
    let config = petrel_client::ProducerConfig {
        namesrv_addrs: vec![ns.clone()],
        retries: 0,
        ..petrel_client::ProducerConfig::default()
    };
    let producer = petrel_client::Producer::start(config).unwrap();
    let at = |secs: u64| UNIX_EPOCH + Duration::from_millis(now_ms() as u64 + secs * 1_000);
    let (first_slot, second_slot) = (at(60), at(90));
    let first = Message::new("Busy", "first").with_delivery_time(first_slot);
    producer.send(&first).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let more = Message::new("Busy", "more").with_delivery_time(first_slot);
        match producer.send(&more).await {
            Ok(_) => assert!(std::time::Instant::now() < deadline, "the full slot still takes"),
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ClientError::Broker { code, remark } = refused else { panic!("{refused:?}") };
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.starts_with("timer message is under flow control, max num limit is 0"));
    for _ in 0..5 {
        let more = Message::new("Busy", "more").with_delivery_time(first_slot);
        assert!(producer.send(&more).await.is_err(), "a counted slot refuses every one");
    }
    producer.send(&Message::new("Busy", "other").with_delivery_time(second_slot)).await.unwrap();
    producer.send(&Message::new("Busy", "plain")).await.unwrap();
}

#[tokio::test]
async fn pending_timer_messages_survive_a_restart() {
    let (_namesrv, ns) = namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = loopback_config(Some(&ns), dir.path());
        config.store.commit_log_file_bytes = 16 << 20;
        config
    };
    let first = broker::start(config(), Arc::new(FsDisk)).await.unwrap();
    wait_routed(&ns, "broker-a").await;
    let producer = producer(&ns);
    let at = now_ms() + 4_000;
    let when = UNIX_EPOCH + Duration::from_millis(at as u64);
    for i in 0..20 {
        producer
            .send(&Message::new("Kept", format!("m{i}")).with_delivery_time(when))
            .await
            .unwrap();
    }
    first.shutdown().await.unwrap();
    assert_eq!(timing_count(dir.path(), "Kept"), Some(20), "written at the stop");
    let second = broker::start(config(), Arc::new(FsDisk)).await.unwrap();
    wait_routed(&ns, "broker-a").await;
    // As a RocketMQ slave asks its master: the file as the wheel last had it written (asked
    // again should a write fall between the answer and the read of the file).
    let addr = second.local_addr.to_string();
    let (asked, file) = same_metrics(&addr, dir.path()).await;
    assert_eq!(asked["timingCount"]["Kept"]["count"], 20, "{asked}");
    let consumer = consumer(&ns, "Kept").await;
    let got = collect(&consumer, Duration::from_millis(at as u64 + 2_500 - now_ms() as u64)).await;
    assert_eq!(got.len(), 20, "every pending message, once: {:?}", got.keys());
    for (received, message) in got.values() {
        assert!(*received >= at && message.store_timestamp >= at, "never early: {message:?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while timing_count(dir.path(), "Kept") != Some(0) {
        assert!(std::time::Instant::now() < deadline, "timermetrics still counts delivered ones");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (asked, _) = same_metrics(&addr, dir.path()).await;
    assert_eq!(asked["timingCount"]["Kept"]["count"], 0, "{asked}");
    assert!(asked["dataVersion"]["counter"].as_i64() > file["dataVersion"]["counter"].as_i64());
}

#[tokio::test]
async fn timer_metrics_are_refused_by_a_broker_without_the_wheel() {
    let (_namesrv, ns) = namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config(Some(&ns), dir.path());
    let s = config.timer.settings;
    config.timer.settings =
        TimerSettings::new(false, s.precision_ms, s.roll_window_slots, s.max_delay_sec);
    let broker = broker::start(config, Arc::new(FsDisk)).await.unwrap();
    let (code, remark) = asked_metrics(&broker.local_addr.to_string()).await.unwrap_err();
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.contains("timerWheelEnable is false"), "{remark}");
}

/// GET_TIMER_METRICS of the broker at `addr` and its `config/timermetrics` under `root`, once
/// they agree; a failure if they do not within 3 s.
async fn same_metrics(
    addr: &str,
    root: &std::path::Path,
) -> (serde_json::Value, serde_json::Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let asked = asked_metrics(addr).await.unwrap();
        let bytes = std::fs::read(root.join("config/timermetrics")).unwrap();
        let file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if asked == file {
            return (asked, file);
        }
        assert!(std::time::Instant::now() < deadline, "asked {asked}, the file holds {file}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET_TIMER_METRICS of the broker at `addr`: the JSON it answers, or its code and remark.
async fn asked_metrics(addr: &str) -> Result<serde_json::Value, (i32, String)> {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let ask = RemotingCommand::request(request::GET_TIMER_METRICS);
    let answer = client.invoke(addr, ask, Duration::from_secs(3)).await.unwrap();
    if answer.code != response::SUCCESS {
        return Err((answer.code, answer.remark.unwrap_or_default()));
    }
    Ok(serde_json::from_slice(&answer.body_bytes()).unwrap())
}

/// `config/timermetrics`' count of `topic` (RocketMQ's JSON), if it lists the topic.
fn timing_count(root: &std::path::Path, topic: &str) -> Option<i64> {
    let bytes = std::fs::read(root.join("config/timermetrics")).ok()?;
    let metrics: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(metrics["dataVersion"]["counter"].as_i64().unwrap() > 0, "{metrics}");
    metrics["timingCount"][topic]["count"].as_i64()
}

/// A store as RocketMQ 5 writes it, with timer messages pending in its timer log (written by
/// `tests/store_compat/rocketmq_store.py` from RocketMQ's reference, not from Petrel's code):
/// Petrel opens it and delivers each at its time.
#[tokio::test]
async fn a_rocketmq_store_with_pending_timer_messages_delivers_them() {
    let (_namesrv, ns) = namesrv().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let now = now_ms();
    let timed: Vec<(String, i64)> =
        (0..10).map(|i| (format!("timed {i}"), now + 2_500 + i * 150)).collect();
    let messages: Vec<serde_json::Value> = timed
        .iter()
        .map(|(body, due)| {
            // TIMER_OUT_MS: the slot before the time, as RocketMQ's send hook rounds it.
            let out = if due % 1_000 == 0 { due - 1_000 } else { due / 1_000 * 1_000 };
            serde_json::json!({
                "topic": "rmq_sys_wheel_timer", "queueId": 0, "body": body,
                "bornTimestamp": now, "storeTimestamp": now,
                "properties": {
                    "TIMER_DELIVER_MS": due.to_string(), "TIMER_OUT_MS": out.to_string(),
                    "REAL_TOPIC": "FromRocketMQ", "REAL_QID": "0",
                },
            })
        })
        .collect();
    let timer = serde_json::json!({ "writeTimeMs": now / 1_000 * 1_000, "lastReadTimeMs": now / 1_000 * 1_000 });
    let manifest = dir.path().join("manifest.json");
    let manifest_json = serde_json::json!({ "messages": messages, "timer": timer });
    std::fs::write(&manifest, manifest_json.to_string()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/store_compat/rocketmq_store.py");
    let written = std::process::Command::new("python3")
        .arg(script)
        .args(["write", root.to_str().unwrap(), manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));

    let config = loopback_config(Some(&ns), &root);
    let _broker = broker::start(config, Arc::new(FsDisk)).await.unwrap();
    wait_routed(&ns, "broker-a").await;
    producer(&ns).send(&Message::new("FromRocketMQ", "plain")).await.unwrap();
    let consumer = consumer(&ns, "FromRocketMQ").await;
    let got = collect(&consumer, Duration::from_millis(6_000)).await;
    for (body, due) in &timed {
        let (received, message) = got.get(body).unwrap_or_else(|| panic!("{body} not delivered"));
        assert!(*received >= *due && message.store_timestamp >= *due, "never early: {message:?}");
        assert!(message.store_timestamp < due + 1_500, "within the second after: {message:?}");
    }
    assert_eq!(got.len(), timed.len() + 1, "each once, and the plain message");
}
