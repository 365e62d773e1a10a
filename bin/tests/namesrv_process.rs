//! `petrel namesrv` as a real process on loopback, spoken to by a raw TCP client written from
//! the protocol reference (docs/protocol.md), not with Petrel's codec: frames are assembled by
//! hand and replies are checked byte by byte and as plain JSON.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Namesrv {
    child: Child,
    addr: String,
}

impl Namesrv {
    fn start() -> Namesrv {
        Namesrv::start_with(&[])
    }

    /// Starts `petrel namesrv` on a port the kernel picks, and learns it from the line the
    /// namesrv prints once bound: no window in which two tests can pick the same port.
    fn start_with(extra: &[&str]) -> Namesrv {
        let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["namesrv", "--listen-port", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("petrel binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("namesrv prints its address");
        let port = line.trim().rsplit(':').next().expect("the line ends with the address");
        Namesrv { child, addr: format!("127.0.0.1:{port}") }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream
    }
}

impl Drop for Namesrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `int32 total | int32 (type << 24 | header length) | header | body`, total excluding itself.
fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&((u32::from(serialize_type) << 24) | header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

struct Reply {
    serialize_type: u8,
    header: serde_json::Value,
    body: Vec<u8>,
}

fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut prefix = [0u8; 8];
    stream.read_exact(&mut prefix).expect("a reply frame");
    let total = u32::from_be_bytes(prefix[..4].try_into().unwrap()) as usize;
    let word = u32::from_be_bytes(prefix[4..].try_into().unwrap());
    let header_len = (word & 0xFF_FFFF) as usize;
    assert!(total < 1 << 20 && header_len <= total - 4, "frame lengths {total} / {header_len}");
    let mut rest = vec![0u8; total - 4];
    stream.read_exact(&mut rest).unwrap();
    let header = serde_json::from_slice(&rest[..header_len]).expect("the reply header is JSON");
    Reply { serialize_type: (word >> 24) as u8, header, body: rest[header_len..].to_vec() }
}

fn route_request(topic: &str, opaque: i32, version: i32, flag: i32) -> Vec<u8> {
    let header = format!(
        r#"{{"code":105,"extFields":{{"topic":"{topic}"}},"flag":{flag},"language":"JAVA","opaque":{opaque},"serializeTypeCurrentRPC":"JSON","version":{version}}}"#
    );
    frame(0, header.as_bytes(), b"")
}

fn register(stream: &mut TcpStream) {
    let header = br#"{"code":103,"extFields":{"brokerAddr":"127.0.0.1:10911","brokerId":"0","brokerName":"broker-a","clusterName":"DefaultCluster","haServerAddr":"127.0.0.1:10912"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    let topic = |name: &str| {
        format!(
            r#""{name}":{{"attributes":{{}},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"{name}","topicSysFlag":0,"writeQueueNums":4}}"#
        )
    };
    let body = format!(
        r#"{{"filterServerList":[],"topicConfigSerializeWrapper":{{"dataVersion":{{"counter":1,"stateVersion":0,"timestamp":1}},"topicConfigTable":{{{},{}}}}}}}"#,
        topic("TopicTest"),
        topic("TBW102")
    );
    stream.write_all(&frame(0, header, body.as_bytes())).unwrap();
    let reply = read_reply(stream);
    assert_eq!(reply.header["code"], 0, "{:?}", reply.header);
    assert_eq!(reply.header["opaque"], 1);
}

#[test]
fn raw_client_gets_routes_and_errors() {
    let namesrv = Namesrv::start();
    let mut broker = namesrv.connect();
    register(&mut broker);
    let mut client = namesrv.connect();

    // An old client (version 63, as the C++ client 1.x sends) gets fastjson's unquoted keys.
    client.write_all(&route_request("TopicTest", 7, 63, 0)).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.serialize_type, 0);
    assert_eq!(reply.header["code"], 0);
    assert_eq!(reply.header["flag"], 1, "the response flag is set");
    assert_eq!(reply.header["opaque"], 7, "the request's opaque is echoed");
    let body = String::from_utf8(reply.body).unwrap();
    assert!(body.contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#), "{body}");
    assert!(body.contains(r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]"#), "{body}");

    // A 5.x client gets standard JSON, which any parser reads.
    client.write_all(&route_request("TopicTest", 8, 479, 0)).unwrap();
    let reply = read_reply(&mut client);
    let route: serde_json::Value = serde_json::from_slice(&reply.body).expect("standard JSON");
    assert_eq!(route["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");
    assert_eq!(route["brokerDatas"][0]["cluster"], "DefaultCluster");

    // An unknown topic: TOPIC_NOT_EXIST (17) with RocketMQ's remark.
    client.write_all(&route_request("Nope", 9, 479, 0)).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.header["code"], 17);
    assert_eq!(reply.header["opaque"], 9);
    let remark = reply.header["remark"].as_str().unwrap();
    assert!(
        remark.starts_with("No topic route info in name server for the topic: Nope"),
        "{remark}"
    );
    assert!(reply.body.is_empty());

    // The "system topics" (a dashboard's topic list asks): the cluster and its brokers, and
    // a broker to ask for its own, in fastjson's field order.
    let header = br#"{"code":304,"flag":0,"language":"JAVA","opaque":10,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    client.write_all(&frame(0, header, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(
        (reply.header["code"].as_i64(), reply.header["opaque"].as_i64()),
        (Some(0), Some(10))
    );
    let body = String::from_utf8(reply.body).unwrap();
    assert_eq!(
        body,
        r#"{"brokerAddr":"127.0.0.1:10911","topicList":["DefaultCluster","broker-a"]}"#
    );
}

#[test]
fn raw_client_edge_cases() {
    let namesrv = Namesrv::start();
    let mut client = namesrv.connect();

    // The reference's binary-header request for topic "T": answered (in JSON) with code 17.
    let binary = [
        0x00, 0x69, 0x00, 0x01, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x05, 0x74, 0x6f, 0x70, 0x69, 0x63, 0x00, 0x00,
        0x00, 0x01, 0x54,
    ];
    client.write_all(&frame(1, &binary, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.serialize_type, 0, "the server answers in its own serialize type");
    assert_eq!(
        (reply.header["code"].clone(), reply.header["opaque"].clone()),
        (17.into(), 1.into())
    );

    // An unknown request code: REQUEST_CODE_NOT_SUPPORTED (3).
    let unknown = br#"{"code":9999,"flag":0,"language":"JAVA","opaque":2,"version":479}"#;
    client.write_all(&frame(0, unknown, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.header["code"], 3);
    assert_eq!(reply.header["remark"], " request type 9999 not supported");

    // A missing required field names the field.
    let missing = br#"{"code":105,"flag":0,"language":"JAVA","opaque":3,"version":479}"#;
    client.write_all(&frame(0, missing, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.header["code"], 1);
    assert!(reply.header["remark"].as_str().unwrap().contains("`topic`"), "{:?}", reply.header);

    // A oneway request gets no reply: the next reply is the next request's.
    client.write_all(&route_request("TopicTest", 4, 479, 2)).unwrap();
    client.write_all(&route_request("TopicTest", 5, 479, 0)).unwrap();
    assert_eq!(read_reply(&mut client).header["opaque"], 5);

    // A malformed frame closes that connection only.
    client.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
    let mut byte = [0u8; 1];
    match client.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the connection should close, got {other:?}"),
    }
    let mut other = namesrv.connect();
    other.write_all(&route_request("Nope", 6, 479, 0)).unwrap();
    assert_eq!(read_reply(&mut other).header["code"], 17, "the server still serves others");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut namesrv = Namesrv::start();
    let status =
        Command::new("kill").args(["-TERM", &namesrv.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = namesrv.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "namesrv did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kv_config_persists_across_restart() {
    let dir = std::env::temp_dir().join(format!("petrel-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("namesrv.conf");
    let kv_path = dir.join("kvConfig.json");
    std::fs::write(
        &conf,
        format!("# RocketMQ property names\nkvConfigPath={}\n", kv_path.display()),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();

    let put = br#"{"code":100,"extFields":{"key":"TopicTest","namespace":"ORDER_TOPIC_CONFIG","value":"broker-a:4"},"flag":0,"language":"JAVA","opaque":1,"version":479}"#;
    let get = br#"{"code":101,"extFields":{"key":"TopicTest","namespace":"ORDER_TOPIC_CONFIG"},"flag":0,"language":"JAVA","opaque":2,"version":479}"#;
    {
        let namesrv = Namesrv::start_with(&["-c", conf]);
        let mut client = namesrv.connect();
        client.write_all(&frame(0, put, b"")).unwrap();
        assert_eq!(read_reply(&mut client).header["code"], 0);
    }
    let text = std::fs::read_to_string(&kv_path).unwrap();
    assert!(text.contains("broker-a:4"), "{text}");

    let namesrv = Namesrv::start_with(&["-c", conf]);
    let mut client = namesrv.connect();
    client.write_all(&frame(0, get, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.header["code"], 0);
    assert_eq!(reply.header["extFields"]["value"], "broker-a:4");

    let missing = br#"{"code":101,"extFields":{"key":"Nope","namespace":"ORDER_TOPIC_CONFIG"},"flag":0,"language":"JAVA","opaque":3,"version":479}"#;
    client.write_all(&frame(0, missing, b"")).unwrap();
    let reply = read_reply(&mut client);
    assert_eq!(reply.header["code"], 22);
    assert_eq!(reply.header["remark"], "No config item, Namespace: ORDER_TOPIC_CONFIG Key: Nope");
    let _ = std::fs::remove_dir_all(&dir);
}
