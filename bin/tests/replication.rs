//! A master and a slave on loopback, replicating over RocketMQ's classic HA protocol: the
//! slave learns its master's addresses from the NameServer, copies the log, the topics and the
//! consumer offsets, serves pulls, keeps the log when the master is gone, and refuses sends.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petrel::broker::config::BrokerRole;
use petrel::broker::BrokerConfig;
use petrel_client::raw::{self, SendOutcome};
use petrel_core::broker::schedule::DelayLevels;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};

use common::Running;

const TOPIC: &str = "Replicated";
const QUEUES: i32 = 4;

/// Starts slave 1 of group `name`, serving reads (`slaveReadEnable`), configured further by
/// `tune`.
async fn slave_of(namesrv: &str, name: &str, tune: impl FnOnce(&mut BrokerConfig)) -> Running {
    Running::start(Some(namesrv), |c| {
        c.broker_name = name.into();
        c.role = BrokerRole::Slave;
        c.broker_id = 1;
        c.slave_read_enable = true;
        tune(c);
    })
    .await
}

/// Waits until `slave` has copied the topic from its master (3 s after it starts, then every
/// 10 s): a pull finds the topic.
async fn wait_for_topic(client: &RemotingClient, slave: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pulled = raw::pull(client, slave, "Reader", TOPIC, 0, 0, Duration::ZERO).await.unwrap();
        if pulled.code != response::TOPIC_NOT_EXIST {
            return;
        }
        assert!(Instant::now() < deadline, "the slave never copied the topic");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_copies_its_masters_log_and_keeps_it_when_the_master_is_gone() {
    let (_namesrv, namesrv) = common::namesrv().await;
    let master = Running::start(Some(&namesrv), |c| {
        c.broker_name = "replicated".into();
        c.store.commit_log_file_bytes = 64 << 10;
        c.store.message_bytes_max = 4 << 10;
        c.ha_transfer_batch_bytes = 5_000;
    })
    .await;
    let slave = slave_of(&namesrv, "replicated", |c| {
        c.store.commit_log_file_bytes = 64 << 10;
        c.store.message_bytes_max = 4 << 10;
    })
    .await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &master.addr, TOPIC, QUEUES).await);

    // An empty slave copies from the master's newest file (RocketMQ's rule): the first message
    // reaching the slave says it copies from the start of this one-file log.
    let mut acked: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    match raw::send(&client, &master.addr, TOPIC, 0, 0, 700).await {
        SendOutcome::Acked { queue_offset, .. } => {
            acked.entry(0).or_default().push((queue_offset, 0))
        }
        other => panic!("the first send to the master: {other:?}"),
    }
    wait_for_topic(&client, &slave.addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::drain(&client, &slave.addr, TOPIC, 0).await.is_empty() {
        assert!(Instant::now() < deadline, "the slave never copied the first message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 400 messages of 700 bytes: several commit-log files, records cut by the 5 000-byte
    // frames and blank fillers at the files' ends.
    for id in 1..400u64 {
        let queue = (id % QUEUES as u64) as i32;
        match raw::send(&client, &master.addr, TOPIC, queue, id, 700).await {
            SendOutcome::Acked { queue_offset, .. } => {
                acked.entry(queue).or_default().push((queue_offset, id))
            }
            other => panic!("send {id} to the master: {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for queue in 0..QUEUES {
        let expected = &acked[&queue];
        loop {
            let copied = common::drain(&client, &slave.addr, TOPIC, queue).await;
            if &copied == expected {
                break;
            }
            assert!(
                Instant::now() < deadline && copied.len() <= expected.len(),
                "queue {queue} on the slave: {} of {} messages, or different ones",
                copied.len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The slave copied the master's topic (read above) and copies its consumer offsets too: a
    // consumer that moves to the slave resumes where it committed.
    // A consumer of group Movers pulls from the master (which creates the group) and commits.
    raw::pull(&client, &master.addr, "Movers", TOPIC, 2, 0, Duration::ZERO).await.unwrap();
    assert!(raw::commit_offset(&client, &master.addr, "Movers", TOPIC, 2, 57).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let copied = raw::query_committed_offset(&client, &slave.addr, "Movers", TOPIC, 2).await;
        if copied == Ok(Some(57)) {
            break;
        }
        assert!(Instant::now() < deadline, "the slave never copied the offset: {copied:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A slave stores only its master's log.
    match raw::send(&client, &slave.addr, TOPIC, 0, 9_999, 10).await {
        SendOutcome::Refused { code } => assert_eq!(code, response::SERVICE_NOT_AVAILABLE),
        other => panic!("a send to the slave: {other:?}"),
    }

    // An offset past a queue's end: the master corrects it, the slave leaves it alone.
    let far = raw::pull(&client, &master.addr, "Movers", TOPIC, 1, 10_000, Duration::ZERO).await;
    let far = far.unwrap();
    assert_eq!((far.code, far.next_begin_offset), (response::PULL_OFFSET_MOVED, far.max_offset));
    let far = raw::pull(&client, &slave.addr, "Movers", TOPIC, 1, 10_000, Duration::ZERO).await;
    assert_eq!(far.unwrap().next_begin_offset, 10_000, "a slave does not move offsets");

    // The master goes; the slave still serves every message it copied, and a consumer that
    // took its queues while the master was there finds it gone from the route (refreshed
    // every rebalance_interval) and reads the slave, as RocketMQ's clients do.
    let consumer = petrel_client::PullConsumer::start(petrel_client::PullConsumerConfig {
        namesrv_addrs: vec![namesrv.clone()],
        group: "AfterTheMaster".into(),
        consume_from: petrel_client::ConsumeFrom::First,
        rebalance_interval: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    consumer.assign(&consumer.queues(TOPIC).await.unwrap()).await.unwrap();
    master.stop().await;
    for queue in 0..QUEUES {
        assert_eq!(&common::drain(&client, &slave.addr, TOPIC, queue).await, &acked[&queue]);
    }
    let expected: usize = acked.values().map(Vec::len).sum();
    let mut read = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while read.len() < expected {
        assert!(Instant::now() < deadline, "read {} of {expected} from the slave", read.len());
        // Until the route is refreshed, pulls go to the stopped master and fail.
        let Ok(messages) = consumer.poll(Duration::from_millis(500)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        read.extend(messages.iter().map(|m| (m.queue.queue_id, m.queue_offset)));
    }
    let acked_places: std::collections::BTreeSet<(i32, i64)> =
        acked.iter().flat_map(|(q, m)| m.iter().map(move |(o, _)| (*q, *o))).collect();
    assert_eq!(read, acked_places, "every acknowledged message, read through the slave");
    slave.stop().await;
}

/// Sends one message through `producer`, returning how the broker took it.
async fn send_one(producer: &petrel_client::Producer, id: u64) -> petrel_client::SendResult {
    let message = petrel_client::Message::new(TOPIC, raw::body(id, 200));
    producer.send(&message).await.unwrap()
}

/// A SYNC_MASTER answers SLAVE_NOT_AVAILABLE with no slave, SEND_OK once its slave holds the
/// message, and FLUSH_SLAVE_TIMEOUT when a connected slave stops reporting; what it
/// acknowledged is on the slave when the master is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_master_answers_once_its_slave_holds_the_message() {
    use petrel_client::SendStatus;
    let (_namesrv, namesrv) = common::namesrv().await;
    let master = Running::start(Some(&namesrv), |c| {
        c.broker_name = "synced".into();
        c.role = BrokerRole::SyncMaster;
        c.store.sync_flush_timeout_ms = 1_000;
    })
    .await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &master.addr, TOPIC, QUEUES).await);
    let producer = common::producer(&namesrv);
    let first = send_one(&producer, 0).await;
    assert_eq!(first.status, SendStatus::SlaveNotAvailable, "no slave yet");

    // A slave that reports once and then falls silent: the master waits for it in vain.
    let at = raw::stored_at(&first.offset_msg_id).unwrap();
    let mut silent = tokio::net::TcpStream::connect(&master.ha_addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut silent, &at.to_be_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = send_one(&producer, 1).await;
        if result.status == SendStatus::FlushSlaveTimeout {
            break;
        }
        assert_eq!(result.status, SendStatus::SlaveNotAvailable, "before the report lands");
        assert!(Instant::now() < deadline, "the silent slave was never waited for");
    }
    drop(silent);

    let slave = slave_of(&namesrv, "synced", |_| {}).await;
    wait_for_topic(&client, &slave.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while send_one(&producer, 2).await.status != SendStatus::Ok {
        assert!(Instant::now() < deadline, "the slave never caught up");
    }
    let mut acked = Vec::new();
    for id in 3..203u64 {
        let result = send_one(&producer, id).await;
        assert_eq!(result.status, SendStatus::Ok, "message {id}");
        acked.push((result.queue.queue_id, result.queue_offset));
    }
    master.stop().await;
    // Every message the master acknowledged is on the slave: the slave dispatches it even
    // with its master gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (queue, offset) in acked {
        while !common::drain(&client, &slave.addr, TOPIC, queue)
            .await
            .iter()
            .any(|(o, _)| *o == offset)
        {
            assert!(Instant::now() < deadline, "queue {queue} offset {offset} not on the slave");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    slave.stop().await;
}

/// A slave serves pulls only with `slaveReadEnable`; a master's answers tell a consumer that
/// fell further behind than `accessMessageInMemoryMaxRatio` of memory to read from the slave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_are_steered_as_rocketmq_steers_them() {
    let (_namesrv, namesrv) = common::namesrv().await;
    // 40 % of 10 000 bytes: a read more than 4 000 bytes behind the end lags.
    let master = Running::start(Some(&namesrv), |c| {
        c.broker_name = "steered".into();
        c.slave_read_enable = true;
        c.memory_bytes = 10_000;
    })
    .await;
    let slave = slave_of(&namesrv, "steered", |c| c.slave_read_enable = false).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &master.addr, TOPIC, 1).await);
    for id in 0..40 {
        let sent = raw::send(&client, &master.addr, TOPIC, 0, id, 700).await;
        assert!(matches!(sent, SendOutcome::Acked { .. }), "send {id}: {sent:?}");
    }
    // Dispatched, all of them, before the reads below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::drain(&client, &master.addr, TOPIC, 0).await.len() < 40 {
        assert!(Instant::now() < deadline, "the master never dispatched its 40 messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let oldest = raw::pull(&client, &master.addr, "Steered", TOPIC, 0, 0, Duration::ZERO).await;
    let oldest = oldest.unwrap();
    assert_eq!((oldest.code, oldest.messages.len()), (response::SUCCESS, 32));
    assert_eq!(oldest.suggest_which_broker_id, 1, "8 records (> 4 000 bytes) behind: the slave");
    let newest = raw::pull(&client, &master.addr, "Steered", TOPIC, 0, 39, Duration::ZERO).await;
    let newest = newest.unwrap();
    assert_eq!((newest.code, newest.messages.len()), (response::SUCCESS, 1));
    assert_eq!(newest.suggest_which_broker_id, 0, "keeping up: the master");

    // The slave, with slave reads off, refuses every pull before reading it.
    let refused = raw::pull(&client, &slave.addr, "Steered", TOPIC, 0, 0, Duration::ZERO).await;
    assert_eq!(refused.unwrap().code, response::SYSTEM_BUSY);
    slave.stop().await;
    master.stop().await;
}

/// A push consumer part-way through a backlog when its master stops goes on from the slave:
/// each pull looks up the group's broker in the current route, which then holds the slave only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_goes_on_from_the_slave_when_the_master_stops() {
    use petrel_client::{ConsumeResult, PushConsumer, PushConsumerConfig, ReceivedMessage};
    let (_namesrv, namesrv) = common::namesrv().await;
    let master = Running::start(Some(&namesrv), |c| c.broker_name = "moved".into()).await;
    let slave = slave_of(&namesrv, "moved", |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &master.addr, TOPIC, 1).await);
    const BACKLOG: u64 = 200;
    for id in 0..BACKLOG {
        let sent = raw::send(&client, &master.addr, TOPIC, 0, id, 100).await;
        assert!(matches!(sent, SendOutcome::Acked { .. }), "send {id}: {sent:?}");
    }
    wait_for_topic(&client, &slave.addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::drain(&client, &slave.addr, TOPIC, 0).await.len() < BACKLOG as usize {
        assert!(Instant::now() < deadline, "the slave never copied the backlog");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One worker, 10 ms a message, at most 8 pulled ahead: 2 s for the whole backlog.
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let config = PushConsumerConfig {
        namesrv_addrs: vec![namesrv.clone()],
        group: "Movers".into(),
        subscriptions: [(TOPIC.to_owned(), "*".into())].into_iter().collect(),
        consume_from: petrel_client::ConsumeFrom::First,
        workers: 1,
        queue_messages_max: 8,
        rebalance_interval: Duration::from_millis(300),
        hold: Duration::from_millis(300),
        ..PushConsumerConfig::default()
    };
    let consumed = seen.clone();
    let consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        std::thread::sleep(Duration::from_millis(10));
        consumed.lock().unwrap().insert(raw::body_id(&message.body).unwrap());
        ConsumeResult::Success
    })
    .unwrap();
    while seen.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "the consumer never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    master.stop().await;
    let at_stop = seen.lock().unwrap().len() as u64;
    assert!(at_stop < BACKLOG, "the backlog was consumed before the master stopped");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.lock().unwrap().len() as u64) < BACKLOG {
        let got = seen.lock().unwrap().len();
        assert!(Instant::now() < deadline, "{got} of {BACKLOG} consumed ({at_stop} at the stop)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await;
    slave.stop().await;
}

/// The JSON body of a broker's answer to `code` (a GET_ALL_... request).
async fn table(client: &RemotingClient, broker: &str, code: i32) -> String {
    let request = RemotingCommand::request(code);
    let reply = client.invoke(broker, request, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS);
    String::from_utf8(reply.body_bytes().to_vec()).unwrap()
}

/// A slave copies its master's subscription groups and delay cursors, as it does the topics
/// and offsets (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, GET_ALL_DELAY_OFFSET every 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_copies_its_masters_groups_and_delay_cursors() {
    let (_namesrv, namesrv) = common::namesrv().await;
    let master = Running::start(Some(&namesrv), |c| {
        c.broker_name = "copied".into();
        c.store.delay_levels = DelayLevels::parse("1s 1s").unwrap();
    })
    .await;
    let slave = slave_of(&namesrv, "copied", |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(raw::create_topic(&client, &master.addr, TOPIC, 1).await);
    // A pull creates the group (autoCreateSubscriptionGroup); a delayed message, once due,
    // moves the cursor of delay level 1 from 0 to 1.
    raw::pull(&client, &master.addr, "CopiedGroup", TOPIC, 0, 0, Duration::ZERO).await.unwrap();
    let before = table(&client, &master.addr, request::GET_ALL_DELAY_OFFSET).await;
    let sent = raw::send_delayed(&client, &master.addr, TOPIC, 0, 1, 10, 1).await;
    assert!(matches!(sent, SendOutcome::Acked { .. }), "the delayed send: {sent:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let cursors = loop {
        let cursors = table(&client, &master.addr, request::GET_ALL_DELAY_OFFSET).await;
        let delivered = common::drain(&client, &master.addr, TOPIC, 0).await.len() == 1;
        if delivered && cursors != before {
            break cursors;
        }
        assert!(Instant::now() < deadline, "the delayed message never came due");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let groups = table(&client, &slave.addr, request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG).await;
        let copied = table(&client, &slave.addr, request::GET_ALL_DELAY_OFFSET).await;
        if groups.contains("\"CopiedGroup\"") && copied == cursors {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave has not copied the group or the cursors {cursors}: {copied}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    slave.stop().await;
    master.stop().await;
}
