//! `petrel admin` against `petrel standalone`, both real processes on loopback: each command's
//! output checked as an operator reads it, with the Rust SDK's producer and push consumer
//! making the groups and messages the commands report on.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::Standalone;
use petrel_client::{
    ConsumeFrom, ConsumeResult, Message, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, ReceivedMessage,
};

const TOPIC: &str = "AdminTopic";

/// Runs `petrel admin args..` with `-n namesrv` (unless `namesrv` is empty) and no
/// NAMESRV_ADDR in its environment.
fn admin(namesrv: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
    command.arg("admin").args(args).env_remove("NAMESRV_ADDR").env("RUST_LOG", "warn");
    if !namesrv.is_empty() {
        command.args(["-n", namesrv]);
    }
    command.output().unwrap()
}

/// `admin`, which must succeed; its standard output.
fn ok(namesrv: &str, args: &[&str]) -> String {
    let out = admin(namesrv, args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "petrel admin {args:?} failed: {stderr}\n{stdout}");
    stdout.into_owned()
}

/// `admin` again until its output satisfies `done`, for up to 20 s: brokers register, commit
/// offsets and heartbeat on their own periods.
fn eventually(namesrv: &str, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let out = admin(namesrv, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && done(&text) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "petrel admin {args:?} never gave what was expected; last:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The whitespace-separated columns of the line of `text` whose first column is `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line starts with {first} in:\n{text}"))
}

/// The number after `label` in `text`.
fn figure(text: &str, label: &str) -> i64 {
    let line = text.lines().find_map(|l| l.strip_prefix(label)).unwrap();
    line.trim().parse().unwrap()
}

