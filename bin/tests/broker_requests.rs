//! The broker's request handlers, in process over loopback on a real store in a temporary
//! directory: batches, retries and dead letters, administration, offset queries, the consumer
//! group notices, ordered consumers' queue locks, the client config check and the NameServer's
//! metrics and KV file. (Produce,
//! consume, query and delay with third-party clients are in tests/clients; crash safety is in
//! broker_process.rs and the simulator.)
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petrel_client::raw::{self, PulledMessage, SendOutcome};
use petrel_core::broker::batch::{encode_batch, BatchItem};
use petrel_core::broker::schedule::DelayLevels;
use petrel_core::record::property;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader, CreateTopicRequestHeader,
    DeleteTopicRequestHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader,
    SearchOffsetRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader, TimestampResponseHeader, TopicQueueRequestHeader,
    UnregisterClientRequestHeader,
};
use petrel_net::headers::namesrv::{
    GetKvConfigResponseHeader, KvConfigKeyRequestHeader, PutKvConfigRequestHeader,
};
use petrel_net::transport::{ClientConfig, Connection, Handled, RemotingClient, RequestHandler};
use petrel_storage::disk::{FsDisk, SimDisk, SimDiskFaults};

mod common;

use common::Running;

const WAIT: Duration = Duration::from_secs(3);

async fn call(client: &RemotingClient, addr: &str, command: RemotingCommand) -> RemotingCommand {
    client.invoke(addr, command, WAIT).await.unwrap()
}

async fn pull_all(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue: i32,
) -> Vec<PulledMessage> {
    let pulled =
        raw::pull(client, addr, "ReaderGroup", topic, queue, 0, Duration::ZERO).await.unwrap();
    assert!(
        [response::SUCCESS, response::PULL_NOT_FOUND].contains(&pulled.code),
        "pull of {topic} answered {}",
        pulled.code
    );
    pulled.messages
}

fn prop<'a>(message: &'a PulledMessage, name: &str) -> Option<&'a str> {
    property(&message.properties, name.as_bytes()).map(|v| std::str::from_utf8(v).unwrap())
}

#[tokio::test]
async fn a_batch_is_stored_as_separate_messages() {
    let broker = Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let bodies: Vec<Vec<u8>> = (0..3).map(|id| raw::body(id, 40)).collect();
    let props: Vec<String> = (0..3).map(|id| format!("KEYS\u{1}batch-{id}\u{2}")).collect();
    let items: Vec<BatchItem<'_>> = bodies
        .iter()
        .zip(&props)
        .map(|(body, props)| BatchItem { flag: 0, body, properties: props.as_bytes() })
        .collect();
    let header = SendMessageRequestHeader {
        producer_group: "P".into(),
        topic: "Batched".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        batch: Some(true),
        ..SendMessageRequestHeader::default()
    };
    let send = RemotingCommand::request(request::SEND_BATCH_MESSAGE)
        .with_header(&SendMessageRequestHeaderV2::from(header.clone()))
        .with_body(encode_batch(&items));
    let reply = call(&client, &broker.addr, send).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let answer: SendMessageResponseHeader = reply.header().unwrap();
    assert_eq!(answer.msg_id.split(',').count(), 3, "one id per message: {}", answer.msg_id);
    assert_eq!((answer.queue_id, answer.queue_offset), (2, 0), "the first message's offset");
    // The answer comes once the batch is flushed; the consume queue follows a moment later.
    let pulled = wait_for_messages(&client, &broker.addr, "Batched", 2).await;
    let ids: Vec<u64> = pulled.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!(prop(&pulled[1], "KEYS"), Some("batch-1"));
    assert!(prop(&pulled[1], "UNIQ_KEY").is_some(), "the broker gives each message a UNIQ_KEY");

    let mut broken = encode_batch(&items);
    broken.truncate(broken.len() - 3);
    let send = RemotingCommand::request(request::SEND_BATCH_MESSAGE)
        .with_header(&SendMessageRequestHeaderV2::from(header))
        .with_body(broken);
    let reply = call(&client, &broker.addr, send).await;
    assert_eq!(reply.code, response::MESSAGE_ILLEGAL);
    assert!(reply.remark.unwrap().contains("cut short"));
    broker.stop().await;
}

fn send_back(offset: i64, delay_level: i32, max: i32) -> RemotingCommand {
    let header = ConsumerSendMsgBackRequestHeader {
        offset,
        group: "RetryGroup".into(),
        delay_level,
        origin_msg_id: None,
        origin_topic: None,
        unit_mode: None,
        max_reconsume_times: Some(max),
    };
    RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK).with_header(&header)
}

