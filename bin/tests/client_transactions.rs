//! Transaction messages end to end: `petrel-client`'s transaction producer against an
//! in-process NameServer and broker on loopback. A commit is delivered once, a rollback
//! never, a half message never as itself; END_TRANSACTION's bad requests get RocketMQ's
//! codes; a producer that does not say is checked until it does, or until the broker gives
//! up after `transactionCheckMax` checks. A commit with a timer ask waits for its time.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{drain, namesrv, Running};
use petrel_client::raw;
use petrel_client::{
    LocalTransactionState, Message, ProducerConfig, ReceivedMessage, SendResult,
    TransactionListener, TransactionProducer,
};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{EndTransactionRequestHeader, GetMaxOffsetRequestHeader};
use petrel_net::transport::{ClientConfig, RemotingClient};

/// Decides by message id: execute answers `by_id(id)`; a check answers Commit from the
/// `commit_at`-th check of a message on (never when 0), and counts the checks.
struct Decider {
    execute: fn(u64) -> LocalTransactionState,
    commit_at: fn(u64) -> u32,
    checks: Arc<Mutex<BTreeMap<u64, Vec<String>>>>,
}

impl TransactionListener for Decider {
    fn execute(&self, message: &Message, _sent: &SendResult) -> LocalTransactionState {
        (self.execute)(raw::body_id(&message.body).unwrap())
    }

    fn check(&self, message: &ReceivedMessage) -> LocalTransactionState {
        let id = raw::body_id(&message.body).unwrap();
        let times = message.properties.get("TRANSACTION_CHECK_TIMES").cloned().unwrap_or_default();
        let mut checks = self.checks.lock().unwrap();
        let seen = checks.entry(id).or_default();
        seen.push(times);
        match (self.commit_at)(id) {
            0 => LocalTransactionState::Unknown,
            at if seen.len() as u32 >= at => LocalTransactionState::Commit,
            _ => LocalTransactionState::Unknown,
        }
    }
}

fn start_producer(namesrv: &str, group: &str, decider: Decider) -> TransactionProducer {
    let config = ProducerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: group.to_owned(),
        ..ProducerConfig::default()
    };
    TransactionProducer::start(config, decider).unwrap()
}

/// Message ids in every queue of `topic`.
async fn delivered(client: &RemotingClient, broker: &str, topic: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    for queue in 0..4 {
        ids.extend(drain(client, broker, topic, queue).await.into_iter().map(|(_, id)| id));
    }
    ids.sort_unstable();
    ids
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Units in queue 0 of `topic` (0 when the broker does not have the topic).
async fn units(client: &RemotingClient, broker: &str, topic: &str) -> i64 {
    let header = GetMaxOffsetRequestHeader { topic: topic.into(), queue_id: 0, committed: None };
    let ask = RemotingCommand::request(request::GET_MAX_OFFSET).with_header(&header);
    let reply = client.invoke(broker, ask, Duration::from_secs(3)).await.unwrap();
    match reply.code {
        response::SUCCESS => reply.ext_fields.get("offset").unwrap().parse().unwrap(),
        _ => 0,
    }
}

/// END_TRANSACTION sent as a request, so that the broker's answer can be read.
async fn end(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    sent: &SendResult,
    commit_or_rollback: i32,
) -> (i32, String) {
    let header = EndTransactionRequestHeader {
        topic: Some(sent.queue.topic.clone()),
        producer_group: group.to_owned(),
        tran_state_table_offset: sent.queue_offset,
        commit_log_offset: raw::stored_at(&sent.offset_msg_id).unwrap() as i64,
        commit_or_rollback,
        from_transaction_check: Some(false),
        msg_id: sent.msg_id.clone(),
        transaction_id: Some(sent.msg_id.clone()),
    };
    let ask = RemotingCommand::request(request::END_TRANSACTION).with_header(&header);
    let reply = client.invoke(broker, ask, Duration::from_secs(3)).await.unwrap();
    (reply.code, reply.remark.unwrap_or_default())
}

#[tokio::test]
async fn a_commit_is_delivered_once_a_rollback_never_and_bad_ends_are_refused() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.transactions.check_interval_ms = 3_600_000;
    })
    .await;
    let decider = Decider {
        execute: |id| match id % 3 {
            0 => LocalTransactionState::Commit,
            1 => LocalTransactionState::Rollback,
            _ => LocalTransactionState::Unknown,
        },
        commit_at: |_| 0,
        checks: Arc::default(),
    };
    let producer = start_producer(&ns, "TxGroup", decider);
    let mut sent = BTreeMap::new();
    for id in 0..9u64 {
        let result = producer.send(&Message::new("TxOrders", raw::body(id, 64))).await.unwrap();
        assert_eq!(result.sent.queue.topic, "TxOrders");
        sent.insert(id, result.sent);
    }
    let client = RemotingClient::new(ClientConfig::default(), None);
    wait_for("the commits", async || delivered(&client, &broker.addr, "TxOrders").await.len() >= 3)
        .await;
    assert_eq!(delivered(&client, &broker.addr, "TxOrders").await, [0, 3, 6]);
    let halves = drain(&client, &broker.addr, "RMQ_SYS_TRANS_HALF_TOPIC", 0).await;
    assert_eq!(halves.len(), 9, "every half message waits in the half queue");
    let ops = units(&client, &broker.addr, "RMQ_SYS_TRANS_OP_HALF_TOPIC").await;
    assert_eq!(ops, 6, "one op per commit or rollback");

    let (code, remark) = end(&client, &broker.addr, "TxGroup", &sent[&0], 8).await;
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.contains("committed or rolled back already"), "{remark}");
    let (code, remark) = end(&client, &broker.addr, "TxGroup", &sent[&1], 8).await;
    assert_eq!(code, response::SYSTEM_ERROR, "no commit after a rollback: {remark}");
    let (code, remark) = end(&client, &broker.addr, "Other", &sent[&2], 8).await;
    assert_eq!((code, remark.as_str()), (response::SYSTEM_ERROR, "The producer group wrong"));
    let (code, remark) = end(&client, &broker.addr, "TxGroup", &sent[&2], 5).await;
    assert!(code == response::SYSTEM_ERROR && remark.contains("commitOrRollback"), "{remark}");
    let plain = producer.producer().send(&Message::new("TxOrders", raw::body(99, 64))).await;
    let (code, remark) = end(&client, &broker.addr, "TxGroup", &plain.unwrap(), 8).await;
    assert_eq!(code, response::SYSTEM_ERROR);
    assert_eq!(remark, "Find prepared transaction message failed");

    assert_eq!(end(&client, &broker.addr, "TxGroup", &sent[&2], 8).await.0, response::SUCCESS);
    assert_eq!(end(&client, &broker.addr, "TxGroup", &sent[&5], 12).await.0, response::SUCCESS);
    assert_eq!(delivered(&client, &broker.addr, "TxOrders").await, [0, 2, 3, 6, 99]);
    producer.shutdown().await;
    broker.stop().await;
}

