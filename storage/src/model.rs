//! The store's reference model and the checks run against it, shared by the model-based
//! property test (`tests/model.rs`) and the `recover_ops` fuzz target.
//!
//! Appends, flushes, dispatches, checkpoints, crashes and clean restarts run against the store
//! on a `SimDisk` that tears unsynced writes, fails syncs and runs out of space, and against a
//! model: per queue, the list of messages appended. After every recovery:
//! - every message flushed before the crash is back, byte for byte;
//! - nothing comes back that was never appended: each queue reads as a prefix of its model;
//! - consume queue and commit log agree: each unit's record names that topic, queue and offset;
//! - queue offsets are contiguous from 0, and appends continue right after the last one.
//!
//! A broken promise panics with what broke; that is the point of this module.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use petrel_core::confirm::{ConfirmAction, ConfirmEvent, ConfirmMachine};
use petrel_core::record::{put_property, scan_record, tags_code, Checks, RecordInput, Scanned};

use crate::disk::{SimDisk, SimDiskFaults};
use crate::{FlushDiskType, GetStatus, ReadLimits, Store, StoreConfig, StoreError};

/// The topics appends go to; one needs a V1 record, all fit the topic rule.
pub const TOPICS: [&str; 3] = ["TopicA", "TopicB", "%RETRY%group"];

/// One step of a run.
#[derive(Debug, Clone)]
pub enum Op {
    /// `count` messages of `len` bytes in one append (a batch when more than one).
    Append {
        topic: usize,
        queue: i32,
        len: usize,
        tag: Option<u8>,
        count: usize,
    },
    Flush,
    Dispatch,
    Checkpoint,
    Crash,
    Restart,
}

/// How the run's store and disk are set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    pub sync_flush: bool,
    pub faults: SimDiskFaults,
    /// Reads flip bits while the store recovers. Only then: the checks read through the same
    /// disk, and a consumer's read is not checked by the store (nor by RocketMQ).
    pub recovery_bitflip_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    body: Vec<u8>,
    tags: Option<String>,
    end_offset: u64,
}

type Model = BTreeMap<(usize, i32), Vec<Message>>;

/// How many crash-and-retry rounds a recovery gets before the run fails as a livelock.
const RECOVERY_ATTEMPTS_MAX: usize = 1000;

/// A store under test beside its model.
pub struct ModelRun {
    disk: SimDisk,
    faults: SimDiskFaults,
    recovery_bitflip_ratio: f64,
    config: StoreConfig,
    store: Option<Store>,
    /// The confirm machine the broker's shell would run beside the store: it alone moves the
    /// store's confirm offset.
    confirm: ConfirmMachine,
    model: Model,
    /// What the store said was flushed; messages ending at or below it must survive.
    flushed: u64,
    next_body: u64,
    now: i64,
}