async fn wait_for_messages(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue: i32,
) -> Vec<PulledMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pulled = pull_all(client, addr, topic, queue).await;
        if !pulled.is_empty() || Instant::now() > deadline {
            return pulled;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn failed_messages_retry_after_their_delay_then_go_to_the_dead_letter_topic() {
    let broker = Running::start(None, |c| {
        c.store.delay_levels = DelayLevels::parse("1s 1s 1s 1s 1s").unwrap();
    })
    .await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(matches!(
        raw::send(&client, &broker.addr, "Work", 0, 5, 50).await,
        SendOutcome::Acked { queue_offset: 0, .. }
    ));
    let first = wait_for_messages(&client, &broker.addr, "Work", 0).await.remove(0);
    // A consumer of RetryGroup gives it back: it returns on %RETRY%RetryGroup after a delay.
    let given_back = Instant::now();
    let reply = call(&client, &broker.addr, send_back(first.physical_offset, 0, 1)).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let retried = wait_for_messages(&client, &broker.addr, "%RETRY%RetryGroup", 0).await;
    assert!(given_back.elapsed() >= Duration::from_secs(1), "a retry waits for its delay level");
    let retry = retried.first().expect("the retry arrived");
    assert_eq!(retry.id, 5);
    assert_eq!(retry.reconsume_times, 1);
    assert_eq!(prop(retry, "RETRY_TOPIC"), Some("Work"));
    assert!(prop(retry, "ORIGIN_MESSAGE_ID").is_some());
    // Failing again reaches maxReconsumeTimes=1: straight to the dead-letter topic.
    let reply = call(&client, &broker.addr, send_back(retry.physical_offset, 0, 1)).await;
    assert_eq!(reply.code, response::SUCCESS);
    let dead = wait_for_messages(&client, &broker.addr, "%DLQ%RetryGroup", 0).await;
    assert_eq!(dead.first().map(|m| (m.id, m.reconsume_times)), Some((5, 2)));
    assert_eq!(prop(&dead[0], "RETRY_TOPIC"), Some("Work"), "the first topic is kept");
    // A bad offset is refused with a reason.
    let reply = call(&client, &broker.addr, send_back(1 << 40, 0, 2)).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.unwrap().contains("look message by offset failed"));
    broker.stop().await;
}

fn create_topic(topic: &str, queues: i32, perm: i32) -> RemotingCommand {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: None,
        attributes: None,
        force: None,
    };
    RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header)
}

async fn topic_table(client: &RemotingClient, addr: &str) -> serde_json::Value {
    let reply = call(client, addr, RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG)).await;
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    // fastjson's bare integer keys do not occur in the topic table: plain JSON parses it.
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn topics_and_groups_are_administered() {
    let broker = Running::start(None, |c| c.auto_create_topic = false).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    assert_eq!(
        raw::send(&client, addr, "Missing", 0, 1, 10).await,
        SendOutcome::Refused { code: response::TOPIC_NOT_EXIST },
        "no auto-creation without autoCreateTopicEnable"
    );
    assert_eq!(call(&client, addr, create_topic("Admin", 3, 6)).await.code, response::SUCCESS);
    let table = topic_table(&client, addr).await;
    assert_eq!(table["topicConfigTable"]["Admin"]["writeQueueNums"], 3);
    assert!(table["topicConfigTable"].get("TBW102").is_none());
    assert!(matches!(
        raw::send(&client, addr, "Admin", 2, 1, 10).await,
        SendOutcome::Acked { queue_offset: 0, .. }
    ));
    // Read-only: sends are refused with NO_PERMISSION.
    assert_eq!(call(&client, addr, create_topic("Admin", 3, 4)).await.code, response::SUCCESS);
    assert_eq!(
        raw::send(&client, addr, "Admin", 2, 2, 10).await,
        SendOutcome::Refused { code: response::NO_PERMISSION }
    );
    assert_eq!(
        call(&client, addr, create_topic("no spaces", 1, 6)).await.code,
        response::INVALID_PARAMETER
    );
    assert_eq!(
        call(&client, addr, create_topic("TBW102", 1, 6)).await.code,
        response::INVALID_PARAMETER
    );
    // Values that name nothing are refused, where RocketMQ stores them (decision 0008).
    for (queues, perm, says) in
        [(0, 6, "both 0"), (1, 255, "perm=255"), (-1, 6, "readQueueNums=-1")]
    {
        let reply = call(&client, addr, create_topic("Junk", queues, perm)).await;
        assert_eq!(reply.code, response::INVALID_PARAMETER);
        assert!(reply.remark.as_deref().unwrap_or("").contains(says), "{:?}", reply.remark);
    }
    assert!(topic_table(&client, addr).await["topicConfigTable"].get("Junk").is_none());
    let group = r#"{"groupName":"Committers"}"#;
    let create =
        RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(group);
    assert_eq!(call(&client, addr, create).await.code, response::SUCCESS);
    assert!(raw::commit_offset(&client, addr, "Committers", "Admin", 2, 1).await);
    assert!(!raw::commit_offset(&client, addr, "Committers", "Admin", 3, 1).await, "3 queues");
    assert!(!raw::commit_offset(&client, addr, "Committers", "Admin", 9999, 1).await);
    assert!(!raw::commit_offset(&client, addr, "Committers", "Admin", -1, 1).await);
    let delete = RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER)
        .with_header(&DeleteTopicRequestHeader { topic: "Admin".into() });
    assert_eq!(call(&client, addr, delete).await.code, response::SUCCESS);
    assert!(topic_table(&client, addr).await["topicConfigTable"].get("Admin").is_none());

    // A subscription group that may not consume.
    let group = r#"{"groupName":"Frozen","consumeEnable":false,"retryMaxTimes":3}"#;
    let create =
        RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(group);
    assert_eq!(call(&client, addr, create).await.code, response::SUCCESS);
    assert_eq!(call(&client, addr, create_topic("Open", 1, 6)).await.code, response::SUCCESS);
    let pulled = raw::pull(&client, addr, "Frozen", "Open", 0, 0, Duration::ZERO).await.unwrap();
    assert_eq!(pulled.code, response::NO_PERMISSION);

    let info =
        call(&client, addr, RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO)).await;
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(info["table"]["msgPutTotalTodayNow"], "1");
    assert_eq!(info["table"]["brokerVersionDesc"], "V5_3_3");
    broker.stop().await;
}