async fn send(producer: &Producer, count: usize) {
    for i in 0..count {
        let message =
            Message::new(TOPIC, format!("admin-{i}").into_bytes()).with_keys([format!("k{i}")]);
        producer.send(&message).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_command_reports_what_the_broker_holds() {
    let data = tempfile::tempdir().unwrap();
    let standalone = Standalone::start(data.path(), None);
    let (ns, broker) = (standalone.namesrv.clone(), standalone.broker.clone());
    let ns = ns.as_str();

    // The broker registers with the NameServer a moment after both are up.
    eventually(ns, &["clusterList"], |text| text.contains("broker-a"));

    // Topics.
    let created =
        ok(ns, &["updateTopic", "-c", "DefaultCluster", "-t", TOPIC, "-r", "4", "-w", "4"]);
    assert_eq!(
        created,
        format!(
            "create topic to {broker} success.\nTopicConfig [topicName={TOPIC}, readQueueNums=4, \
             writeQueueNums=4, perm=RW-, topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false, \
             attributes={{}}]\n"
        )
    );
    eventually(ns, &["topicList"], |text| text.lines().any(|t| t == TOPIC));
    let ordered =
        ok(ns, &["updateTopic", "-c", "DefaultCluster", "-t", "AdminOrdered", "-o", "true"]);
    assert!(
        ordered.contains("\nset cluster orderConf. isOrder=true, orderConf=[broker-a:8]\n"),
        "{ordered}"
    );
    assert!(ordered.ends_with("order=true, attributes={}]\n"), "{ordered}");
    let route: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicRoute", "-t", TOPIC])).unwrap();
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 4);
    assert_eq!(route["brokerDatas"][0]["brokerAddrs"]["0"], broker.as_str());

    // A producer sends 10 messages; the topic's status counts them.
    let producer = Producer::start(ProducerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "AdminProducer".into(),
        // Its routes learnt as it starts, it heartbeats the broker at once.
        topics: vec![TOPIC.to_owned()],
        ..ProducerConfig::default()
    })
    .unwrap();
    send(&producer, 10).await;
    // A send is answered before its message reaches the consume queue.
    let status = eventually(ns, &["topicStatus", "-t", TOPIC], |text| {
        let maxes = text.lines().filter(|l| l.starts_with("broker-a"));
        maxes.map(|l| l.split_whitespace().nth(3).unwrap().parse::<i64>().unwrap()).sum::<i64>()
            == 10
    });
    // mqadmin's "%-32s  %-4s  %-20s  %-20s    %s%n".
    let header = format!(
        "{:<32}  {:<4}  {:<20}  {:<20}    {}",
        "#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"
    );
    assert_eq!(status.lines().next(), Some(header.as_str()));
    let queues: Vec<Vec<&str>> = status
        .lines()
        .filter(|l| l.starts_with("broker-a"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(queues.len(), 4, "{status}");
    let stored: i64 = queues.iter().map(|q| q[3].parse::<i64>().unwrap()).sum();
    assert_eq!(stored, 10, "{status}");
    for queue in queues.iter().filter(|q| q[3] != "0") {
        assert!(
            queue.len() == 6 && queue[4].starts_with("20"),
            "a queue with messages shows when: {queue:?}"
        );
    }
    assert!(status.ends_with("\nTopic Put TPS: 0.0\n"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicStatus", "-t", TOPIC, "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    let connections =
        eventually(ns, &["producerConnection", "-g", "AdminProducer", "-t", TOPIC], |t| {
            !t.is_empty()
        });
    let producer_row: Vec<&str> = connections.split_whitespace().collect();
    assert_eq!(producer_row[0], "0001");
    assert!(producer_row[2].starts_with("127.0.0.1:"), "{connections}");
    assert_eq!(producer_row[3], "RUST");

    // A push consumer reads them; its group shows up, then its progress reaches the end.
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            namesrv_addrs: vec![ns.to_owned()],
            group: "AdminGroup".into(),
            subscriptions: [(TOPIC.to_owned(), "*".into())].into_iter().collect(),
            consume_from: ConsumeFrom::First,
            commit_interval: Duration::from_millis(200),
            ..PushConsumerConfig::default()
        },
        |_: &ReceivedMessage| ConsumeResult::Success,
    )
    .unwrap();
    let members =
        eventually(ns, &["consumerConnection", "-g", "AdminGroup"], |t| t.contains("RUST"));
    assert_eq!(row(&members, "#ClientId"), ["#ClientId", "#ClientAddr", "#Language", "#Version"]);
    assert_eq!(row(&members, TOPIC), [TOPIC, "*"]);
    assert!(
        members.contains("\nConsumeType: CONSUME_PASSIVELY\nMessageModel: CLUSTERING\n"),
        "{members}"
    );
    // Its queues are listed once it committed offsets for them.
    let progress = eventually(ns, &["consumerProgress", "-g", "AdminGroup"], |t| {
        t.lines().filter(|l| l.starts_with(TOPIC)).count() == 4
            && t.contains("Consume Diff Total: 0\n")
    });
    let consumed: i64 = progress
        .lines()
        .filter(|l| l.starts_with(TOPIC))
        .map(|l| l.split_whitespace().nth(4).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(consumed, 10, "{progress}");
    // Another group takes its offsets.
    ok(ns, &["updateSubGroup", "-b", &broker, "-g", "AdminClone"]);
    let cloned = ok(ns, &["cloneGroupOffset", "-s", "AdminGroup", "-d", "AdminClone", "-t", TOPIC]);
    let said = "clone group offset success. srcGroup[AdminGroup], destGroup=[AdminClone], topic[AdminTopic]";
    assert_eq!(cloned, said);
    let clone = ok(ns, &["consumerProgress", "-g", "AdminClone", "-t", TOPIC]);
    let offsets = |text: &str| -> Vec<String> {
        let rows = text.lines().filter(|l| l.starts_with(TOPIC));
        rows.map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" ")).collect()
    };
    assert_eq!(offsets(&clone), offsets(&progress), "{clone}");
    let by_topic = eventually(ns, &["topicList", "-c"], |t| t.contains("AdminGroup"));
    let group_row = ["DefaultCluster", TOPIC, "AdminGroup"];
    assert!(by_topic.lines().any(|l| l.split_whitespace().eq(group_row)), "{by_topic}");
    let summary = ok(ns, &["consumerProgress"]);
    assert_eq!(row(&summary, "AdminGroup")[1], "1", "one live member: {summary}");

    // Messages, by key, unique key, offset id and queue offset, with where the group is.
    let keyed = ok(ns, &["queryMsgByKey", "-t", TOPIC, "-k", "k3"]);
    assert_eq!(keyed.lines().count(), 2, "one message has key k3: {keyed}");
    let found: Vec<&str> = keyed.lines().nth(1).unwrap().split_whitespace().collect();
    let (id, queue_id, offset) = (found[0], found[1], found[2]);
    let shown = ok(ns, &["queryMsgByUniqueKey", "-t", TOPIC, "-i", id]);
    assert_eq!(row(&shown, "Keys:"), ["Keys:", "[k3]"]);
    assert_eq!(row(&shown, "Topic:"), ["Topic:", TOPIC]);
    let consumed =
        "MessageTrack [consumerGroup=AdminGroup, trackType=CONSUMED, exceptionDesc=null]";
    assert!(shown.contains(&format!("\n{consumed}\n")), "{shown}");
    let cloned =
        "MessageTrack [consumerGroup=AdminClone, trackType=NOT_ONLINE, exceptionDesc=null]";
    assert!(
        shown.contains(&format!("\n{cloned}\n")),
        "a group with offsets and no member: {shown}"
    );
    let path = row(&shown, "Message")[3];
    assert_eq!(std::fs::read(path).unwrap(), b"admin-3");
    let offset_id = row(&shown, "OffsetID:")[1];
    assert_eq!(ok(ns, &["queryMsgById", "-i", offset_id]), shown);
    let at = ["queryMsgByOffset", "-t", TOPIC, "-b", "broker-a", "-i", queue_id, "-o", offset];
    assert_eq!(ok(ns, &at), shown);

    // Stopped, the group falls behind by what is sent after.
    consumer.shutdown().await;
    send(&producer, 5).await;
    let behind = eventually(ns, &["consumerProgress", "-g", "AdminGroup"], |text| {
        text.contains("\nConsume Diff Total: 5\n")
    });
    assert_eq!(figure(&behind, "Consume Diff Total:"), 5, "{behind}");
    // One sent by hand to a chosen queue: its group is not online to consume it.
    let sent = ok(
        ns,
        &["sendMessage", "-t", TOPIC, "-p", "by hand", "-c", "TagZ", "-b", "broker-a", "-i", "2"],
    );
    let sent_row = row(&sent, "broker-a");
    assert_eq!(sent_row[..3], ["broker-a", "2", "SEND_OK"], "{sent}");
    let by_hand =
        eventually(ns, &["queryMsgByUniqueKey", "-t", TOPIC, "-i", sent_row[3]], |_| true);
    assert_eq!(row(&by_hand, "Tags:"), ["Tags:", "[TagZ]"]);
    let missing = admin(ns, &["queryMsgByUniqueKey", "-t", TOPIC, "-i", "NOSUCHKEY"]);
    assert!(!missing.status.success(), "a key nobody sent is an error");
    let not_online =
        "MessageTrack [consumerGroup=AdminGroup, trackType=NOT_ONLINE, exceptionDesc=null]";
    assert!(by_hand.contains(not_online), "{by_hand}");
    producer.shutdown().await;

    // The cluster, the broker and their configuration.
    let clusters = ok(ns, &["clusterList"]);
    let broker_row = row(&clusters, "DefaultCluster");
    assert_eq!(&broker_row[..5], ["DefaultCluster", "broker-a", "0", broker.as_str(), "V5_3_3"]);
    assert_eq!(broker_row.last(), Some(&"true"));
    assert_eq!(
        row(&ok(ns, &["clusterList", "-c", "DefaultCluster"]), "DefaultCluster")[1],
        "broker-a"
    );
    assert_eq!(ok(ns, &["clusterList", "-c", "Elsewhere"]).lines().count(), 1, "the header alone");
    let figures = ok(ns, &["brokerStatus", "-b", &broker]);
    assert_eq!(row(&figures, "brokerRole"), ["brokerRole", ":", "ASYNC_MASTER"]);
    assert_eq!(row(&figures, "putTps").len(), 5, "three rates: {figures}");
    let earliest: i64 = row(&figures, "earliestMessageTimeStamp")[2].parse().unwrap();
    assert!(earliest > 1_700_000_000_000, "the first message's store time: {earliest}");
    let ratio: f64 = row(&figures, "commitLogDiskRatio")[2].parse().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{ratio}");
    let everywhere = ok(ns, &["brokerStatus", "-c", "DefaultCluster"]);
    let active = [broker.as_str(), "brokerActive", ":", "true"];
    assert!(everywhere.lines().any(|l| l.split_whitespace().eq(active)), "{everywhere}");
    let config = ok(ns, &["getBrokerConfig", "-b", &broker]);
    assert!(config.starts_with(&format!("============{broker}============\n")));
    assert_eq!(row(&config, "brokerName"), ["brokerName", "=", "broker-a"]);
    assert_eq!(row(&config, "flushDiskType"), ["flushDiskType", "=", "ASYNC_FLUSH"]);
    let namesrv_config = ok(ns, &["getNamesrvConfig"]);
    assert!(namesrv_config.starts_with(&format!("============{ns}============\n")));
    // As configured: the test asked for a port the kernel picks.
    assert_eq!(row(&namesrv_config, "listenPort"), ["listenPort", "=", "0"]);

    // Groups.
    let group = ok(ns, &["updateSubGroup", "-b", &broker, "-g", "AdminGroup2", "-r", "3"]);
    assert!(group.starts_with(&format!("create subscription group to {broker} success.\n")));
    assert!(group.contains("retryMaxTimes=3,") && !group.ends_with('\n'), "{group}");
    let deleted =
        ok(ns, &["deleteSubGroup", "-c", "DefaultCluster", "-g", "AdminGroup", "-r", "true"]);
    assert_eq!(
        deleted,
        format!("delete subscription group [AdminGroup] from broker [{broker}] in cluster [DefaultCluster] success.\n")
    );
    assert!(!ok(ns, &["topicList"]).contains("%RETRY%AdminGroup"), "the group's retry topic goes");

    // Write permission, through the NameServer.
    let wiped = ok(ns, &["wipeWritePerm", "-b", "broker-a"]);
    let count: i64 = wiped.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(wiped
        .starts_with(&format!("wipe write perm of broker[broker-a] in name server[{ns}] OK, ")));
    assert!(count > 0);
    let route: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicRoute", "-t", TOPIC])).unwrap();
    assert_eq!(route["queueDatas"][0]["perm"], 4, "read only once wiped");
    let added = ok(ns, &["addWritePerm", "-b", "broker-a"]);
    assert!(
        added.starts_with(&format!("add write perm of broker[broker-a] in name server[{ns}] OK, "))
    );

    // Deleting the topic.
    let gone = ok(ns, &["deleteTopic", "-t", TOPIC, "-c", "DefaultCluster"]);
    assert_eq!(
        gone,
        format!(
            "delete topic [{TOPIC}] from cluster [DefaultCluster] success.\ndelete topic [{TOPIC}] from NameServer success.\n"
        )
    );
    assert!(!ok(ns, &["topicList"]).lines().any(|t| t == TOPIC));
    drop(standalone);
}

#[test]
fn bad_flags_and_unreachable_servers_exit_non_zero_with_a_reason() {
    let no_namesrv = admin("", &["topicList"]);
    assert!(!no_namesrv.status.success());
    let said = String::from_utf8_lossy(&no_namesrv.stderr);
    assert!(said.contains("give -n host:port or set NAMESRV_ADDR"), "{said}");

    let unreachable = admin("127.0.0.1:1", &["clusterList"]);
    assert!(!unreachable.status.success());
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(said.contains("127.0.0.1:1"), "{said}");

    for args in [
        &["updateTopic", "-t", "T"][..],
        &["updateTopic", "-t", "T", "-b", "a:1", "-c", "C"],
        &["topicStatus"],
        &["updateTopic", "-t", "T", "-c", "C", "-r", "many"],
        &["noSuchCommand"],
    ] {
        let out = admin("127.0.0.1:1", args);
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
        assert!(!out.stderr.is_empty());
    }
}
