//! `petrel standalone` as a real process on loopback: produce and consume through it, feed it
//! bad input, and kill it with SIGKILL in the middle of a SYNC_FLUSH load.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::Standalone;

use petrel_client::raw::{self, SendOutcome};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{ClientConfig, RemotingClient};

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default(), None)
}

/// `drain`, again until it reads at least `count` messages or 10 s pass: a send is answered
/// once flushed, and the consume queue follows a moment later.
async fn drain_at_least(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue: i32,
    count: usize,
) -> Vec<(i64, u64)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pulled = common::drain(client, broker, topic, queue).await;
        if pulled.len() >= count || std::time::Instant::now() > deadline {
            return pulled;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn standalone_serves_clients_and_refuses_bad_input() {
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("broker.conf");
    std::fs::write(&conf, "maxMessageSize=1024\nbrokerName=broker-t\n").unwrap();
    let petrel = Standalone::start(&data.path().join("data"), Some(&conf));
    let client = client();
    let broker = petrel.broker.as_str();

    // A send to an unknown topic creates it from TBW102; the message comes back on a pull.
    let sent = raw::send(&client, broker, "Orders", 1, 7, 100).await;
    assert!(matches!(sent, SendOutcome::Acked { queue_offset: 0, .. }));
    let pulled = drain_at_least(&client, broker, "Orders", 1, 1).await;
    assert_eq!(pulled, vec![(0, 7)]);

    // Bad input gets RocketMQ's codes, and the broker carries on.
    let refused = |code| SendOutcome::Refused { code };
    assert_eq!(
        raw::send(&client, broker, "bad topic!", 0, 1, 10).await,
        refused(response::INVALID_PARAMETER)
    );
    assert_eq!(
        raw::send(&client, broker, "Orders", 0, 2, 2000).await,
        refused(response::MESSAGE_ILLEGAL)
    );
    assert_eq!(
        raw::send(&client, broker, "Orders", 99, 3, 10).await,
        refused(response::INVALID_PARAMETER)
    );
    assert_eq!(
        raw::send(&client, broker, "SCHEDULE_TOPIC_XXXX", 0, 4, 10).await,
        refused(response::NO_PERMISSION)
    );
    let unknown = RemotingCommand::request(9_999);
    let reply = client.invoke(broker, unknown, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::REQUEST_CODE_NOT_SUPPORTED);

    // A malformed frame closes that connection only.
    let mut raw_socket = std::net::TcpStream::connect(broker).unwrap();
    raw_socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw_socket.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw_socket.read(&mut buf).unwrap_or(0), 0, "the broker closes a malformed stream");
    assert!(matches!(
        raw::send(&client, broker, "Orders", 1, 8, 100).await,
        SendOutcome::Acked { queue_offset: 1, .. }
    ));

    // The NameServer learned the auto-created topic from the broker's registration.
    let route = petrel_net::headers::namesrv::GetRouteInfoRequestHeader {
        topic: "Orders".into(),
        accept_standard_json_only: Some(true),
    };
    let request =
        RemotingCommand::request(petrel_net::codec::codes::request::GET_ROUTEINFO_BY_TOPIC)
            .with_header(&route);
    let reply = client.invoke(&petrel.namesrv, request, Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(text.contains("broker-t") && text.contains(broker), "{text}");

    // SIGTERM stops it cleanly, and the topic and messages are still there after a restart.
    petrel.signal("-TERM");
    let mut petrel = petrel;
    assert!(petrel.child.wait().unwrap().success(), "a clean stop exits 0");
    let topics =
        std::fs::read_to_string(data.path().join("data/broker/config/topics.json")).unwrap();
    assert!(topics.contains("\"Orders\""), "{topics}");
    let again = Standalone::start(&data.path().join("data"), Some(&conf));
    let pulled = common::drain(&client, &again.broker, "Orders", 1).await;
    assert_eq!(pulled, vec![(0, 7), (1, 8)]);
}

/// SIGKILL in the middle of a SYNC_FLUSH load: every acknowledged message is there after a
/// restart, at the queue offset its acknowledgement named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_broker_killed_mid_load_loses_no_acknowledged_message() {
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("broker.conf");
    std::fs::write(
        &conf,
        "flushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=262144\nmaxMessageSize=65536\n",
    )
    .unwrap();
    let petrel = Standalone::start(&data.path().join("data"), Some(&conf));
    let acked: Arc<Mutex<BTreeMap<u64, (i32, i64)>>> = Arc::default();
    let mut producers = Vec::new();
    for producer in 0..8u64 {
        let (broker, acked) = (petrel.broker.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            let client = client();
            for n in 0.. {
                let id = n * 8 + producer;
                let queue = (id % 4) as i32;
                match raw::send(&client, &broker, "CrashTopic", queue, id, 512).await {
                    SendOutcome::Acked { queue_offset, .. } => {
                        acked.lock().unwrap().insert(id, (queue, queue_offset));
                    }
                    SendOutcome::Refused { code } => panic!("send {id} refused with {code}"),
                    SendOutcome::NotDurable { .. } => panic!("send {id} not made durable"),
                    SendOutcome::Unknown => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 2_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    petrel.signal("-KILL");
    for producer in producers {
        producer.await.unwrap();
    }
    drop(petrel);
    let acked = acked.lock().unwrap().clone();

    let again = Standalone::start(&data.path().join("data"), Some(&conf));
    let client = client();
    let mut found = BTreeMap::new();
    for queue in 0..4 {
        for (offset, id) in common::drain(&client, &again.broker, "CrashTopic", queue).await {
            assert!(found.insert(id, (queue, offset)).is_none(), "message {id} stored twice");
        }
    }
    for (id, place) in &acked {
        assert_eq!(found.get(id), Some(place), "acknowledged message {id} lost or moved");
    }
    assert!(found.len() >= acked.len());
}

/// `petrel namesrv` and `petrel broker` as two processes: the broker finds the NameServer
/// through NAMESRV_ADDR, registers, and on SIGTERM unregisters, so its topics leave the routes
/// at once rather than after the NameServer's 120 s expiry.
#[tokio::test]
async fn broker_registers_and_unregisters_with_the_namesrv() {
    let data = tempfile::tempdir().unwrap();
    let (mut namesrv, namesrv_addr) = spawn_namesrv();
    let conf = data.path().join("broker.conf");
    let store = data.path().join("store");
    std::fs::write(
        &conf,
        format!(
            "brokerName=solo\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\nstorePathRootDir={}\n",
            store.display()
        ),
    )
    .unwrap();
    let args = ["broker", "--listen-port", "0", "-c", conf.to_str().unwrap()];
    let (mut broker, line) = common::petrel(&args, &[("NAMESRV_ADDR", &namesrv_addr)]);
    assert!(line.starts_with("broker listening on"), "{line}");

    let client = client();
    let route = |topic: &str| {
        let header = petrel_net::headers::namesrv::GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: Some(true),
        };
        RemotingCommand::request(petrel_net::codec::codes::request::GET_ROUTEINFO_BY_TOPIC)
            .with_header(&header)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut reply =
        client.invoke(&namesrv_addr, route("TBW102"), Duration::from_secs(3)).await.unwrap();
    while reply.code != response::SUCCESS && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply =
            client.invoke(&namesrv_addr, route("TBW102"), Duration::from_secs(3)).await.unwrap();
    }
    assert_eq!(reply.code, response::SUCCESS, "the broker registered its topics");
    assert!(String::from_utf8_lossy(&reply.body).contains("solo"));

    let status = Command::new("kill").args(["-TERM", &broker.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(broker.0.wait().unwrap().success(), "a clean stop exits 0");
    let reply =
        client.invoke(&namesrv_addr, route("TBW102"), Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.code, response::TOPIC_NOT_EXIST, "the broker left the routes when it stopped");
    let _ = namesrv.kill();
    let _ = namesrv.wait();
}

/// A batch is one append: with four connections sending batches of ten and four sending
/// single messages to the same queue, every acknowledged batch reads back whole, at
/// consecutive offsets from the one its answer named. (Before batches were one append, 1 to
/// 47 of 200 batches came back split by a single send: docs/simulation.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_land_whole_beside_concurrent_single_sends() {
    const BATCHES: u64 = 50;
    const BATCH: u64 = 10;
    const SINGLES: u64 = 100;
    let data = tempfile::tempdir().unwrap();
    let petrel = Standalone::start(&data.path().join("data"), None);
    let broker = petrel.broker.clone();
    let first = raw::send(&client(), &broker, "Batched", 0, 1_000_000, 64).await;
    assert!(matches!(first, SendOutcome::Acked { queue_offset: 0, .. }), "{first:?}");
    let mut tasks = Vec::new();
    for sender in 0..4u64 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut acked = Vec::new();
            for batch in 0..BATCHES {
                let base = (sender * BATCHES + batch) * BATCH;
                let ids: Vec<u64> = (base..base + BATCH).collect();
                match raw::send_batch(&client, &broker, "Batched", 0, &ids, 64).await {
                    SendOutcome::Acked { queue_offset, stored_at } => {
                        assert_eq!(stored_at.len(), ids.len(), "one id per message");
                        acked.push((queue_offset, ids));
                    }
                    other => panic!("batch {base} answered {other:?}"),
                }
            }
            acked
        }));
    }
    for sender in 0..4u64 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for n in 0..SINGLES {
                let id = 500_000 + sender * SINGLES + n;
                let sent = raw::send(&client, &broker, "Batched", 0, id, 64).await;
                assert!(matches!(sent, SendOutcome::Acked { .. }), "single {id}: {sent:?}");
            }
            Vec::new()
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        batches.extend(task.await.unwrap());
    }
    let total = (1 + 4 * BATCHES * BATCH + 4 * SINGLES) as usize;
    let stored: BTreeMap<i64, u64> =
        drain_at_least(&client(), &broker, "Batched", 0, total).await.into_iter().collect();
    assert_eq!(stored.len(), total, "every message stored once");
    let split: Vec<i64> = batches
        .iter()
        .filter(|(first, ids)| {
            ids.iter().enumerate().any(|(i, id)| stored.get(&(first + i as i64)) != Some(id))
        })
        .map(|(first, _)| *first)
        .collect();
    assert!(
        split.is_empty(),
        "{} of {} batches split, at offsets {split:?}",
        split.len(),
        batches.len()
    );
}