async fn offset_of(client: &RemotingClient, addr: &str, command: RemotingCommand) -> i64 {
    let reply = call(client, addr, command).await;
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    reply.header::<OffsetResponseHeader>().unwrap().offset
}

#[tokio::test]
async fn queue_offsets_answer_by_position_and_time() {
    let broker = Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    for id in 0..3 {
        assert!(matches!(
            raw::send(&client, addr, "Offsets", 0, id, 10).await,
            SendOutcome::Acked { .. }
        ));
    }
    let queue = TopicQueueRequestHeader { topic: "Offsets".into(), queue_id: 0 };
    let max = GetMaxOffsetRequestHeader { topic: "Offsets".into(), queue_id: 0, committed: None };
    // Sends are acknowledged before dispatch reaches the queue (ASYNC_FLUSH): wait for it.
    let deadline = Instant::now() + WAIT;
    let request_max = || RemotingCommand::request(request::GET_MAX_OFFSET).with_header(&max);
    while offset_of(&client, addr, request_max()).await < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(offset_of(&client, addr, request_max()).await, 3);
    let request_min = RemotingCommand::request(request::GET_MIN_OFFSET).with_header(&queue);
    assert_eq!(offset_of(&client, addr, request_min).await, 0);
    let search = |timestamp| {
        let header = SearchOffsetRequestHeader {
            topic: "Offsets".into(),
            queue_id: 0,
            timestamp,
            boundary_type: None,
        };
        RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(&header)
    };
    assert_eq!(offset_of(&client, addr, search(before - 1)).await, 0);
    assert_eq!(offset_of(&client, addr, search(i64::MAX)).await, 3);
    let earliest =
        RemotingCommand::request(request::GET_EARLIEST_MSG_STORETIME).with_header(&queue);
    let reply = call(&client, addr, earliest).await;
    assert!(reply.header::<TimestampResponseHeader>().unwrap().timestamp >= before);

    // A new group starts at 0 while the queue holds its first message; an empty queue has no
    // offset to give; a committed offset is returned as committed.
    assert_eq!(raw::query_offset(&client, addr, "NewGroup", "Offsets", 0).await, Ok(Some(0)));
    assert_eq!(raw::query_offset(&client, addr, "NewGroup", "Offsets", 1).await, Ok(None));
    assert!(
        !raw::commit_offset(&client, addr, "NoSuchGroup", "Offsets", 0, 2).await,
        "unknown group"
    );
    raw::pull(&client, addr, "NewGroup", "Offsets", 0, 0, Duration::ZERO).await.unwrap();
    assert!(raw::commit_offset(&client, addr, "NewGroup", "Offsets", 0, 2).await);
    assert_eq!(raw::query_offset(&client, addr, "NewGroup", "Offsets", 0).await, Ok(Some(2)));
    broker.stop().await;
}

/// Records the requests a broker sends to this client.
#[derive(Default)]
struct Notices(Mutex<Vec<String>>);

impl RequestHandler for Notices {
    fn handle(&self, _conn: &Connection, request: RemotingCommand) -> Handled {
        let group = request.header::<ConsumerGroupRequestHeader>().map(|h| h.consumer_group);
        self.0.lock().unwrap().push(format!("{}:{}", request.code, group.unwrap_or_default()));
        Handled::Now(RemotingCommand::response(response::SUCCESS, None))
    }
}

fn heartbeat(client_id: &str) -> RemotingCommand {
    let body = format!(
        r#"{{"clientID":"{client_id}","consumerDataSet":[{{"groupName":"Members","consumeType":"CONSUME_PASSIVELY",
        "messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
        "subscriptionDataSet":[{{"topic":"Shared","subString":"*","subVersion":1}}]}}],"producerDataSet":[]}}"#
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body)
}

async fn consumer_ids(client: &RemotingClient, addr: &str) -> serde_json::Value {
    let header = ConsumerGroupRequestHeader { consumer_group: "Members".into() };
    let list = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP).with_header(&header);
    let reply = call(client, addr, list).await;
    serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn group_members_hear_of_each_other() {
    let broker = Running::start(None, |_| {}).await;
    let addr = broker.addr.as_str();
    let notices_a = Arc::new(Notices::default());
    let a = RemotingClient::new(ClientConfig::default(), Some(notices_a.clone()));
    let b = RemotingClient::new(ClientConfig::default(), None);
    assert_eq!(call(&a, addr, heartbeat("client-a")).await.code, response::SUCCESS);
    assert_eq!(call(&b, addr, heartbeat("client-b")).await.code, response::SUCCESS);
    assert_eq!(
        consumer_ids(&a, addr).await["consumerIdList"],
        serde_json::json!(["client-a", "client-b"])
    );
    // The group's retry topic exists from the first heartbeat.
    assert!(topic_table(&a, addr).await["topicConfigTable"].get("%RETRY%Members").is_some());
    let unregister = UnregisterClientRequestHeader {
        client_id: "client-b".into(),
        producer_group: None,
        consumer_group: Some("Members".into()),
    };
    let request = RemotingCommand::request(request::UNREGISTER_CLIENT).with_header(&unregister);
    assert_eq!(call(&b, addr, request).await.code, response::SUCCESS);
    assert_eq!(consumer_ids(&a, addr).await["consumerIdList"], serde_json::json!(["client-a"]));
    let deadline = Instant::now() + WAIT;
    while notices_a.0.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // a joined, b joined, b left: a heard of each change.
    assert_eq!(*notices_a.0.lock().unwrap(), vec!["40:Members"; 3]);
    broker.stop().await;
}

