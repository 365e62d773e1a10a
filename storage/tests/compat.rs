#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
//! Store compatibility with RocketMQ, both ways, against `tests/store_compat/rocketmq_store.py`:
//! a reader and writer of RocketMQ's store written from RocketMQ's reference alone (see its
//! docstring), not from Petrel's code.
//! - A store directory as RocketMQ 5 writes it with default settings (1 GiB commit-log files,
//!   no record CRC property, RocketMQ's checkpoint) recovers in Petrel, after a clean and after
//!   an abnormal exit, and every message reads back.
//! - A store Petrel writes with default settings passes the independent reader's checks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use petrel_core::record::{put_property, scan_record, Checks, RecordInput, Scanned};
use petrel_storage::disk::FsDisk;
use petrel_storage::{Store, StoreConfig};
use serde_json::{json, Value};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/store_compat/rocketmq_store.py")
}

fn python(args: &[&str]) -> String {
    let output = Command::new("python3").arg(script()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "rocketmq_store.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const TOPICS: [&str; 3] = ["TopicTest", "Orders", "%RETRY%group"];

fn messages() -> Vec<Value> {
    (0..300)
        .map(|i| {
            let topic = TOPICS[i % 3];
            json!({
                "topic": topic,
                "queueId": i % 4,
                "body": format!("body {i} ").repeat(1 + i % 50),
                "tags": if i % 5 == 0 { Value::Null } else { json!(format!("Tag{}", i % 3)) },
                "keys": format!("key-{i}"),
                "bornTimestamp": 1_700_000_000_000i64 + i as i64,
                "storeTimestamp": 1_700_000_000_100i64 + i as i64,
            })
        })
        .collect()
}

fn read_all(store: &Store, topic: &str, queue_id: i32) -> Vec<(String, Option<String>)> {
    let messages = common::read_queue(store, topic, queue_id);
    messages
        .iter()
        .map(|message| {
            let checks = Checks { physical_offset: None, crc: true };
            let Scanned::Record(record) = scan_record(message, checks) else {
                panic!("{topic}/{queue_id}: a record fails its checks");
            };
            let tags = record.property(b"TAGS").map(|t| String::from_utf8_lossy(t).into_owned());
            (String::from_utf8_lossy(record.body).into_owned(), tags)
        })
        .collect()
}

fn expected(messages: &[Value], topic: &str, queue_id: i64) -> Vec<(String, Option<String>)> {
    messages
        .iter()
        .filter(|m| m["topic"] == topic && m["queueId"] == queue_id)
        .map(|m| (m["body"].as_str().unwrap().to_owned(), m["tags"].as_str().map(str::to_owned)))
        .collect()
}

fn recover_rocketmq_store(abort: bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let manifest = dir.path().join("manifest.json");
    let messages = messages();
    std::fs::write(&manifest, json!({ "messages": messages, "abort": abort }).to_string()).unwrap();
    python(&["write", root.to_str().unwrap(), manifest.to_str().unwrap()]);
    let (store, report) = Store::open(Arc::new(FsDisk), StoreConfig::new(&root)).unwrap();
    assert_eq!(report.plan.abnormal, abort);
    for topic in TOPICS {
        for queue_id in 0..4 {
            let want = expected(&messages, topic, i64::from(queue_id));
            assert_eq!(read_all(&store, topic, queue_id), want, "{topic}/{queue_id}");
        }
    }
    let found = store.query_by_key("Orders", "key-4", 4, 0, i64::MAX);
    assert_eq!(found.len(), usize::from(abort), "the index is rebuilt only after a crash");
}

#[test]
fn a_rocketmq_store_recovers_after_a_clean_exit() {
    recover_rocketmq_store(false);
}

#[test]
fn a_rocketmq_store_recovers_after_a_crash() {
    recover_rocketmq_store(true);
}

#[test]
fn an_independent_reader_reads_petrels_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (store, _) = Store::open(Arc::new(FsDisk), StoreConfig::new(&root)).unwrap();
    let messages = messages();
    for message in &messages {
        let mut properties = Vec::new();
        if let Some(tags) = message["tags"].as_str() {
            put_property(&mut properties, "TAGS", tags);
        }
        put_property(&mut properties, "KEYS", message["keys"].as_str().unwrap());
        let input = RecordInput {
            topic: message["topic"].as_str().unwrap(),
            queue_id: message["queueId"].as_i64().unwrap() as i32,
            flag: 0,
            sys_flag: 0,
            born_timestamp: message["bornTimestamp"].as_i64().unwrap(),
            born_host: "127.0.0.1:50000".parse().unwrap(),
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: message["body"].as_str().unwrap().as_bytes(),
            properties: &properties,
        };
        store.append(&input, message["storeTimestamp"].as_i64().unwrap(), 0).unwrap();
    }
    let end = store.close().unwrap();
    store.confirm(end);
    store.shutdown().unwrap();
    drop(store);
    let read: Value = serde_json::from_str(&python(&["read", root.to_str().unwrap()])).unwrap();
    assert_eq!(read["abort"], false, "a clean shutdown removes abort");
    for topic in TOPICS {
        for queue_id in 0..4i64 {
            let queue = read["queues"][format!("{topic}/{queue_id}")].as_array().unwrap();
            let got: Vec<(String, Option<String>)> = queue
                .iter()
                .map(|m| {
                    (m["body"].as_str().unwrap().to_owned(), m["tags"].as_str().map(str::to_owned))
                })
                .collect();
            assert_eq!(got, expected(&messages, topic, queue_id), "{topic}/{queue_id}");
            assert!(queue.iter().all(|m| m["properties"]["__CRC32#"].is_string()));
        }
    }
    let last = messages.last().unwrap()["storeTimestamp"].as_i64().unwrap();
    assert_eq!(read["checkpoint"]["physicMsgTimestamp"], last);
}