/// A committed transaction message with a timer ask waits in the timer topic and is stored
/// in its topic at its time, not at its commit; an ask past `timerMaxDelaySec` is refused at
/// the prepare, before anything is stored.
#[tokio::test]
async fn a_committed_timer_message_is_delivered_at_its_time() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.transactions.check_interval_ms = 3_600_000;
    })
    .await;
    let decider = Decider {
        execute: |_| LocalTransactionState::Commit,
        commit_at: |_| 0,
        checks: Arc::default(),
    };
    let producer = start_producer(&ns, "TxTimerGroup", decider);
    let at = SystemTime::now() + Duration::from_millis(2_000);
    let at_ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let timed = Message::new("TxTimed", raw::body(1, 64)).with_delivery_time(at);
    producer.send(&timed).await.unwrap();
    let too_far = Message::new("TxTimed", raw::body(2, 64))
        .with_delay(Duration::from_secs(3 * 24 * 3600 + 1));
    let refused = producer.send(&too_far).await.unwrap_err().to_string();
    assert!(refused.contains("timer message illegal"), "{refused}");

    let client = RemotingClient::new(ClientConfig::default(), None);
    let op = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
    wait_for("the commit", async || units(&client, &broker.addr, op).await == 1).await;
    assert_eq!(units(&client, &broker.addr, "rmq_sys_wheel_timer").await, 1, "it waits");
    assert!(delivered(&client, &broker.addr, "TxTimed").await.is_empty(), "not at its commit");
    let mut stored_at = None;
    while stored_at.is_none() {
        for queue in 0..4 {
            let pulled =
                raw::pull(&client, &broker.addr, "G", "TxTimed", queue, 0, Duration::ZERO).await;
            if let Some(message) = pulled.unwrap().messages.first() {
                assert_eq!(message.id, 1);
                stored_at = Some(message.store_timestamp);
            }
        }
        assert!(SystemTime::now() < at + Duration::from_secs(10), "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored_at = stored_at.unwrap();
    assert!(stored_at >= at_ms && stored_at < at_ms + 1_500, "{stored_at} for {at_ms}");
    assert_eq!(delivered(&client, &broker.addr, "TxTimed").await, [1], "once");
    producer.shutdown().await;
    broker.stop().await;
}

/// `timerCongestNumEachSlot=0`: once the wheel counts a message in a slot, a commit of a
/// transaction message for that slot is refused as a send would be (RocketMQ's
/// EndTransactionProcessor), and its half message stays open for a later end or check.
#[tokio::test]
async fn a_commit_into_a_congested_timer_slot_is_refused_and_the_half_stays_open() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.transactions.check_interval_ms = 3_600_000;
        c.timer.settings.congest_num_each_slot = 0;
    })
    .await;
    let decider = Decider {
        execute: |_| LocalTransactionState::Unknown,
        commit_at: |_| 0,
        checks: Arc::default(),
    };
    let producer = start_producer(&ns, "TxBusyGroup", decider);
    let at = SystemTime::now() + Duration::from_secs(60);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut taken = 0;
    let refused = loop {
        let filler = Message::new("TxBusy", raw::body(0, 64)).with_delivery_time(at);
        match producer.producer().send(&filler).await {
            Ok(_) => taken += 1,
            Err(e) => break e.to_string(),
        }
        assert!(Instant::now() < deadline, "the slot never counted its message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(taken >= 1 && refused.contains("under flow control"), "{taken}: {refused}");
    let client = RemotingClient::new(ClientConfig::default(), None);
    let wheel = "rmq_sys_wheel_timer";
    wait_for("the fillers", async || units(&client, &broker.addr, wheel).await == taken).await;
    let timed = Message::new("TxBusy", raw::body(1, 64)).with_delivery_time(at);
    let sent = producer.send(&timed).await.unwrap().sent;
    let (code, remark) = end(&client, &broker.addr, "TxBusyGroup", &sent, 8).await;
    assert_eq!(code, response::SYSTEM_ERROR);
    assert!(remark.starts_with("timer message is under flow control"), "{remark}");
    let op = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
    assert_eq!(units(&client, &broker.addr, op).await, 0, "the half message stays open");
    assert_eq!(units(&client, &broker.addr, wheel).await, taken, "the commit stored nothing");
    assert_eq!(end(&client, &broker.addr, "TxBusyGroup", &sent, 12).await.0, response::SUCCESS);
    assert_eq!(units(&client, &broker.addr, op).await, 1, "rolled back");
    producer.shutdown().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_unknown_transaction_is_checked_until_resolved_or_given_up() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.transactions.timeout_ms = 100;
        c.transactions.check_interval_ms = 200;
        c.transactions.check_max = 3;
    })
    .await;
    let checks = Arc::new(Mutex::new(BTreeMap::new()));
    let decider = Decider {
        execute: |_| LocalTransactionState::Unknown,
        commit_at: |id| if id == 1 { 2 } else { 0 },
        checks: checks.clone(),
    };
    let producer = start_producer(&ns, "CheckedGroup", decider);
    for id in [1u64, 2] {
        producer.send(&Message::new("Checked", raw::body(id, 64))).await.unwrap();
    }
    let client = RemotingClient::new(ClientConfig::default(), None);
    wait_for("the checked commit and the discard", async || {
        let given_up = units(&client, &broker.addr, "TRANS_CHECK_MAX_TIME_TOPIC").await;
        delivered(&client, &broker.addr, "Checked").await == [1] && given_up == 1
    })
    .await;
    let given_up = drain(&client, &broker.addr, "TRANS_CHECK_MAX_TIME_TOPIC", 0).await;
    assert_eq!(given_up[0].1, 2);
    let checks = checks.lock().unwrap().clone();
    assert_eq!(checks[&1], ["1", "2"], "checked until the producer committed");
    assert_eq!(checks[&2], ["1", "2", "3"], "checked transactionCheckMax times, then given up");
    producer.shutdown().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_producer_restarted_with_nothing_to_send_answers_checks_of_the_topics_it_names() {
    let (_namesrv, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |c| {
        c.transactions.timeout_ms = 100;
        c.transactions.check_interval_ms = 200;
        c.transactions.check_max = 100;
    })
    .await;
    let undecided = Decider {
        execute: |_| LocalTransactionState::Unknown,
        commit_at: |_| 0,
        checks: Arc::default(),
    };
    let gone = start_producer(&ns, "RestartedGroup", undecided);
    gone.send(&Message::new("Restarted", raw::body(7, 64))).await.unwrap();
    gone.shutdown().await;
    // The producer's next process knows the transaction committed; it sends nothing, so
    // only the topics it names lead it to the broker that must ask.
    let checks = Arc::new(Mutex::new(BTreeMap::new()));
    let committer = Decider {
        execute: |_| LocalTransactionState::Unknown,
        commit_at: |_| 1,
        checks: checks.clone(),
    };
    let config = ProducerConfig {
        namesrv_addrs: vec![ns.clone()],
        group: "RestartedGroup".into(),
        topics: vec!["Restarted".into()],
        ..ProducerConfig::default()
    };
    let restarted = TransactionProducer::start(config, committer).unwrap();
    let client = RemotingClient::new(ClientConfig::default(), None);
    wait_for("the commit answered by the restarted producer", async || {
        delivered(&client, &broker.addr, "Restarted").await == [7]
    })
    .await;
    assert_eq!(checks.lock().unwrap().len(), 1, "the restarted producer was asked");
    restarted.shutdown().await;
    broker.stop().await;
}