/// A heartbeat from `client_id` naming consumer groups `{prefix}{n}` for n in `groups`, each
/// subscribing to `Shared` when `subscribing`.
fn heartbeat_of(
    client_id: &str,
    prefix: &str,
    groups: std::ops::Range<usize>,
    subscribing: bool,
) -> RemotingCommand {
    let subscription = if subscribing { r#"{"topic":"Shared","subString":"*"}"# } else { "" };
    let consumers: Vec<String> = groups
        .map(|n| {
            format!(
                r#"{{"groupName":"{prefix}{n}","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionDataSet":[{subscription}]}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"clientID":"{client_id}","consumerDataSet":[{}],"producerDataSet":[]}}"#,
        consumers.join(",")
    );
    RemotingCommand::request(request::HEART_BEAT).with_body(body)
}

/// One unauthenticated heartbeat naming 20 000 groups is refused whole and leaves no group or
/// topic behind; a connection cannot collect more groups over several heartbeats; a group that
/// subscribes to nothing gets no retry topic (issue 22).
#[tokio::test]
async fn heartbeat_floods_are_refused_and_leave_nothing_behind() {
    let broker = Running::start(None, |_| {}).await;
    let addr = broker.addr.as_str();
    let client = RemotingClient::new(ClientConfig::default(), None);
    let topics_before =
        topic_table(&client, addr).await["topicConfigTable"].as_object().unwrap().len();
    let reply = call(&client, addr, heartbeat_of("flood", "Flood", 0..20_000, true)).await;
    assert_eq!(reply.code, response::INVALID_PARAMETER);
    let remark = reply.remark.unwrap_or_default();
    assert!(remark.contains("20000") && remark.contains("at most 256"), "{remark}");
    let topics = topic_table(&client, addr).await;
    assert_eq!(topics["topicConfigTable"].as_object().unwrap().len(), topics_before);
    let groups = RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG);
    let groups = String::from_utf8(call(&client, addr, groups).await.body.to_vec()).unwrap();
    assert!(!groups.contains("Flood"), "no group was created: {groups}");

    // Within the bound per heartbeat, but over it per connection.
    assert_eq!(
        call(&client, addr, heartbeat_of("many", "A", 0..200, false)).await.code,
        response::SUCCESS
    );
    let reply = call(&client, addr, heartbeat_of("many", "B", 0..200, false)).await;
    assert_eq!(reply.code, response::INVALID_PARAMETER);
    assert!(reply.remark.unwrap_or_default().contains("belongs to 200 groups"));
    // The same groups again are fine: a client repeats its heartbeat every 30 s.
    assert_eq!(
        call(&client, addr, heartbeat_of("many", "A", 0..200, false)).await.code,
        response::SUCCESS
    );

    let table = topic_table(&client, addr).await;
    assert!(table["topicConfigTable"].get("%RETRY%A0").is_none(), "A0 subscribes to nothing");
    let other = RemotingClient::new(ClientConfig::default(), None);
    assert_eq!(
        call(&other, addr, heartbeat_of("one", "Sub", 0..1, true)).await.code,
        response::SUCCESS
    );
    let table = topic_table(&client, addr).await;
    assert!(table["topicConfigTable"].get("%RETRY%Sub0").is_some(), "Sub0 subscribes");
    broker.stop().await;
}

/// GET_BROKER_EPOCH_CACHE is for brokers in controller mode; another refuses it, saying so.
#[tokio::test]
async fn the_epoch_cache_is_refused_outside_controller_mode() {
    let broker = common::Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let asked = RemotingCommand::request(request::GET_BROKER_EPOCH_CACHE);
    let reply = call(&client, &broker.addr, asked).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.unwrap().contains("controllerMode"));
    broker.stop().await;
}

/// LOCK_BATCH_MQ or UNLOCK_BATCH_MQ from `client` for queues `ids` of topic "Ordered", as
/// RocketMQ's clients write the body; the answer and the queue ids it says are locked.
async fn queue_locks(
    caller: &RemotingClient,
    addr: &str,
    code: i32,
    client: &str,
    ids: &[i32],
) -> (i32, Vec<i64>) {
    let queues: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"brokerName":"broker-a","queueId":{id},"topic":"Ordered"}}"#))
        .collect();
    let body = format!(
        r#"{{"clientId":"{client}","consumerGroup":"OrderedReaders","mqSet":[{}],"onlyThisBroker":false}}"#,
        queues.join(",")
    );
    let reply = call(caller, addr, RemotingCommand::request(code).with_body(body)).await;
    let locked: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let ids = locked["lockOKMQSet"].as_array().map_or(Vec::new(), |queues| {
        queues.iter().map(|q| q["queueId"].as_i64().unwrap()).collect()
    });
    (reply.code, ids)
}

/// An ordered consumer's queue locks: a queue is held by one client until that client unlocks
/// it; a lock renewed is kept; a malformed body is refused with the reason.
#[tokio::test]
async fn a_queue_lock_is_held_by_one_client_until_it_unlocks() {
    let broker = Running::start(None, |_| {}).await;
    let addr = broker.addr.as_str();
    let caller = RemotingClient::new(ClientConfig::default(), None);
    let (lock, unlock) = (request::LOCK_BATCH_MQ, request::UNLOCK_BATCH_MQ);
    assert_eq!(
        queue_locks(&caller, addr, lock, "a@1", &[0, 1]).await,
        (response::SUCCESS, vec![0, 1])
    );
    assert_eq!(
        queue_locks(&caller, addr, lock, "b@2", &[1, 2]).await,
        (response::SUCCESS, vec![2])
    );
    assert_eq!(queue_locks(&caller, addr, lock, "a@1", &[0, 1]).await.1, [0, 1], "renewed");
    assert_eq!(queue_locks(&caller, addr, unlock, "b@2", &[1]).await.0, response::SUCCESS);
    assert_eq!(
        queue_locks(&caller, addr, lock, "b@2", &[1]).await.1,
        Vec::<i64>::new(),
        "a's still"
    );
    assert_eq!(queue_locks(&caller, addr, unlock, "a@1", &[1]).await.0, response::SUCCESS);
    assert_eq!(queue_locks(&caller, addr, lock, "b@2", &[1]).await.1, [1]);
    let bad = RemotingCommand::request(lock).with_body("{not json");
    let reply = call(&caller, addr, bad).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.unwrap().contains("LockBatchRequestBody"));
}

