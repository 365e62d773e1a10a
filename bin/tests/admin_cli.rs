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
    ConsumeFrom, ConsumeResult, Message, OrderlyContext, OrderlyResult, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig, ReceivedMessage,
};

const TOPIC: &str = "AdminTopic";

/// The working directory of the commands: files they write as mqadmin does land here.
fn scratch() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `petrel admin args..` with `-n namesrv` (unless `namesrv` is empty) and no
/// NAMESRV_ADDR in its environment, in the scratch directory.
fn admin(namesrv: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
    command.arg("admin").args(args).env_remove("NAMESRV_ADDR").env("RUST_LOG", "warn");
    command.current_dir(scratch());
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

/// `petrel standalone` on `data`, once its broker is in the NameServer's cluster list.
fn registered(data: &std::path::Path) -> Standalone {
    let standalone = Standalone::start(data, None);
    eventually(&standalone.namesrv, &["clusterList"], |text| text.contains("broker-a"));
    standalone
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

/// A producer of `group` through the NameServer `namesrv`.
fn producer(namesrv: &str, group: &str) -> Producer {
    let config = ProducerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: group.into(),
        ..ProducerConfig::default()
    };
    Producer::start(config).unwrap()
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
    assert_eq!(ok(ns, &["topicClusterList", "-t", TOPIC]), "DefaultCluster\n");
    let clusters: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicClusterList", "-t", TOPIC, "--json"])).unwrap();
    assert_eq!(clusters, serde_json::json!(["DefaultCluster"]));

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

    // What the member reports of itself: mqadmin's table naming the file its report went
    // to, and the same report whole by client id.
    let status = ok(ns, &["consumerStatus", "-g", "AdminGroup"]);
    let header = ["#Index", "#ClientId", "#Version", "#ConsumerRunningInfoFile"];
    assert_eq!(row(&status, "#Index"), header, "{status}");
    let member = row(&status, "1");
    assert_eq!(member[2], "V5_3_3", "{status}");
    let (client_id, file) = (member[1], member[3]);
    let settled = "\n\nSame subscription in the same group of consumer\n\nRebalance OK\n";
    assert!(status.ends_with(settled), "{status}");
    let report = std::fs::read_to_string(scratch().join(file)).unwrap();
    let whole = ok(ns, &["consumerStatus", "-g", "AdminGroup", "-i", client_id]);
    assert_eq!(report, whole, "the file holds the report -i prints");
    assert!(whole.starts_with("#Consumer Properties#\n"), "{whole}");
    assert_eq!(row(&whole, "consumerGroup"), ["consumerGroup", ":", "AdminGroup"]);
    assert_eq!(row(&whole, "PROP_CONSUME_TYPE"), ["PROP_CONSUME_TYPE", ":", "CONSUME_PASSIVELY"]);
    assert_eq!(
        row(&whole, "001"),
        ["001", "Topic:", "%RETRY%AdminGroup", "ClassFilter:", "false", "SubExpression:", "*"]
    );
    assert_eq!(row(&whole, "002")[2], TOPIC);
    let committed: i64 = whole
        .lines()
        .skip_while(|l| !l.starts_with("#Consumer Offset#"))
        .take_while(|l| !l.starts_with("#Consumer MQ Detail#"))
        .filter(|l| l.starts_with(TOPIC))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(committed, 10, "every message consumed and committed: {whole}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(ns, &["consumerStatus", "-g", "AdminGroup", "--json"])).unwrap();
    assert_eq!(json["sameSubscription"], true);
    assert_eq!(json["members"][0]["clientId"], client_id);
    let held = json["members"][0]["runningInfo"]["mqTable"].as_array().unwrap().len();
    assert_eq!(held, 5, "the topic's four queues and the retry topic's one: {json}");
    let stranger = admin(ns, &["consumerStatus", "-g", "AdminGroup", "-i", "nobody@x"]);
    assert!(!stranger.status.success());
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("not online"));

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
    // A unique key read as an offset id names no broker: the refusal says to name the topic.
    let said = refused(ns, &["queryMsgById", "-i", id]);
    assert!(said.contains(&format!("If {id} is a message's unique key")), "{said}");
    assert!(said.contains("name its topic with -t"), "{said}");
    assert_eq!(ok(ns, &["queryMsgById", "-i", id, "-t", TOPIC]), shown);
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

/// `admin`, which must fail; its standard error.
fn refused(namesrv: &str, args: &[&str]) -> String {
    let out = admin(namesrv, args);
    assert!(!out.status.success(), "petrel admin {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_updates_change_the_running_servers_and_the_broker_conf() {
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("broker.conf");
    std::fs::write(&conf, "# the operator's note\nbrokerPermission = 6\ndeleteWhen=04\n").unwrap();
    let standalone = Standalone::start(&data.path().join("store"), Some(&conf));
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    eventually(ns, &["clusterList"], |text| text.contains("broker-a"));
    ok(ns, &["updateTopic", "-b", broker, "-t", TOPIC, "-r", "2", "-w", "2"]);

    // A property the running broker takes at once: read-only, registered at once.
    let updated =
        ok(ns, &["updateBrokerConfig", "-b", broker, "-k", "brokerPermission", "-v", "4"]);
    let conf_path = std::path::absolute(&conf).unwrap();
    assert_eq!(
        updated,
        format!(
            "update broker config success, {broker}\n  in effect now: brokerPermission; written to {}\n",
            conf_path.display()
        )
    );
    let config = ok(ns, &["getBrokerConfig", "-b", broker]);
    assert_eq!(row(&config, "brokerPermission"), ["brokerPermission", "=", "4"]);
    eventually(ns, &["topicRoute", "-t", TOPIC], |text| text.contains("\"perm\": 4"));
    let said = refused(ns, &["sendMessage", "-t", TOPIC, "-p", "no"]);
    assert!(said.contains("no route to topic"), "no writable queue once registered: {said}");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "# the operator's note\nbrokerPermission=4\ndeleteWhen=04\n"
    );

    // One it takes at the next start; then write permission back.
    let later = ok(
        ns,
        &["updateBrokerConfig", "-c", "DefaultCluster", "-k", "fileReservedTime", "-v", "48"],
    );
    assert!(later.contains("in effect at the next start: fileReservedTime"), "{later}");
    ok(ns, &["updateBrokerConfig", "-b", broker, "-k", "brokerPermission", "-v", "6"]);
    eventually(ns, &["topicRoute", "-t", TOPIC], |text| text.contains("\"perm\": 6"));
    ok(ns, &["sendMessage", "-t", TOPIC, "-p", "yes"]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.ends_with("deleteWhen=04\nfileReservedTime=48\n"), "{text}");

    // Refused: the black list, a misspelt name, a value a start refuses. Nothing is written.
    let said =
        refused(ns, &["updateBrokerConfig", "-b", broker, "-k", "brokerConfigPath", "-v", "/x"]);
    assert!(said.contains("NO_PERMISSION (16): Can not update config in black list."), "{said}");
    let said = refused(
        ns,
        &["updateBrokerConfig", "-b", broker, "-k", "flushDiskTyp", "-v", "SYNC_FLUSH"],
    );
    assert!(
        said.contains("INVALID_PARAMETER (29)") && said.contains("did you mean flushDiskType?"),
        "{said}"
    );
    let said =
        refused(ns, &["updateBrokerConfig", "-b", broker, "-k", "brokerPermission", "-v", "99"]);
    assert!(said.contains("brokerPermission=99 is not a permission"), "{said}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), text);

    // The NameServer: standalone's has no file, so the change lasts until it stops.
    let updated = ok(ns, &["updateNamesrvConfig", "-k", "enableAllTopicList", "-v", "false"]);
    assert_eq!(
        updated,
        format!(
            "update name server config success![{ns}]\nenableAllTopicList : false\n  {ns}: in effect now: \
             enableAllTopicList; not written: the server was started without a config file (-c), \
             so the change lasts until it stops\n"
        )
    );
    let config = ok(ns, &["getNamesrvConfig"]);
    assert_eq!(row(&config, "enableAllTopicList"), ["enableAllTopicList", "=", "false"]);
    refused(ns, &["topicList"]);
    ok(ns, &["updateNamesrvConfig", "-k", "enableAllTopicList", "-v", "true"]);
    assert!(ok(ns, &["topicList"]).lines().any(|t| t == TOPIC));
    let said = refused(ns, &["updateNamesrvConfig", "-k", "kvConfigPath", "-v", "/x"]);
    assert!(said.contains("NO_PERMISSION"), "{said}");

    // A KV entry: with orderMessageEnable on, the topic's route carries it until it is deleted.
    let entry = ["-s", "ORDER_TOPIC_CONFIG", "-k", TOPIC];
    let put = ok(ns, &[&["updateKvConfig"], &entry[..], &["-v", "broker-a:8"]].concat());
    assert_eq!(put, "create or update kv config to namespace success.\n");
    ok(ns, &["updateNamesrvConfig", "-k", "orderMessageEnable", "-v", "true"]);
    let route: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicRoute", "-t", TOPIC])).unwrap();
    assert_eq!(route["orderTopicConf"], "broker-a:8");
    let deleted = ok(ns, &[&["deleteKvConfig"], &entry[..]].concat());
    assert_eq!(deleted, "delete kv config from namespace success.\n");
    let route: serde_json::Value =
        serde_json::from_str(&ok(ns, &["topicRoute", "-t", TOPIC])).unwrap();
    assert_eq!(route.get("orderTopicConf"), None, "{route}");
    ok(ns, &["updateNamesrvConfig", "-k", "orderMessageEnable", "-v", "false"]);
}

/// The consumer offset of queue 0 of `topic` in consumerProgress's table.
fn consumer_offset(namesrv: &str, group: &str, topic: &str) -> i64 {
    let progress = ok(namesrv, &["consumerProgress", "-g", group, "-t", topic]);
    row(&progress, topic)[4].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_offset_by_time_moves_a_live_consumer_back_and_an_idle_group_anywhere() {
    const RESET: &str = "ResetTopic";
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", RESET, "-r", "1", "-w", "1"]);
    let producer = producer(ns, "ResetProducer");
    let send_five = |from: usize| {
        let producer = &producer;
        async move {
            for i in from..from + 5 {
                producer.send(&Message::new(RESET, format!("m{i}").into_bytes())).await.unwrap();
            }
        }
    };
    send_five(0).await;
    // Store times are in milliseconds: the second five are stored after `middle`.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_five(5).await;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            namesrv_addrs: vec![ns.to_owned()],
            group: "ResetGroup".into(),
            subscriptions: [(RESET.to_owned(), "*".into())].into_iter().collect(),
            consume_from: ConsumeFrom::First,
            commit_interval: Duration::from_millis(200),
            ..PushConsumerConfig::default()
        },
        move |m: &ReceivedMessage| {
            record.lock().unwrap().push(String::from_utf8_lossy(&m.body).into_owned());
            ConsumeResult::Success
        },
    )
    .unwrap();
    eventually(ns, &["consumerProgress", "-g", "ResetGroup", "-t", RESET], |t| {
        t.contains("Consume Diff Total: 0\n")
    });
    assert_eq!(seen.lock().unwrap().len(), 10);

    // Back to the middle while the consumer runs: it reads the second five again.
    let reset = ok(ns, &["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET, "-s", &middle]);
    let lines: Vec<&str> = reset.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "start reset consumer offset by specified, group[ResetGroup], topic[{RESET}], \
             force[true], timestamp(string)[{middle}], timestamp(long)[{middle}]"
        )
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["#brokerName", "#queueId", "#offset"]
    );
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["broker-a", "0", "5"]);
    let started = Instant::now();
    while seen.lock().unwrap().len() < 15 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not read again: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A concurrent consumer's workers may finish them in any order.
    let mut again: Vec<String> = seen.lock().unwrap()[10..].to_vec();
    again.sort();
    assert_eq!(again, ["m5", "m6", "m7", "m8", "m9"]);
    eventually(ns, &["consumerProgress", "-g", "ResetGroup", "-t", RESET], |t| {
        t.contains("Consume Diff Total: 0\n")
    });
    assert_eq!(seen.lock().unwrap().len(), 15, "only the five after the reset, once");

    // RocketMQ 4's reset, made by the member: the broker sends it the offsets to move to.
    ok(ns, &["updateBrokerConfig", "-b", broker, "-k", "useServerSideResetOffset", "-v", "false"]);
    let reset = ok(ns, &["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET, "-s", "0"]);
    assert_eq!(
        reset.lines().nth(2).unwrap().split_whitespace().collect::<Vec<_>>(),
        ["broker-a", "0", "0"]
    );
    let started = Instant::now();
    while seen.lock().unwrap().len() < 25 {
        let seen = seen.lock().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20), "not read again: {seen:?}");
        drop(seen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again: Vec<String> = seen.lock().unwrap()[15..].to_vec();
    again.sort();
    let all: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(again, all, "the member read the whole queue again");
    eventually(ns, &["consumerProgress", "-g", "ResetGroup", "-t", RESET], |t| {
        t.contains("Consume Diff Total: 0\n")
    });
    assert_eq!(seen.lock().unwrap().len(), 25, "each message once after the member's reset");
    // One queue to an offset: the member reads from there again.
    let flags = ["-s", "now", "-b", broker, "-q", "0", "-o", "7"];
    let one = ok(
        ns,
        &[["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET].as_slice(), &flags].concat(),
    );
    assert!(one.ends_with("\nreset consumer offset to 7\n"), "{one}");
    let started = Instant::now();
    while seen.lock().unwrap().len() < 28 {
        assert!(started.elapsed() < Duration::from_secs(20), "not read from 7: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again: Vec<String> = seen.lock().unwrap()[25..].to_vec();
    again.sort();
    assert_eq!(again, ["m7", "m8", "m9"]);
    consumer.shutdown().await;
    // No member online: as mqadmin, the admin moves the committed offsets itself.
    let committed = consumer_offset(ns, "ResetGroup", RESET);
    let offline = |time: &str, force: &str| {
        let flags = ["-s", time, "-f", force];
        ok(
            ns,
            &[["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET].as_slice(), &flags].concat(),
        )
    };
    let reset = offline("0", "true");
    let lines: Vec<&str> = reset.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "reset consumer offset by specified consumerGroup[ResetGroup], topic[{RESET}], \
             force[true], timestamp(string)[0], timestamp(long)[0]"
        )
    );
    let header = "#brokerName #queueId #brokerOffset #consumerOffset #timestampOffset #resetOffset";
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>().join(" "), header);
    let line = ["broker-a", "0", "10", &committed.to_string(), "0", "0"];
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), line);
    assert_eq!(consumer_offset(ns, "ResetGroup", RESET), 0);
    // Without force, an offset past the committed one stays where it is.
    let reset = offline(&middle, "false");
    let line = ["broker-a", "0", "10", "0", "5", "0"];
    assert_eq!(reset.lines().nth(2).unwrap().split_whitespace().collect::<Vec<_>>(), line);
    assert_eq!(consumer_offset(ns, "ResetGroup", RESET), 0);
    ok(ns, &["updateBrokerConfig", "-b", broker, "-k", "useServerSideResetOffset", "-v", "true"]);

    // With no member online: to the start by time, then one queue to an offset.
    ok(ns, &["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET, "-s", "0"]);
    assert_eq!(consumer_offset(ns, "ResetGroup", RESET), 0);
    let one_queue = |offset| {
        let flags = ["-s", "now", "-b", broker, "-q", "0", "-o", offset];
        [["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET].as_slice(), &flags].concat()
    };
    let one = ok(ns, &one_queue("3"));
    assert!(one.ends_with("\nreset consumer offset to 3\n"), "{one}");
    assert_eq!(consumer_offset(ns, "ResetGroup", RESET), 3);
    let said = refused(ns, &one_queue("99"));
    assert!(said.contains("Target offset 99 not in consume queue range [0-10]"), "{said}");
    let said = refused(ns, &["resetOffsetByTime", "-g", "NoSuchGroup", "-t", RESET, "-s", "now"]);
    assert!(said.contains("SUBSCRIPTION_GROUP_NOT_EXIST"), "{said}");
    let said =
        refused(ns, &["resetOffsetByTime", "-g", "ResetGroup", "-t", RESET, "-s", "yesterday"]);
    assert!(said.contains("-s yesterday is not a time"), "{said}");
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orderly_member_takes_a_member_made_reset_and_reads_each_queue_again_in_order() {
    const ORDERED: &str = "OrderedResetTopic";
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", ORDERED, "-r", "2", "-w", "2"]);
    ok(ns, &["updateBrokerConfig", "-b", broker, "-k", "useServerSideResetOffset", "-v", "false"]);
    let producer = producer(ns, "OrderedResetProducer");
    for queue_id in 0..2 {
        let queue = petrel_core::client::MessageQueue::new(ORDERED, "broker-a", queue_id);
        for i in 0..10 {
            let message = Message::new(ORDERED, format!("{i}").into_bytes());
            producer.send_to(&message, &queue).await.unwrap();
        }
    }
    producer.shutdown().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i32, u32)>::new()));
    let record = seen.clone();
    let listener = move |m: &ReceivedMessage, _: &OrderlyContext| {
        let body: u32 = String::from_utf8_lossy(&m.body).parse().unwrap();
        record.lock().unwrap().push((m.queue.queue_id, body));
        OrderlyResult::Success
    };
    let config = PushConsumerConfig {
        namesrv_addrs: vec![ns.to_owned()],
        group: "OrderedResetGroup".into(),
        subscriptions: [(ORDERED.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        commit_interval: Duration::from_millis(200),
        ..PushConsumerConfig::default()
    };
    let consumer = PushConsumer::start_orderly(config, listener).unwrap();
    let progress = ["consumerProgress", "-g", "OrderedResetGroup", "-t", ORDERED];
    eventually(ns, &progress, |t| t.contains("Consume Diff Total: 0\n"));
    assert_eq!(seen.lock().unwrap().len(), 20);
    // Back to the start, made by the member: it reads each queue again from 0, in order.
    let reset = ok(ns, &["resetOffsetByTime", "-g", "OrderedResetGroup", "-t", ORDERED, "-s", "0"]);
    assert_eq!(reset.lines().count(), 4, "a line for each of the two queues: {reset}");
    let started = Instant::now();
    while seen.lock().unwrap().len() < 40 {
        let seen = seen.lock().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20), "not read again: {seen:?}");
        drop(seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(ns, &progress, |t| t.contains("Consume Diff Total: 0\n"));
    consumer.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 40, "each message twice, no more: {seen:?}");
    for queue_id in 0..2 {
        let bodies: Vec<u32> =
            seen.iter().filter(|(q, _)| *q == queue_id).map(|(_, b)| *b).collect();
        let twice: Vec<u32> = (0..10).chain(0..10).collect();
        assert_eq!(bodies, twice, "queue {queue_id} read in order, then again in order");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn query_msg_by_id_has_a_member_consume_a_message_directly() {
    const DIRECT: &str = "DirectTopic";
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", DIRECT, "-r", "1", "-w", "1"]);
    let producer = producer(ns, "DirectProducer");
    let (mut ids, mut unique) = (Vec::new(), Vec::new());
    for body in ["fine", "fails", "panics"] {
        let sent = producer.send(&Message::new(DIRECT, body.as_bytes().to_vec())).await.unwrap();
        ids.push(sent.offset_msg_id);
        unique.push(sent.msg_id);
    }
    producer.shutdown().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            namesrv_addrs: vec![ns.to_owned()],
            group: "DirectGroup".into(),
            subscriptions: [(DIRECT.to_owned(), "*".into())].into_iter().collect(),
            consume_from: ConsumeFrom::First,
            ..PushConsumerConfig::default()
        },
        move |m: &ReceivedMessage| {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            record.lock().unwrap().push(body.clone());
            match body.as_str() {
                "panics" if record.lock().unwrap().len() > 3 => panic!("the listener gave up"),
                "fails" if record.lock().unwrap().len() > 3 => ConsumeResult::Later,
                _ => ConsumeResult::Success,
            }
        },
    )
    .unwrap();
    eventually(ns, &["consumerProgress", "-g", "DirectGroup", "-t", DIRECT], |t| {
        t.contains("Consume Diff Total: 0\n")
    });
    assert_eq!(seen.lock().unwrap().len(), 3);
    let client = consumer.client_id().to_owned();
    let direct = |id: &str| ok(ns, &["queryMsgById", "-i", id, "-g", "DirectGroup", "-d", &client]);

    // Each consumed again by the member's listener, out of its queue, and said how it went.
    let said = direct(&ids[0]);
    let prefix = "ConsumeMessageDirectlyResult [order=false, autoCommit=true, ";
    assert!(
        said.starts_with(&format!("{prefix}consumeResult=CR_SUCCESS, remark=null, ")),
        "{said}"
    );
    assert!(said.ends_with("]\n") && said.contains("spentTimeMills="), "{said}");
    let said = direct(&ids[1]);
    assert!(said.starts_with(&format!("{prefix}consumeResult=CR_LATER, remark=null, ")), "{said}");
    let said = direct(&ids[2]);
    let thrown = format!("{prefix}consumeResult=CR_THROW_EXCEPTION, remark=the listener gave up, ");
    assert!(said.starts_with(&thrown), "{said}");
    let mut first = seen.lock().unwrap()[..3].to_vec();
    first.sort();
    assert_eq!(first, ["fails", "fine", "panics"], "a concurrent member's workers in any order");
    assert_eq!(seen.lock().unwrap()[3..], ["fine", "fails", "panics"], "each handed over once");
    let both = ok(
        ns,
        &["queryMsgById", "-i", &ids.join(","), "-g", "DirectGroup", "-d", &client, "--json"],
    );
    let results: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(results[0]["consumeResult"], "CR_SUCCESS", "{both}");
    assert_eq!(results[1]["consumeResult"], "CR_LATER", "{both}");
    assert_eq!(seen.lock().unwrap().len(), 9, "nothing delivered but what was handed: {seen:?}");
    // A failure handed over is not sent back: nothing waits in the delay levels for a retry.
    let scheduled = admin(ns, &["topicStatus", "-t", "SCHEDULE_TOPIC_XXXX"]);
    let scheduled = String::from_utf8_lossy(&scheduled.stdout);
    let waiting: Vec<&str> = scheduled
        .lines()
        .filter(|l| l.starts_with("broker-a") && l.split_whitespace().nth(3) != Some("0"))
        .collect();
    assert!(waiting.is_empty(), "sent back for a retry: {waiting:?}");

    // Sent again through a producer, under its id: the member gets it once more.
    let said = ok(ns, &["queryMsgById", "-i", &ids[0], "-s", "true"]);
    let sent = format!(
        "prepare resend msg. originalMsgId={}SendResult [sendStatus=SEND_OK, msgId={}, ",
        ids[0], unique[0]
    );
    assert!(said.starts_with(&sent), "{said}");
    let queue = format!("MessageQueue [topic={DIRECT}, brokerName=broker-a, queueId=0]");
    let placed = format!("messageQueue={queue}, queueOffset=3, recallHandle=null]\n");
    assert!(said.ends_with(&placed), "{said}");
    let started = Instant::now();
    while seen.lock().unwrap().len() < 10 {
        assert!(started.elapsed() < Duration::from_secs(20), "not sent again: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.lock().unwrap()[9], "fine");
    let copies = ok(ns, &["queryMsgByUniqueKey", "-i", &unique[0], "-t", DIRECT, "-a"]);
    assert_eq!(copies.matches("OffsetID:").count(), 2, "both stored under its id: {copies}");
    assert_eq!(ok(ns, &["queryMsgById", "-i", &ids[0], "-s", "false"]), "");
    let said = refused(ns, &["queryMsgById", "-i", &ids[0], "-g", "DirectGroup", "-d", "nobody@x"]);
    assert!(said.contains("The Consumer <DirectGroup> <nobody@x> not online"), "{said}");
    let said = refused(ns, &["queryMsgById", "-i", &ids[0], "-g", "DirectGroup"]);
    assert!(said.contains("--clientId"), "{said}");
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn print_msg_consume_message_and_cluster_rt_read_and_time_the_brokers() {
    const PRINTED: &str = "PrintedTopic";
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", PRINTED, "-r", "2", "-w", "2"]);
    let producer = producer(ns, "PrintProducer");
    for (i, tag) in ["TagA", "TagB", "TagA", "TagB", "TagA"].iter().enumerate() {
        let message = Message::new(PRINTED, format!("body-{i}").into_bytes()).with_tags(*tag);
        let queue = petrel_core::client::MessageQueue::new(PRINTED, "broker-a", 0);
        producer.send_to(&message, &queue).await.unwrap();
    }
    producer.shutdown().await;
    eventually(ns, &["topicStatus", "-t", PRINTED], |t| row(t, "broker-a")[3] == "5");

    // printMsg: every message of queue 0 with its body, then the empty queue 1.
    let printed = ok(ns, &["printMsg", "-t", PRINTED]);
    let lines: Vec<&str> = printed.lines().collect();
    let q = |id| format!("MessageQueue [topic={PRINTED}, brokerName=broker-a, queueId={id}]");
    assert_eq!(lines[0], format!("minOffset=0, maxOffset=5, {}", q(0)));
    for i in 0..5 {
        let line = lines[1 + i];
        assert!(line.starts_with("MSGID: "), "{line}");
        assert!(line.contains(&format!("queueOffset={i}, ")), "{line}");
        assert!(
            line.contains(&format!("toString()=Message{{topic='{PRINTED}', flag=0, ")),
            "{line}"
        );
        assert!(line.contains("MIN_OFFSET=0") && line.contains("MAX_OFFSET=5"), "{line}");
        assert!(line.ends_with(&format!("transactionId='null'}}] BODY: body-{i}")), "{line}");
    }
    assert_eq!(lines[6], "--------------------------------------------------------");
    assert_eq!(lines[7], format!("minOffset=0, maxOffset=0, {}", q(1)));
    assert_eq!(lines.len(), 9, "{printed}");
    // By tag, without bodies: TagB is at offsets 1 and 3.
    let tagged = ok(ns, &["printMsg", "-t", PRINTED, "-s", "TagB", "-d", "false"]);
    let found: Vec<&str> = tagged.lines().filter(|l| l.starts_with("MSGID")).collect();
    assert_eq!(found.len(), 2, "{tagged}");
    assert!(found.iter().all(|l| l.ends_with(" BODY: NOT PRINT BODY") && l.contains("TAGS=TagB")));

    // consumeMessage: at most -c, from -o of one queue.
    let consumed = ok(
        ns,
        &["consumeMessage", "-t", PRINTED, "-b", "broker-a", "-i", "0", "-o", "1", "-c", "2"],
    );
    let lines: Vec<&str> = consumed.lines().collect();
    assert_eq!(lines[0], "The older 2 message of the 0 queue will be provided");
    assert_eq!(lines[1], "Consume ok");
    assert!(lines[2].ends_with("BODY: body-1") && lines[3].ends_with("BODY: body-2"), "{consumed}");
    assert_eq!(lines.len(), 4, "{consumed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(ns, &["consumeMessage", "-t", PRINTED, "--json"])).unwrap();
    let offsets: Vec<i64> =
        json.as_array().unwrap().iter().map(|m| m["queueOffset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let said = refused(ns, &["consumeMessage", "-t", PRINTED, "-c", "0"]);
    assert!(said.contains("Please input a positive messageNumber!"), "{said}");

    query_cq_prints_the_units_of_a_queue(ns, PRINTED);

    // clusterRT: ten sends to broker-a's own topic, all answered.
    let rt = ok(ns, &["clusterRT", "-a", "10", "-s", "64", "--rounds", "1"]);
    let lines: Vec<&str> = rt.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["#Cluster", "Name", "#Broker", "Name", "#RT", "#successCount", "#failCount"]
    );
    let figures: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (figures[0], figures[1], figures[3], figures[4]),
        ("DefaultCluster", "broker-a", "10", "0")
    );
    assert!(figures[2].parse::<f64>().unwrap() > 0.0, "{rt}");
    let said = refused(ns, &["clusterRT", "-c", "NoSuchCluster", "--rounds", "1"]);
    assert!(said.contains("cluster [NoSuchCluster] not exist"), "{said}");
}

/// queryCq on queue 0 of `topic`, which holds TagA, TagB, TagA, TagB, TagA: the units from
/// index 3 in mqadmin's text, each with its tag's hash; a group that is not online; an index
/// past the end refused with RocketMQ's remark.
fn query_cq_prints_the_units_of_a_queue(ns: &str, topic: &str) {
    const RULE: &str = "======================================";
    let units = ok(ns, &["queryCq", "-t", topic, "-q", "0", "-i", "3"]);
    let lines: Vec<&str> = units.lines().collect();
    assert_eq!(lines[..3], ["Queue data: ", "max: 5, min: 0", RULE], "{units}");
    // Java's "TagB".hashCode() and "TagA".hashCode().
    for (at, (idx, tags_code)) in [(3, 2_598_920), (4, 2_598_919)].into_iter().enumerate() {
        let unit = &lines[3 + at * 3..6 + at * 3];
        assert_eq!(unit[0], format!("idx: {idx}"));
        assert!(unit[1].starts_with("ConsumeQueueData{physicOffset="), "{units}");
        let tail = format!(
            ", tagsCode={tags_code}, extendDataJson='null', bitMap='null', eval=false, msg='null'}}"
        );
        assert!(unit[1].ends_with(&tail), "{units}");
        assert_eq!(unit[2], RULE);
    }
    assert_eq!(lines.len(), 9, "{units}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(ns, &["queryCq", "-t", topic, "-q", "0", "-i", "0", "--json"]))
            .unwrap();
    assert_eq!(json["queueData"].as_array().unwrap().len(), 5);
    let offline = ok(ns, &["queryCq", "-t", topic, "-q", "0", "-i", "4", "-g", "Nobody"]);
    assert!(offline.starts_with(&format!("Filter data: \nNobody@{topic} is not online!\n")));
    let said = refused(ns, &["queryCq", "-t", topic, "-q", "0", "-i", "9"]);
    assert!(said.contains(&format!("Index 9 of 0@{topic} is not exist!")), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_all_counts_each_topics_messages_in_and_each_groups_out() {
    const STATS: &str = "StatsTopic";
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", STATS, "-r", "2", "-w", "2"]);
    // A topic counts from the broker's first sample of it (every 10 s): send after that.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let producer = producer(ns, "StatsProducer");
    for i in 0..20 {
        producer.send(&Message::new(STATS, format!("s{i}").into_bytes())).await.unwrap();
    }
    producer.shutdown().await;
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            namesrv_addrs: vec![ns.to_owned()],
            group: "StatsGroup".into(),
            subscriptions: [(STATS.to_owned(), "*".into())].into_iter().collect(),
            consume_from: ConsumeFrom::First,
            commit_interval: Duration::from_millis(200),
            ..PushConsumerConfig::default()
        },
        |_: &ReceivedMessage| ConsumeResult::Success,
    )
    .unwrap();
    eventually(ns, &["consumerProgress", "-g", "StatsGroup", "-t", STATS], |t| {
        t.contains("Consume Diff Total: 0\n")
    });
    // The broker samples its totals every 10 s: the 20 show once a sample follows them.
    let started = Instant::now();
    let stats = loop {
        let text = ok(ns, &["statsAll", "-t", STATS]);
        if text.lines().skip(1).any(|l| l.split_whitespace().nth(6) == Some("20")) {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "never counted: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let header: Vec<&str> = stats.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "#Topic",
            "#Consumer",
            "Group",
            "#Accumulation",
            "#InTPS",
            "#OutTPS",
            "#InMsg24Hour",
            "#OutMsg24Hour"
        ]
    );
    let figures = row(&stats, STATS);
    assert_eq!(
        (figures[1], figures[2], figures[5], figures[6]),
        ("StatsGroup", "0", "20", "20"),
        "{stats}"
    );
    assert!(figures[3].parse::<f64>().unwrap() > 0.0, "in TPS: {stats}");
    assert!(figures[4].parse::<f64>().unwrap() > 0.0, "out TPS: {stats}");
    let progress = ok(ns, &["consumerProgress", "-g", "StatsGroup", "-t", STATS]);
    let tps = progress.lines().find_map(|l| l.strip_prefix("Consume TPS: ")).unwrap();
    assert!(tps.trim().parse::<f64>().unwrap() > 0.0, "{progress}");
    consumer.shutdown().await;
    // A topic nobody consumes, with -a: listed only with messages in the last day.
    ok(ns, &["updateTopic", "-b", broker, "-t", "QuietTopic", "-r", "1", "-w", "1"]);
    let quiet = ok(ns, &["statsAll", "-a", "-t", "QuietTopic"]);
    assert_eq!(quiet.lines().count(), 1, "only the header: {quiet}");
    let quiet = ok(ns, &["statsAll", "-t", "QuietTopic"]);
    assert!(row(&quiet, "QuietTopic").ends_with(&["0", "NO_CONSUMER"]), "{quiet}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_message_is_shown_and_resent_as_its_producer_sent_it() {
    let data = tempfile::tempdir().unwrap();
    let standalone = registered(data.path());
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    ok(ns, &["updateTopic", "-b", broker, "-t", "Squeezed", "-r", "1", "-w", "1"]);
    // 10 000 bytes: petrel-client deflates it (SYSFLAG COMPRESSED | ZLIB, 769).
    let body: Vec<u8> = b"squeeze me; ".iter().copied().cycle().take(10_000).collect();
    let producer = producer(ns, "SqueezingProducer");
    let sent = producer.send(&Message::new("Squeezed", body.clone()).with_keys(["big"])).await;
    producer.shutdown().await;
    let id = sent.unwrap().msg_id;

    // Shown as Java's decoder shows it: the body inflated, the compressed bit cleared.
    let shown = ok(ns, &["queryMsgByUniqueKey", "-t", "Squeezed", "-i", &id]);
    assert_eq!(row(&shown, "System")[2], "768", "{shown}");
    assert_eq!(std::fs::read(row(&shown, "Message")[3]).unwrap(), body);

    // Resent with its body as sent: both copies read back whole.
    let offset_id = row(&shown, "OffsetID:")[1].to_owned();
    let said = ok(ns, &["queryMsgById", "-i", &offset_id, "-s", "true"]);
    assert!(said.contains("sendStatus=SEND_OK"), "{said}");
    let copies = ok(ns, &["queryMsgByUniqueKey", "-t", "Squeezed", "-i", &id, "-a"]);
    let paths: Vec<&str> = copies
        .lines()
        .filter_map(|line| line.strip_prefix("Message Body Path:"))
        .map(str::trim)
        .collect();
    assert_eq!(paths.len(), 2, "{copies}");
    for path in paths {
        assert_eq!(std::fs::read(path).unwrap(), body, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_expired_commit_log_deletes_old_files_outside_delete_when() {
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("broker.conf");
    // Files expire at once, but deleteWhen names an hour twelve hours from now, and a disk
    // fuller than diskMaxUsedSpaceRatio (75% by default) or diskSpaceCleanForciblyRatio (85%)
    // would have them deleted anyway: this machine's disk is at times over 85% full.
    let hour =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            / 3600
            % 24;
    let text = format!(
        "mappedFileSizeCommitLog=65536\nmaxMessageSize=16384\nfileReservedTime=0\n\
         diskMaxUsedSpaceRatio=99\ndiskSpaceCleanForciblyRatio=99\ndiskSpaceWarningLevelRatio=99\n\
         deleteWhen={:02}\n",
        (hour + 12) % 24
    );
    std::fs::write(&conf, text).unwrap();
    let store = data.path().join("store");
    let standalone = Standalone::start(&store, Some(&conf));
    let (ns, broker) = (standalone.namesrv.as_str(), standalone.broker.as_str());
    eventually(ns, &["clusterList"], |text| text.contains("broker-a"));
    ok(ns, &["updateTopic", "-b", broker, "-t", "Expiring", "-r", "1", "-w", "1"]);
    let producer = producer(ns, "ExpiringProducer");
    for _ in 0..60 {
        producer.send(&Message::new("Expiring", vec![b'e'; 4000])).await.unwrap();
    }
    producer.shutdown().await;
    let files = || std::fs::read_dir(store.join("broker/commitlog")).unwrap().count();
    assert!(files() >= 4, "60 messages of 4 KB fill four 64 KiB files: {}", files());
    // Not deleteWhen's hour: a cleanup pass (every 10 s) leaves them.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = files();
    assert!(before >= 4, "nothing deleted before the request: {before}");
    assert_eq!(ok(ns, &["deleteExpiredCommitLog", "-b", broker]), "success");
    let started = Instant::now();
    while files() >= before {
        assert!(started.elapsed() < Duration::from_secs(25), "still {} files", files());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = ok(ns, &["topicStatus", "-t", "Expiring"]);
    let min: i64 = row(&status, "broker-a")[2].parse().unwrap();
    assert!(min > 0, "the queue starts past the deleted files: {status}");
    assert_eq!(ok(ns, &["deleteExpiredCommitLog", "-c", "DefaultCluster"]), "success");
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