impl ModelRun {
    /// A fresh store on a fresh simulated disk, set up as `setup` says.
    pub fn new(setup: &Setup) -> ModelRun {
        let mut config = StoreConfig::new("/store");
        config.commit_log_file_bytes = 8 * 1024;
        config.cq_file_units = 16;
        config.max_hash_slots = 16;
        config.max_index_entries = 64;
        config.message_bytes_max = 2048;
        config.flush_disk_type =
            if setup.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush };
        let disk = SimDisk::new(setup.seed, 1 << 30, setup.faults);
        let confirm = ConfirmMachine::new(config.confirm_config(), 0, 0, 0);
        let mut run = ModelRun {
            disk,
            faults: setup.faults,
            recovery_bitflip_ratio: setup.recovery_bitflip_ratio,
            config,
            store: None,
            confirm,
            model: Model::new(),
            flushed: 0,
            next_body: 0,
            now: 1_000,
        };
        run.reopen();
        run
    }

    /// Opens the store, crashing the disk and trying again when recovery itself hits a fault.
    /// Injected write failures are frequent here (1% of writes), and each failed abnormal
    /// recovery drops the index file the previous attempt was rebuilding, so re-indexing a long
    /// log can take many attempts; the bound only turns a livelock into a failure.
    fn reopen(&mut self) {
        for _ in 0..RECOVERY_ATTEMPTS_MAX {
            let read_bitflip_ratio = self.recovery_bitflip_ratio;
            self.disk.set_faults(SimDiskFaults { read_bitflip_ratio, ..self.faults });
            let opened = Store::open(Arc::new(self.disk.clone()), self.config.clone());
            self.disk.set_faults(self.faults);
            match opened {
                Ok((store, report)) => {
                    tracing::debug!(?report, "recovered");
                    let config = self.config.confirm_config();
                    let now = self.now as u64;
                    self.confirm = ConfirmMachine::new(config, store.written_offset(), 0, now);
                    self.store = Some(store);
                    return;
                }
                Err(StoreError::Io { .. } | StoreError::SyncFailed { .. }) => self.disk.crash(),
                Err(error) => panic!("recovery refused the store: {error}"),
            }
        }
        panic!("recovery failed {RECOVERY_ATTEMPTS_MAX} times in a row");
    }

    /// Hands the confirm machine `event` and carries out its confirmations (a persist it asks
    /// for is left to the run's own Flush steps).
    fn drive(&mut self, event: ConfirmEvent) {
        self.confirm.handle(self.now as u64, event);
        self.confirm.check_invariants();
        let store = self.store.as_ref().expect("driven while open");
        while let Some(action) = self.confirm.poll_action() {
            if let ConfirmAction::Confirm { up_to } = action {
                store.confirm(up_to);
            }
        }
    }

    /// `count` messages of `len` bytes to one queue, in one append.
    fn append(&mut self, topic: usize, queue: i32, len: usize, tag: Option<u8>, count: usize) {
        let store = self.store.as_ref().expect("appends run on an open store");
        let tags = tag.map(|t| format!("Tag{t}"));
        let mut messages = Vec::new();
        for _ in 0..count.max(1) {
            let body = format!("#{}#", self.next_body)
                .into_bytes()
                .into_iter()
                .cycle()
                .take(len + 4)
                .collect::<Vec<u8>>();
            let mut props = Vec::new();
            if let Some(tags) = &tags {
                put_property(&mut props, "TAGS", tags);
            }
            put_property(&mut props, "KEYS", format!("k{} shared", self.next_body));
            self.next_body += 1;
            messages.push((body, props));
        }
        let inputs: Vec<RecordInput<'_>> = messages
            .iter()
            .map(|(body, props)| RecordInput {
                topic: TOPICS[topic],
                queue_id: queue,
                flag: 0,
                sys_flag: 0,
                born_timestamp: self.now,
                born_host: SocketAddr::from(([10, 0, 0, 1], 4000)),
                store_host: SocketAddr::from(([0, 0, 0, 0], 0)),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body,
                properties: props,
            })
            .collect();
        let mut starts = Vec::new();
        let appended = store.append_batch(&inputs, self.now, 0, &mut |at, _| starts.push(at));
        if let Ok(appended) = appended {
            let ends = starts.iter().skip(1).copied().chain([appended.end_offset]);
            let queue = self.model.entry((topic, queue)).or_default();
            assert_eq!(appended.queue_offset as usize, queue.len(), "queue offsets continue");
            for ((body, _), end_offset) in messages.into_iter().zip(ends) {
                queue.push(Message { body, tags: tags.clone(), end_offset });
            }
            let end = appended.end_offset;
            self.drive(ConfirmEvent::Appended { end, epoch: appended.epoch });
        }
    }

    /// Runs one operation, checking reads after each dispatch and each recovery.
    pub fn apply(&mut self, op: &Op) {
        self.now += 7;
        if let Some(store) = &self.store {
            let (written, flushed) = (store.written_offset(), store.flushed_offset());
            tracing::debug!(?op, written, flushed, dispatched = store.dispatched_offset(), "apply");
        }
        let Some(store) = self.store.as_ref() else { return };
        match op {
            Op::Append { topic, queue, len, tag, count } => {
                self.append(*topic, *queue, *len, *tag, *count);
            }
            Op::Flush => {
                if let Ok(flushed) = store.flush_log() {
                    self.flushed = flushed;
                    self.drive(ConfirmEvent::Persisted { offset: flushed });
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
                if let Ok(end) = store.close() {
                    self.drive(ConfirmEvent::Persisted { offset: end });
                }
                let store = self.store.as_ref().expect("still open");
                if store.shutdown().is_ok() {
                    self.flushed = store.written_offset();
                }
                self.store = None;
                self.reopen();
                self.check_reads(true);
            }
        }
    }

    /// Power loss, recovery, and the checks after it.
    pub fn crash(&mut self) {
        self.store = None;
        self.disk.crash();
        self.reopen();
        self.check_reads(true);
    }

    /// Reads every queue and compares it with the model. After a recovery the model is cut to
    /// what survived, after checking that nothing flushed was lost.
    fn check_reads(&mut self, recovered: bool) {
        let store = self.store.as_ref().expect("checks run on an open store");
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
                for (read, _) in &got {
                    check_index(store, topic, read);
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

/// The index finds a dispatched message by its own key, once.
fn check_index(store: &Store, topic: &str, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let number = text.split('#').nth(1).expect("bodies start with #number#");
    let found = store.query_by_key(topic, &format!("k{number}"), 8, 0, i64::MAX);
    assert_eq!(found.len(), 1, "{topic}: key k{number} found {} times", found.len());
    let checks = Checks { physical_offset: None, crc: true };
    let Scanned::Record(record) = scan_record(&found[0], checks) else {
        panic!("the index led to an invalid record");
    };
    assert_eq!(record.body, body, "the index led to another message");
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