/// CHECK_CLIENT_CONFIG as a Java consumer sends it before it starts: a TAG subscription is
/// fine; an SQL92 one is refused as RocketMQ refuses it with `enablePropertyFilter=false`; a
/// malformed body is refused with the reason.
#[tokio::test]
async fn client_configs_are_checked_as_rocketmq_checks_them() {
    let broker = Running::start(None, |_| {}).await;
    let caller = RemotingClient::new(ClientConfig::default(), None);
    let check = |kind: &str| {
        let body = format!(
            r#"{{"clientId":"10.0.0.1@1","group":"Checked","subscriptionData":{{"classFilterMode":false,"codeSet":[],"expressionType":"{kind}","subString":"a > 1","subVersion":1,"tagsSet":[],"topic":"T"}}}}"#
        );
        RemotingCommand::request(request::CHECK_CLIENT_CONFIG).with_body(body)
    };
    let reply = call(&caller, &broker.addr, check("TAG")).await;
    assert_eq!(reply.code, response::SUCCESS);
    let reply = call(&caller, &broker.addr, check("SQL92")).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    let remark = reply.remark.unwrap();
    assert!(remark.starts_with("The broker does not support consumer to filter message by SQL92"));
    let bad = RemotingCommand::request(request::CHECK_CLIENT_CONFIG).with_body("{\"group\":");
    let reply = call(&caller, &broker.addr, bad).await;
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.unwrap().contains("CheckClientRequestBody"));
    broker.stop().await;
}

/// `request` with the header `fields`, as mqadmin's requests carry them.
fn admin_request(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut command = RemotingCommand::request(code);
    for (key, value) in fields {
        command.ext_fields.insert(key, value);
    }
    command
}