/// Starts `petrel namesrv` on a kernel-picked port; its address, from what it prints first.
fn spawn_namesrv() -> (Child, String) {
    let mut namesrv = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["namesrv", "--listen-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(namesrv.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = format!("127.0.0.1:{}", line.trim().rsplit(':').next().unwrap());
    (namesrv, addr)
}

/// Starts `petrel broker -c conf` registered with `namesrv`; its client address, from what it
/// prints first (`broker listening on ... (clients are told IP:PORT)`).
fn spawn_broker(conf: &Path, namesrv: &str) -> (common::Killed, String) {
    let args = ["broker", "--listen-port", "0", "-c", conf.to_str().unwrap()];
    let (child, line) = common::petrel(&args, &[("NAMESRV_ADDR", namesrv)]);
    let told = line.split("clients are told ").nth(1).expect("the broker's first line");
    (child, told.trim().trim_end_matches(')').to_owned())
}

/// Three processes, a NameServer, a SYNC_MASTER and its slave: the master is killed with
/// SIGKILL under load from eight producers, and every message it acknowledged is read from
/// the slave, where its acknowledgement said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_master_killed_under_load_leaves_every_acknowledged_message_on_its_slave() {
    let data = tempfile::tempdir().unwrap();
    let (child, namesrv) = spawn_namesrv();
    let _namesrv = common::Killed(child);
    let conf = |name: &str, role: &str, id: u32| {
        let path = data.path().join(format!("{name}.conf"));
        let store = data.path().join(name);
        let text = format!(
            "brokerName=pair\nbrokerRole={role}\nbrokerId={id}\nbrokerIP1=127.0.0.1\n\
             bindAddress=127.0.0.1\nslaveReadEnable=true\nstorePathRootDir={}\n",
            store.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let (mut master, master_addr) = spawn_broker(&conf("master", "SYNC_MASTER", 0), &namesrv);
    let (_slave, slave_addr) = spawn_broker(&conf("slave", "SLAVE", 1), &namesrv);
    let admin = client();
    assert!(raw::create_topic(&admin, &master_addr, "PairTopic", 4).await);
    // Once the slave is connected a send is acknowledged (before, SLAVE_NOT_AVAILABLE).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut probe = 1_000_000;
    while !matches!(
        raw::send(&admin, &master_addr, "PairTopic", 0, probe, 10).await,
        SendOutcome::Acked { .. }
    ) {
        probe += 1;
        assert!(std::time::Instant::now() < deadline, "the slave never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And once it copied the topic (3 s after it started), a consumer can read it there.
    while raw::pull(&admin, &slave_addr, "Check", "PairTopic", 0, 0, Duration::ZERO)
        .await
        .unwrap()
        .code
        == response::TOPIC_NOT_EXIST
    {
        assert!(std::time::Instant::now() < deadline, "the slave never copied the topic");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut producers = Vec::new();
    for producer in 0..8u64 {
        let (broker, acked) = (master_addr.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            let client = client();
            for n in 0.. {
                let id = n * 8 + producer;
                let queue = (id % 4) as i32;
                match raw::send(&client, &broker, "PairTopic", queue, id, 512).await {
                    SendOutcome::Acked { queue_offset, .. } => {
                        acked.lock().unwrap().insert(id, (queue, queue_offset));
                    }
                    SendOutcome::Refused { code } => panic!("send {id} refused with {code}"),
                    // Not promised (the slave lagged); no answer (the master died).
                    SendOutcome::NotDurable { .. } => {}
                    SendOutcome::Unknown => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 1_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill").args(["-KILL", &master.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let _ = master.0.wait();
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // The slave copied the topic within 10 s of its creation; read every queue from it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut found = BTreeMap::new();
    loop {
        found.clear();
        let mut known = true;
        for queue in 0..4 {
            let pulled =
                raw::pull(&admin, &slave_addr, "Check", "PairTopic", queue, 0, Duration::ZERO)
                    .await
                    .unwrap();
            if pulled.code == response::TOPIC_NOT_EXIST {
                known = false;
                break;
            }
            for (offset, id) in common::drain(&admin, &slave_addr, "PairTopic", queue).await {
                assert!(found.insert(id, (queue, offset)).is_none(), "message {id} stored twice");
            }
        }
        if known && acked.keys().all(|id| found.contains_key(id)) {
            break;
        }
        let missing = acked.keys().filter(|id| !found.contains_key(id)).count();
        assert!(
            std::time::Instant::now() < deadline,
            "the slave lacks {missing} of {} acknowledged messages (topic known: {known})",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, place) in &acked {
        assert_eq!(found.get(id), Some(place), "acknowledged message {id} moved on the slave");
    }
}

/// Logs written to a file (stderr not a terminal) carry no colour codes.
#[test]
fn logs_to_a_file_are_plain_text() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["standalone", "--namesrv-port", "0", "--broker-port", "0", "--data-dir"])
        .arg(data.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("petrel binary starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.map(Result::unwrap).any(|line| line.starts_with("Clients:")));
    let _ = child.kill();
    let _ = child.wait();
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("broker listening"), "info logs were written: {written}");
    assert!(!written.contains('\u{1b}'), "no escape codes in a log file: {written:?}");
}

/// A raw socket to the broker's port from loopback address 127.0.0.`host`, reads waiting at
/// most 5 s.
async fn connect_from(broker: &str, host: u8) -> std::net::TcpStream {
    let port = broker.rsplit(':').next().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("127.0.0.{host}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// Whether the broker closed `stream` (end of stream or reset) before its read timeout.
fn closed_by_broker(stream: &mut std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the broker sent bytes nobody asked for"),
        Err(e) => {
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        }
    }
}

/// The transport's defences, configured by their properties, on the real binary: an idle
/// connection is closed, a source over its limit is refused while others are served, and a
/// peer trickling a frame a byte at a time is closed (issue 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_hoarding_and_trickling_connections_are_closed() {
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("broker.conf");
    let limits = "serverChannelMaxIdleTimeSeconds=1\nserverChannelMaxConnectionsPerSource=2\n\
                  serverChannelFrameReadTimeoutSeconds=1\n";
    std::fs::write(&conf, limits).unwrap();
    let petrel = Standalone::start(&data.path().join("data"), Some(&conf));
    let broker = petrel.broker.as_str();

    let mut idle = connect_from(broker, 2).await;
    let started = std::time::Instant::now();
    assert!(closed_by_broker(&mut idle), "an idle connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());

    let mut held = vec![connect_from(broker, 3).await, connect_from(broker, 3).await];
    let mut third = connect_from(broker, 3).await;
    assert!(closed_by_broker(&mut third), "a third connection from one source is refused");
    let client = client();
    let sent = raw::send(&client, broker, "Hoarded", 0, 1, 10).await;
    assert!(matches!(sent, SendOutcome::Acked { .. }), "another source is served: {sent:?}");
    for stream in &mut held {
        assert!(closed_by_broker(stream), "the held ones idle out in turn");
    }

    let frame = RemotingCommand::request(petrel_net::codec::codes::request::HEART_BEAT)
        .with_body(r#"{"clientID":"slow","consumerDataSet":[],"producerDataSet":[]}"#)
        .encode_frame()
        .unwrap();
    let mut slow = connect_from(broker, 4).await;
    slow.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut sent = 0;
    while sent < frame.len() && slow.write_all(&frame[sent..=sent]).is_ok() {
        sent += 1;
        if closed_by_broker(&mut slow) {
            break;
        }
    }
    assert!(sent < frame.len(), "closed before the trickled frame was whole ({sent} bytes)");
}

/// `petrel broker -p` checks the configuration as a start would and prints it in RocketMQ's
/// property names, with the file's values, the command line's over them, and the defaults;
/// a configuration a start would refuse is refused, naming the property (issue 22).
#[test]
fn print_config_names_rocketmq_properties_and_refuses_what_a_start_would() {
    let data = tempfile::tempdir().unwrap();
    let print = |conf: &str, extra: &[&str]| {
        let path = data.path().join("broker.conf");
        std::fs::write(&path, conf).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_petrel"));
        command.args(["broker", "-p", "-c"]).arg(&path).args(extra);
        command.output().unwrap()
    };
    let out = print(
        "flushDiskType=SYNC_FLUSH\nlistenPort=11000\nmessageDelayLevel=1s 2h\n",
        &["--listen-port", "12000"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: BTreeMap<&str, &str> = text.lines().map(|l| l.split_once('=').unwrap()).collect();
    assert_eq!(lines["flushDiskType"], "SYNC_FLUSH");
    assert_eq!(lines["listenPort"], "12000", "the command line over the file");
    assert_eq!(lines["messageDelayLevel"], "1s 2h");
    assert_eq!(lines["brokerRole"], "ASYNC_MASTER");
    assert_eq!(lines["serverChannelMaxIdleTimeSeconds"], "120");
    assert_eq!(lines["maxMessageSize"], "4194304");
    assert!(lines.keys().all(|key| !key.contains('_')), "RocketMQ's names, not Rust's: {text}");

    for (conf, named) in [
        ("storePathRootDir=\n", "storePathRootDir"),
        ("brokerPermission=99\n", "brokerPermission"),
        ("flushDiskType=SYNC\n", "flushDiskType"),
        ("flushDiskType=\n", "flushDiskType"),
        ("deleteWhen=\n", "deleteWhen"),
    ] {
        let out = print(conf, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(named), "{conf}: {stderr}");
    }
}
