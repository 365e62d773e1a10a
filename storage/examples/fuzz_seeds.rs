//! Writes seed inputs for the `recover` and `recover_ops` fuzz targets: real stores, made by the
//! store itself on a simulated disk, in the layout `petrel_storage::fuzzing` reads. A fuzzer that
//! starts from valid stores reaches recovery's deep branches far sooner than one starting from
//! nothing. Run: `cargo run -p petrel-storage --example fuzz_seeds -- fuzz/corpus`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petrel_core::record::{put_property, RecordInput};
use petrel_storage::checkpoint::Checkpoint;
use petrel_storage::disk::{Disk, SimDisk, SimDiskFaults};
use petrel_storage::fuzzing::{FUZZ_CQ_FILE_BYTES, FUZZ_LOG_FILE_BYTES};
use petrel_storage::{FlushDiskType, Store, StoreConfig, StoreError};

const QUEUES: [(&str, i32); 3] = [("TopicA", 0), ("TopicA", 1), ("TopicB", 0)];

struct Scenario {
    name: &'static str,
    messages: usize,
    flush_every: usize,
    shutdown: bool,
    torn: f64,
    sync_flush: bool,
    strip_extension: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let scenarios = [
        Scenario {
            name: "clean",
            messages: 40,
            flush_every: 5,
            shutdown: true,
            torn: 0.0,
            sync_flush: true,
            strip_extension: false,
        },
        Scenario {
            name: "crash-torn",
            messages: 60,
            flush_every: 7,
            shutdown: false,
            torn: 1.0,
            sync_flush: true,
            strip_extension: false,
        },
        Scenario {
            name: "crash-async",
            messages: 60,
            flush_every: 11,
            shutdown: false,
            torn: 0.5,
            sync_flush: false,
            strip_extension: false,
        },
        Scenario {
            name: "rocketmq-checkpoint",
            messages: 50,
            flush_every: 3,
            shutdown: false,
            torn: 0.3,
            sync_flush: true,
            strip_extension: true,
        },
        Scenario {
            name: "rocketmq-clean",
            messages: 30,
            flush_every: 4,
            shutdown: true,
            torn: 0.0,
            sync_flush: true,
            strip_extension: true,
        },
    ];
    std::fs::create_dir_all(out.join("recover"))?;
    std::fs::create_dir_all(out.join("recover_ops"))?;
    for (seed, scenario) in scenarios.iter().enumerate() {
        let mut input = store_input(seed as u64, scenario)?;
        std::fs::write(out.join("recover").join(format!("seed-{}", scenario.name)), &input)?;
        // The same store recovered in controller mode (flag bit 3).
        input[0] |= 8;
        let name = format!("seed-{}-controller-mode", scenario.name);
        std::fs::write(out.join("recover").join(name), input)?;
    }
    for (seed, flags) in
        [(1u64, 0b000001u8), (2, 0b000110), (3, 0b001111), (4, 0b110000), (5, 0b100111)]
    {
        let mut input = seed.to_be_bytes().to_vec();
        input.push(flags);
        for i in 0..60u8 {
            input.extend_from_slice(&match i % 9 {
                0..=4 => vec![i % 12, i.wrapping_mul(37), i.wrapping_mul(11)],
                5 => vec![12],
                6 => vec![15],
                7 => vec![18],
                _ => vec![19, i],
            });
        }
        std::fs::write(out.join("recover_ops").join(format!("seed-{seed}")), input)?;
    }
    Ok(())
}

fn store_input(seed: u64, scenario: &Scenario) -> Result<Vec<u8>, StoreError> {
    let faults = SimDiskFaults { torn_write_ratio: scenario.torn, ..SimDiskFaults::default() };
    let disk = SimDisk::new(seed, 1 << 30, faults);
    let root = Path::new("/store");
    let mut config = StoreConfig::new(root);
    config.commit_log_file_bytes = FUZZ_LOG_FILE_BYTES as u64;
    config.cq_file_units = (FUZZ_CQ_FILE_BYTES / 20) as u64;
    config.max_hash_slots = 16;
    config.max_index_entries = 64;
    config.message_bytes_max = 1024;
    config.flush_disk_type =
        if scenario.sync_flush { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush };
    let (store, _) = Store::open(Arc::new(disk.clone()), config)?;
    for i in 0..scenario.messages {
        let (topic, queue_id) = QUEUES[i % QUEUES.len()];
        let body = vec![b'a' + (i % 26) as u8; 10 + (i * 37) % 300];
        let mut properties = Vec::new();
        put_property(&mut properties, "TAGS", format!("Tag{}", i % 3));
        put_property(&mut properties, "KEYS", format!("key-{i}"));
        let input = RecordInput {
            topic,
            queue_id,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000 + i as i64,
            born_host: SocketAddr::from(([10, 0, 0, 1], 4000)),
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &properties,
        };
        store.append(&input, 1_700_000_000_000 + i as i64, 0)?;
        if i % scenario.flush_every == 0 {
            let flushed = store.flush_log()?;
            store.confirm(flushed);
            store.dispatch()?;
            store.flush_queues()?;
        }
    }
    if scenario.shutdown {
        let end = store.close()?;
        store.confirm(end);
        store.shutdown()?;
    }
    drop(store);
    if !scenario.shutdown {
        disk.crash();
    }
    Ok(serialize(&disk, root, scenario.strip_extension))
}

/// The layout `fuzz_recover` reads: flags, 68 bytes of checkpoint, log, queues.
fn serialize(disk: &SimDisk, root: &Path, strip_extension: bool) -> Vec<u8> {
    let abort = disk.exists(&root.join("abort"));
    let mut out = vec![u8::from(abort) | (QUEUES.len() as u8) << 1];
    let mut page = disk.image(&root.join("checkpoint")).unwrap_or_default();
    page.resize(4096, 0);
    if strip_extension {
        let checkpoint = Checkpoint::decode(&page);
        let rocketmq = Checkpoint {
            commit_log_flushed_offset: None,
            dispatched_flushed_offset: None,
            ..checkpoint
        };
        page = rocketmq.encode().to_vec();
    }
    out.extend_from_slice(&page[..68]);
    let log = concatenate(disk, &root.join("commitlog"), FUZZ_LOG_FILE_BYTES);
    push_sized(&mut out, &log);
    for (topic, queue_id) in QUEUES {
        let dir = root.join("consumequeue").join(topic).join(queue_id.to_string());
        push_sized(&mut out, &concatenate(disk, &dir, FUZZ_CQ_FILE_BYTES));
    }
    out
}

fn concatenate(disk: &SimDisk, dir: &Path, file_bytes: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in disk.list(dir).unwrap_or_default() {
        let mut image = disk.image(&dir.join(&name)).unwrap_or_default();
        image.resize(file_bytes, 0);
        bytes.extend_from_slice(&image);
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes.truncate(u16::MAX as usize);
    bytes
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}