fn text(reply: &RemotingCommand) -> String {
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn admin_codes_answer_with_rocketmq_bodies() {
    let broker = Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    assert!(raw::create_topic(&client, addr, "Stats", 2).await);
    for id in 0..3 {
        assert!(matches!(
            raw::send(&client, addr, "Stats", 0, id, 10).await,
            SendOutcome::Acked { .. }
        ));
    }
    let stats = admin_request(request::GET_TOPIC_STATS_INFO, &[("topic", "Stats")]);
    let deadline = Instant::now() + WAIT;
    let body = loop {
        // Dispatch follows the send by a moment.
        let body = text(&call(&client, addr, stats.clone()).await);
        if body.contains(r#""maxOffset":3"#) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // fastjson's form: MessageQueue objects as keys, fields sorted.
    let first = r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"Stats"}:{"lastUpdateTimestamp":"#;
    assert!(body.starts_with(first), "{body}");
    let empty = r#"{"brokerName":"broker-a","queueId":1,"topic":"Stats"}:{"lastUpdateTimestamp":0,"maxOffset":0,"minOffset":0}}}"#;
    assert!(body.ends_with(empty), "{body}");
    let table = petrel_net::bodies::topic_stats_from_json(body.as_bytes()).unwrap();
    let newest = table.offset_table[0].1.last_update_timestamp;
    assert!(newest > 0 && table.offset_table[0].1.max_offset == 3);

    let missing =
        call(&client, addr, admin_request(request::GET_TOPIC_STATS_INFO, &[("topic", "Nope")]))
            .await;
    assert_eq!(
        (missing.code, missing.remark.as_deref()),
        (response::TOPIC_NOT_EXIST, Some("topic[Nope] not exist"))
    );
    let config = call(
        &client,
        addr,
        admin_request(request::GET_TOPIC_CONFIG, &[("topic", "Stats"), ("lo", "true")]),
    )
    .await;
    let config: serde_json::Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(
        (config["topicName"].as_str(), config["readQueueNums"].as_i64()),
        (Some("Stats"), Some(2))
    );
    let missing =
        call(&client, addr, admin_request(request::GET_TOPIC_CONFIG, &[("topic", "Nope")])).await;
    assert_eq!(missing.code, response::TOPIC_NOT_EXIST);
    // The names RocketMQ counts as system topics, which a dashboard marks as such.
    let ask = RemotingCommand::request(request::GET_SYSTEM_TOPIC_LIST_FROM_BROKER);
    let system: serde_json::Value =
        serde_json::from_slice(&call(&client, addr, ask).await.body).expect("a TopicList body");
    let names: Vec<&str> =
        system["topicList"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    for name in ["TBW102", "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "DefaultCluster"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(names.contains(&"broker-a") && names.contains(&"rmq_sys_wheel_timer"), "{names:?}");
    assert!(!names.contains(&"Stats"), "a user's topic is no system topic: {names:?}");

    // A topic whose write queues were cut below its read queues lists every read queue.
    let shrunk = CreateTopicRequestHeader {
        topic: "Shrunk".into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 3,
        write_queue_nums: 1,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: None,
        attributes: None,
        force: None,
    };
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&shrunk);
    assert_eq!(call(&client, addr, create).await.code, response::SUCCESS);
    let shrunk = admin_request(request::GET_TOPIC_STATS_INFO, &[("topic", "Shrunk")]);
    let shrunk = call(&client, addr, shrunk).await;
    let queues = petrel_net::bodies::topic_stats_from_json(&shrunk.body).unwrap().offset_table;
    assert_eq!(queues.len(), 3);

    // A group that committed offsets, and its progress.
    let group = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(r#"{"groupName":"StatsGroup"}"#);
    assert_eq!(call(&client, addr, group).await.code, response::SUCCESS);
    assert!(raw::commit_offset(&client, addr, "StatsGroup", "Stats", 0, 2).await);
    let consume = admin_request(request::GET_CONSUME_STATS, &[("consumerGroup", "StatsGroup")]);
    let body = text(&call(&client, addr, consume.clone()).await);
    let stats = petrel_net::bodies::consume_stats_from_json(body.as_bytes()).unwrap();
    let second = stats.offset_table[0].1.last_timestamp;
    assert!(second > 0 && second <= newest, "the store time of the message before offset 2");
    assert_eq!(
        body,
        format!(
            "{{\"consumeTps\":0.0,\"offsetTable\":{{{{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"Stats\"}}:\
             {{\"brokerOffset\":3,\"consumerOffset\":2,\"lastTimestamp\":{second},\"pullOffset\":2}},\
             {{\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"Stats\"}}:\
             {{\"brokerOffset\":0,\"consumerOffset\":0,\"lastTimestamp\":0,\"pullOffset\":0}}}}}}"
        )
    );
    // RocketMQ 5.3's topicList: each topic followed by `;`.
    let listed = admin_request(
        request::GET_CONSUME_STATS,
        &[("consumerGroup", "StatsGroup"), ("topicList", "Stats;")],
    );
    assert_eq!(text(&call(&client, addr, listed).await), body);
    let unknown = admin_request(request::GET_CONSUME_STATS, &[("consumerGroup", "Nobody")]);
    assert_eq!(text(&call(&client, addr, unknown).await), r#"{"consumeTps":0.0,"offsetTable":{}}"#);
    let who = admin_request(request::QUERY_TOPIC_CONSUME_BY_WHO, &[("topic", "Stats")]);
    assert_eq!(text(&call(&client, addr, who).await), r#"{"groupList":["StatsGroup"]}"#);

    // Connections: none for a group nobody heartbeats in, then a member's.
    let offline =
        admin_request(request::GET_CONSUMER_CONNECTION_LIST, &[("consumerGroup", "StatsGroup")]);
    let offline = call(&client, addr, offline).await;
    assert_eq!(offline.code, response::CONSUMER_NOT_ONLINE);
    assert_eq!(offline.remark.as_deref(), Some("the consumer group[StatsGroup] not online"));
    assert_eq!(call(&client, addr, heartbeat("member-1")).await.code, response::SUCCESS);
    let online =
        admin_request(request::GET_CONSUMER_CONNECTION_LIST, &[("consumerGroup", "Members")]);
    let online: serde_json::Value =
        serde_json::from_slice(&call(&client, addr, online).await.body).unwrap();
    let member = &online["connectionSet"][0];
    assert_eq!(member["clientId"], "member-1");
    assert!(member["clientAddr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(online["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(online["subscriptionTable"]["Shared"]["subString"], "*");
    let producers =
        admin_request(request::GET_PRODUCER_CONNECTION_LIST, &[("producerGroup", "NoSuch")]);
    let producers = call(&client, addr, producers).await;
    assert_eq!(producers.code, response::SYSTEM_ERROR);
    assert_eq!(producers.remark.as_deref(), Some("the producer group[NoSuch] not exist"));

    // CLONE_GROUP_OFFSET: another group takes its offsets (every topic, none named).
    let clone = admin_request(
        request::CLONE_GROUP_OFFSET,
        &[("srcGroup", "StatsGroup"), ("destGroup", "StatsClone"), ("offline", "false")],
    );
    assert_eq!(call(&client, addr, clone).await.code, response::SUCCESS);
    let cloned =
        raw::query_committed_offset(&client, addr, "StatsClone", "Stats", 0).await.unwrap();
    assert_eq!(cloned, Some(2), "the clone's offset of queue 0");

    // Deleting the group with its offsets.
    let delete = admin_request(
        request::DELETE_SUBSCRIPTIONGROUP,
        &[("groupName", "StatsGroup"), ("cleanOffset", "true")],
    );
    assert_eq!(call(&client, addr, delete).await.code, response::SUCCESS);
    assert_eq!(text(&call(&client, addr, consume).await), r#"{"consumeTps":0.0,"offsetTable":{}}"#);

    // The configuration, sorted, with the version in the header.
    let config = call(&client, addr, RemotingCommand::request(request::GET_BROKER_CONFIG)).await;
    let version: serde_json::Value =
        serde_json::from_str(config.ext_fields.get("version").unwrap()).unwrap();
    assert!(version["timestamp"].as_i64().unwrap() > 0);
    let lines: Vec<&str> = std::str::from_utf8(&config.body).unwrap().lines().collect();
    let keys: Vec<&str> = lines.iter().map(|l| l.split('=').next().unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted by key: {keys:?}");
    assert!(lines.contains(&"brokerName=broker-a") && lines.contains(&"flushDiskType=ASYNC_FLUSH"));
    broker.stop().await;
}

/// QUERY_CONSUME_QUEUE in RocketMQ's form: units from an index with the queue's bounds, a
/// group's subscription and filter, and the two ways of not finding the queue or the index.
#[tokio::test]
async fn consume_queue_units_are_answered_as_rocketmq_answers_them() {
    let broker = Running::start(None, |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    let mut stored_at = Vec::new();
    for topic in ["Cq", "Shared"] {
        assert!(raw::create_topic(&client, addr, topic, 1).await);
        for id in 0..3 {
            match raw::send(&client, addr, topic, 0, id, 10).await {
                SendOutcome::Acked { stored_at: at, .. } => stored_at.extend(at),
                other => panic!("send {id} to {topic}: {other:?}"),
            }
        }
        broker.wait_dispatched(topic, 3).await;
    }
    let query = |topic: &str, queue: &str, index: &str, group: Option<&str>| {
        let mut fields = vec![("topic", topic), ("queueId", queue), ("index", index)];
        fields.extend([("count", "5")].into_iter().chain(group.map(|g| ("consumerGroup", g))));
        admin_request(request::QUERY_CONSUME_QUEUE, &fields)
    };
    let units = text(&call(&client, addr, query("Cq", "0", "1", None)).await);
    let unit = |i: usize| {
        let size = stored_at[i + 1] - stored_at[i];
        format!(
            r#"{{"eval":false,"physicOffset":{},"physicSize":{size},"tagsCode":0}}"#,
            stored_at[i]
        )
    };
    let expected =
        format!(r#"{{"maxQueueIndex":3,"minQueueIndex":0,"queueData":[{},{}]}}"#, unit(1), unit(2));
    assert_eq!(units, expected);

    let past_end = call(&client, addr, query("Cq", "0", "3", None)).await;
    assert_eq!(past_end.code, response::SUCCESS);
    assert!(past_end.body.is_empty());
    assert_eq!(past_end.remark.as_deref(), Some("Index 3 of 0@Cq is not exist!"));
    let no_queue = call(&client, addr, query("Cq", "7", "0", None)).await;
    assert_eq!(
        (no_queue.code, no_queue.remark.as_deref()),
        (response::SYSTEM_ERROR, Some("7@Cq is not exist!"))
    );

    // A group: "not online" until a member subscribes the topic, then its subscription.
    let offline: serde_json::Value = serde_json::from_slice(
        &call(&client, addr, query("Shared", "0", "0", Some("Members"))).await.body,
    )
    .unwrap();
    assert_eq!(offline["filterData"], "Members@Shared is not online!");
    assert!(offline.get("subscriptionData").is_none());
    assert_eq!(call(&client, addr, heartbeat("member-1")).await.code, response::SUCCESS);
    let online: serde_json::Value = serde_json::from_slice(
        &call(&client, addr, query("Shared", "0", "0", Some("Members"))).await.body,
    )
    .unwrap();
    assert_eq!(online["filterData"], "null", "a tag subscription has no filter data");
    assert_eq!(online["subscriptionData"]["subString"], "*");
    assert_eq!(online["queueData"].as_array().unwrap().len(), 3);
    broker.stop().await;
}

/// One HTTP exchange with the metrics endpoint: the status line and the body.
async fn http(addr: std::net::SocketAddr, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server that closes on a request it refuses may reset the connection under a write
    // or a read: what arrived before is the answer.
    let _ = stream.write_all(request).await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

/// The value of the sample of `text` whose name and labels start with `prefix` and contain
/// every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .unwrap_or_else(|| panic!("no {name} with {labels:?} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_namesrv_counts_its_brokers_topics_and_connections_in_prometheus_format() {
    let config = petrel::namesrv::NamesrvConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        metrics: petrel::metrics::MetricsConfig { prom: true, host: String::new(), port: 0 },
        ..petrel::namesrv::NamesrvConfig::default()
    };
    let namesrv = petrel::namesrv::start(config, Arc::new(FsDisk)).await.unwrap();
    let metrics = namesrv.metrics_addr.expect("metrics are served");
    let ns = namesrv.local_addr.to_string();
    let broker = Running::start(Some(&ns), |c| c.broker_name = "broker-m".into()).await;
    // Started, the broker is routed: registered with its topics.
    let (status, text) = http(metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let node = format!(r#"node_id="{ns}""#);
    let cluster = r#"cluster="DefaultCluster""#;
    assert_eq!(sample(&text, "rocketmq_namesrv_broker_groups", &[&node, cluster]), 1.0);
    assert_eq!(sample(&text, "rocketmq_namesrv_brokers", &[&node, cluster]), 1.0);
    // The broker's own topic and the system topics it registers.
    assert!(sample(&text, "rocketmq_topic_number", &[&node]) >= 2.0, "{text}");
    assert!(sample(&text, "rocketmq_connections", &[&node]) >= 1.0, "the broker's: {text}");
    assert!(text.contains("# TYPE rocketmq_namesrv_brokers gauge\n"), "{text}");
    broker.stop().await;
    namesrv.shutdown().await;
}

/// A NameServer keeping its KV config at `/ns/kvConfig.json` of `disk`.
async fn namesrv_on(disk: &SimDisk) -> (petrel::namesrv::NamesrvHandle, String) {
    let config = petrel::namesrv::NamesrvConfig {
        listen_port: 0,
        bind_address: "127.0.0.1".into(),
        kv_config_path: Some("/ns/kvConfig.json".into()),
        ..petrel::namesrv::NamesrvConfig::default()
    };
    let namesrv = petrel::namesrv::start(config, Arc::new(disk.clone())).await.unwrap();
    let addr = namesrv.local_addr.to_string();
    (namesrv, addr)
}

fn kv_request(code: i32, key: &str, value: Option<&str>) -> RemotingCommand {
    let (namespace, key) = ("ORDER_TOPIC_CONFIG".to_owned(), key.to_owned());
    let command = RemotingCommand::request(code);
    match value {
        Some(value) => command.with_header(&PutKvConfigRequestHeader {
            namespace,
            key,
            value: value.to_owned(),
        }),
        None => command.with_header(&KvConfigKeyRequestHeader { namespace, key }),
    }
}

async fn kv_value(client: &RemotingClient, addr: &str, key: &str) -> Option<String> {
    let reply = call(client, addr, kv_request(request::GET_KV_CONFIG, key, None)).await;
    reply.header::<GetKvConfigResponseHeader>().unwrap().value
}

#[tokio::test]
async fn a_kv_change_the_namesrv_cannot_write_is_refused_and_changes_nothing() {
    let disk = SimDisk::new(7, 1 << 24, SimDiskFaults::default());
    let (namesrv, addr) = namesrv_on(&disk).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    let put = |value| kv_request(request::PUT_KV_CONFIG, "TopicA", Some(value));
    assert_eq!(call(&client, &addr, put("broker-a:4")).await.code, response::SUCCESS);

    // A full disk: the change is refused with the reason, and the table keeps the value.
    disk.set_faults(SimDiskFaults { enospc_ratio: 1.0, ..SimDiskFaults::default() });
    let refused = call(&client, &addr, put("broker-a:8")).await;
    assert_eq!(refused.code, response::SYSTEM_ERROR);
    let remark = refused.remark.unwrap_or_default();
    assert!(remark.starts_with("cannot write the KV config to /ns/kvConfig.json: "), "{remark}");
    assert!(remark.ends_with("; nothing was changed"), "{remark}");
    let delete = kv_request(request::DELETE_KV_CONFIG, "TopicA", None);
    assert_eq!(call(&client, &addr, delete).await.code, response::SYSTEM_ERROR);
    assert_eq!(kv_value(&client, &addr, "TopicA").await.as_deref(), Some("broker-a:4"));

    // What was answered SUCCESS is on disk: it outlives a power loss and a restart.
    disk.set_faults(SimDiskFaults::default());
    namesrv.shutdown().await;
    disk.crash();
    let (namesrv, addr) = namesrv_on(&disk).await;
    assert_eq!(kv_value(&client, &addr, "TopicA").await.as_deref(), Some("broker-a:4"));
    namesrv.shutdown().await;
}

#[tokio::test]
async fn metrics_count_traffic_lag_and_latency_in_prometheus_format() {
    let broker = Running::start(None, |c| {
        c.metrics.prom = true;
        c.metrics.port = 0;
    })
    .await;
    let metrics = broker.metrics_addr.expect("metrics are served");
    let client = RemotingClient::new(ClientConfig::default(), None);
    let addr = broker.addr.as_str();
    assert!(raw::create_topic(&client, addr, "Metered", 1).await);
    for id in 0..3 {
        assert!(matches!(
            raw::send(&client, addr, "Metered", 0, id, 100).await,
            SendOutcome::Acked { .. }
        ));
    }
    let group = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(r#"{"groupName":"Meters"}"#);
    assert_eq!(call(&client, addr, group).await.code, response::SUCCESS);
    let deadline = Instant::now() + WAIT;
    let mut pulled = 0;
    while pulled < 3 && Instant::now() < deadline {
        let got =
            raw::pull(&client, addr, "Meters", "Metered", 0, pulled, Duration::ZERO).await.unwrap();
        pulled += got.messages.len() as i64;
    }
    assert_eq!(pulled, 3);
    assert!(raw::commit_offset(&client, addr, "Meters", "Metered", 0, 2).await);

    let (status, text) = http(metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let topic = r#"topic="Metered""#;
    assert_eq!(sample(&text, "rocketmq_messages_in_total", &[topic, r#"node_id="broker-a""#]), 3.0);
    let bodies = sample(&text, "rocketmq_throughput_in_total", &[topic]);
    assert!(bodies >= 300.0, "three bodies of at least 100 bytes: {bodies}");
    assert_eq!(
        sample(&text, "rocketmq_messages_out_total", &[topic, r#"consumer_group="Meters""#]),
        3.0
    );
    let lag = [topic, r#"consumer_group="Meters""#, r#"queue_id="0""#];
    assert_eq!(sample(&text, "rocketmq_consumer_lag_messages", &lag), 1.0);
    assert_eq!(
        sample(&text, "rocketmq_rpc_latency_count", &[r#"request_code="send_message""#]),
        3.0
    );
    let slowest = sample(&text, "rocketmq_rpc_latency_bucket", &[r#"le="+Inf""#]);
    assert_eq!(slowest, 3.0);
    assert!(sample(&text, "rocketmq_storage_size", &[]) > 300.0);
    assert!(text.contains("# TYPE rocketmq_storage_flush_latency histogram\n"));

    assert_eq!(http(metrics, b"GET / HTTP/1.1\r\n\r\n").await.0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n").await.0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(http(metrics, b"\x00\x01garbage\r\n\r\n").await.0, "HTTP/1.1 400 Bad Request");
    let flood = vec![b'A'; 64 * 1024];
    assert_eq!(http(metrics, &flood).await.0, "", "an endless head is closed unanswered");
    broker.stop().await;
}
