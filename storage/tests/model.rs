#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
//! Model-based test of the store under crashes and disk faults.
//!
//! Random appends, flushes, dispatches, checkpoints, crashes and clean restarts run against the
//! store on a `SimDisk` that tears unsynced writes, fails syncs and runs out of space, and
//! against a model: per queue, the list of messages appended. After every recovery:
//! - every message flushed before the crash is back, byte for byte;
//! - nothing comes back that was never appended: each queue reads as a prefix of its model;
//! - consume queue and commit log agree: each unit's record names that topic, queue and offset;
//! - queue offsets are contiguous from 0, and appends continue right after the last one.

use std::collections::BTreeMap;
use std::sync::Arc;

use petrel_core::record::{put_property, scan_record, tags_code, Checks, RecordInput, Scanned};
use petrel_storage::disk::{SimDisk, SimDiskFaults};
use petrel_storage::{FlushDiskType, GetStatus, ReadLimits, Store, StoreConfig, StoreError};
use proptest::prelude::*;

const TOPICS: [&str; 3] = ["TopicA", "TopicB", "%RETRY%group"];

#[derive(Debug, Clone)]
enum Op {
    Append { topic: usize, queue: i32, len: usize, tag: Option<u8> },
    Flush,
    Dispatch,
    Checkpoint,
    Crash,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..TOPICS.len(), 0..2i32, 0..1500usize, proptest::option::of(0..3u8))
            .prop_map(|(topic, queue, len, tag)| Op::Append { topic, queue, len, tag }),
        3 => Just(Op::Flush),
        3 => Just(Op::Dispatch),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    sync_flush: bool,
    faults: SimDiskFaults,
    /// Reads flip bits while the store recovers. Only then: the checks read through the same
    /// disk, and a consumer's read is not checked by the store (nor by RocketMQ).
    recovery_bitflip_ratio: f64,
}

fn setup() -> impl Strategy<Value = Setup> {
    let ratio = |r: f64| prop_oneof![Just(0.0), Just(r)];
    (any::<u64>(), any::<bool>(), 0..4usize, ratio(0.02), ratio(0.01), ratio(0.01)).prop_map(
        |(seed, sync_flush, torn, fsync, enospc, flips)| Setup {
            seed,
            sync_flush,
            faults: SimDiskFaults {
                torn_write_ratio: [0.0, 0.3, 0.7, 1.0][torn],
                fsync_fail_ratio: fsync,
                enospc_ratio: enospc,
                read_bitflip_ratio: 0.0,
            },
            recovery_bitflip_ratio: flips,
        },
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    body: Vec<u8>,
    tags: Option<String>,
    end_offset: u64,
}

type Model = BTreeMap<(usize, i32), Vec<Message>>;

struct Run {
    disk: SimDisk,
    faults: SimDiskFaults,
    recovery_bitflip_ratio: f64,
    config: StoreConfig,
    store: Option<Store>,
    model: Model,
    /// What the store said was flushed; messages ending at or below it must survive.
    flushed: u64,
    next_body: u64,
    now: i64,
}

impl Run {
    fn new(setup: &Setup) -> Run {
        let mut config = StoreConfig::new("/store");
        config.commit_log_file_bytes = 8 * 1024;
        config.cq_file_units = 16;
        config.message_bytes_max = 2048;
        config.flush_disk_type =
            if setup.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush };
        let disk = SimDisk::new(setup.seed, 1 << 30, setup.faults);
        let mut run = Run {
            disk,
            faults: setup.faults,
            recovery_bitflip_ratio: setup.recovery_bitflip_ratio,
            config,
            store: None,
            model: Model::new(),
            flushed: 0,
            next_body: 0,
            now: 1_000,
        };
        run.reopen();
        run
    }

    /// Opens the store, crashing the disk and trying again when recovery itself hits a fault.
    fn reopen(&mut self) {
        for _ in 0..50 {
            let read_bitflip_ratio = self.recovery_bitflip_ratio;
            self.disk.set_faults(SimDiskFaults { read_bitflip_ratio, ..self.faults });
            let opened = Store::open(Arc::new(self.disk.clone()), self.config.clone());
            self.disk.set_faults(self.faults);
            match opened {
                Ok((store, report)) => {
                    if std::env::var_os("PETREL_STORE_TRACE").is_some() {
                        eprintln!("recovered: {report:?}");
                    }
                    self.store = Some(store);
                    return;
                }
                Err(StoreError::Io { .. } | StoreError::SyncFailed { .. }) => self.disk.crash(),
                Err(error) => panic!("recovery refused the store: {error}"),
            }
        }
        panic!("recovery failed 50 times in a row");
    }

    fn apply(&mut self, op: &Op) {
        self.now += 7;
        if std::env::var_os("PETREL_STORE_TRACE").is_some() {
            if let Some(store) = &self.store {
                eprintln!(
                    "{op:?} written {} flushed {} dispatched {}",
                    store.written_offset(),
                    store.flushed_offset(),
                    store.dispatched_offset()
                );
            }
        }
        let Some(store) = self.store.as_ref() else { return };
        match op {
            Op::Append { topic, queue, len, tag } => {
                let body = format!("#{}#", self.next_body)
                    .into_bytes()
                    .into_iter()
                    .cycle()
                    .take(len + 4)
                    .collect::<Vec<u8>>();
                self.next_body += 1;
                let tags = tag.map(|t| format!("Tag{t}"));
                let mut props = Vec::new();
                if let Some(tags) = &tags {
                    put_property(&mut props, "TAGS", tags);
                }
                let input = RecordInput {
                    topic: TOPICS[*topic],
                    queue_id: *queue,
                    flag: 0,
                    sys_flag: 0,
                    born_timestamp: self.now,
                    born_host: "10.0.0.1:4000".parse().unwrap(),
                    store_host: "0.0.0.0:0".parse().unwrap(),
                    reconsume_times: 0,
                    prepared_transaction_offset: 0,
                    body: &body,
                    properties: &props,
                };
                if let Ok(appended) = store.append(&input, self.now) {
                    let queue = self.model.entry((*topic, *queue)).or_default();
                    assert_eq!(
                        appended.queue_offset as usize,
                        queue.len(),
                        "queue offsets continue"
                    );
                    queue.push(Message { body, tags, end_offset: appended.end_offset });
                }
            }
            Op::Flush => {
                if let Ok(flushed) = store.flush_log() {
                    self.flushed = flushed;
                }
            }
            Op::Dispatch => {
                if store.dispatch().is_ok() {
                    self.check_reads(false);
                }
            }
            Op::Checkpoint => {
                let _ = store.flush_queues();
            }
            Op::Crash => self.crash(),
            Op::Restart => {
                if store.shutdown().is_ok() {
                    self.flushed = store.written_offset();
                }
                self.store = None;
                self.reopen();
                self.check_reads(true);
            }
        }
    }

    fn crash(&mut self) {
        self.store = None;
        self.disk.crash();
        self.reopen();
        self.check_reads(true);
    }

    /// Reads every queue and compares it with the model. After a recovery the model is cut to
    /// what survived, after checking that nothing flushed was lost.
    fn check_reads(&mut self, recovered: bool) {
        let store = self.store.as_ref().unwrap();
        store.check_invariants();
        let confirm = store.confirm_offset();
        for (topic_index, topic) in TOPICS.iter().enumerate() {
            for queue_id in 0..2 {
                let got = read_queue(store, topic, queue_id);
                let model = self.model.entry((topic_index, queue_id)).or_default();
                assert!(
                    got.len() <= model.len(),
                    "{topic}/{queue_id}: {} read, {} appended",
                    got.len(),
                    model.len()
                );
                for (offset, (read, expected)) in got.iter().zip(model.iter()).enumerate() {
                    assert_eq!(
                        &read.0, &expected.body,
                        "{topic}/{queue_id} offset {offset}: a different body"
                    );
                    assert_eq!(
                        read.1,
                        expected.tags.as_deref().map_or(0, |t| tags_code(t.as_bytes())),
                        "tag code"
                    );
                    assert!(expected.end_offset <= confirm, "read beyond the confirm offset");
                }
                if recovered {
                    let flushed = model.iter().take_while(|m| m.end_offset <= self.flushed).count();
                    assert!(
                        got.len() >= flushed,
                        "{topic}/{queue_id}: {flushed} flushed, {} recovered",
                        got.len()
                    );
                    model.truncate(got.len());
                }
            }
        }
        if recovered {
            self.flushed = store.flushed_offset();
        }
    }
}

/// Every message of a queue from offset 0: (body, tag code), checking each record's identity.
fn read_queue(store: &Store, topic: &str, queue_id: i32) -> Vec<(Vec<u8>, i64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let got = store.get_messages(topic, queue_id, offset, ReadLimits::default(), &|_| true);
        if got.status != GetStatus::Found {
            assert!(
                matches!(
                    got.status,
                    GetStatus::NoMatchedLogicQueue
                        | GetStatus::NoMessageInQueue
                        | GetStatus::OffsetOverflowOne
                ),
                "{topic}/{queue_id} at {offset}: {:?}",
                got.status
            );
            return out;
        }
        for message in &got.messages {
            let checks = Checks { physical_offset: None, crc: true };
            let record = match scan_record(message, checks) {
                Scanned::Record(record) => record,
                other => panic!(
                    "{topic}/{queue_id} at {}: a message read fails its checks: {other:?}, {} bytes",
                    out.len(),
                    message.len()
                ),
            };
            assert_eq!(record.topic, topic.as_bytes(), "unit points at another topic's record");
            assert_eq!(record.queue_id, queue_id, "unit points at another queue's record");
            assert_eq!(record.queue_offset as usize, out.len(), "queue offsets are contiguous");
            let tag = record.property(b"TAGS").map_or(0, tags_code);
            out.push((record.body.to_vec(), tag));
        }
        offset = got.next_begin_offset;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PETREL_STORE_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PETREL_STORE_SEED").ok().and_then(|c| c.parse().ok()).unwrap_or(1),
        ),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_across_crashes(setup in setup(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut run = Run::new(&setup);
        for op in &ops {
            run.apply(op);
        }
        run.crash();
    }
}
