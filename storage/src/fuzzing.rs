//! The bodies of the store's fuzz targets, kept in the library so that `cargo test` replays the
//! checked-in corpus on stable Rust (`tests/tests/fuzz_corpus.rs`), and `cargo fuzz` explores
//! further (`fuzz/fuzz_targets/recover*.rs`, docs/fuzzing.md).
//!
//! - `fuzz_recover`: arbitrary bytes as a store directory (commit-log files, consume queues, a
//!   checkpoint page, the abort flag). Recovery must not panic, must never keep a record that
//!   fails its checks, must keep no unit pointing past the log's end, and applying its plan and
//!   planning again must find the same end.
//! - `fuzz_recover_ops`: arbitrary bytes as a run of the store's model (`crate::model`):
//!   appends, flushes, crashes with disk faults, restarts, each checked against the model.

use petrel_core::record::{scan_record, Checks, Scanned};

use crate::checkpoint::{Checkpoint, CHECKPOINT_BYTES};
use crate::config::CQ_UNIT_BYTES;
use crate::disk::SimDiskFaults;
use crate::model::{ModelRun, Op, Setup, TOPICS};
use crate::recovery::{plan, FileImage, QueueImage, RecoveryPlan, StoreImage, Unit};

/// Commit-log file size in `fuzz_recover` inputs: small, so inputs span several files.
pub const FUZZ_LOG_FILE_BYTES: usize = 4096;
/// Consume-queue file size in `fuzz_recover` inputs: ten units.
pub const FUZZ_CQ_FILE_BYTES: usize = 200;
const QUEUE_NAMES: [(&str, i32); 3] = [("TopicA", 0), ("TopicA", 1), ("TopicB", 0)];

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    /// A length-prefixed piece (big-endian u16), cut short at the end of the input.
    fn sized(&mut self) -> &'a [u8] {
        let len = u16::from_be_bytes([self.byte(), self.byte()]);
        self.take(usize::from(len))
    }
}

/// Splits `bytes` into files of `file_bytes`, the last padded with zeros.
fn files(bytes: &[u8], file_bytes: usize) -> Vec<Vec<u8>> {
    bytes
        .chunks(file_bytes)
        .map(|chunk| {
            let mut file = chunk.to_vec();
            file.resize(file_bytes, 0);
            file
        })
        .collect()
}

fn images(files: &[Vec<u8>], file_bytes: usize) -> Vec<FileImage<'_>> {
    let base = |i: usize| (i * file_bytes) as u64;
    files.iter().enumerate().map(|(i, bytes)| FileImage { base: base(i), bytes }).collect()
}

/// Layout of an input: `flags` (bit 0 abort, bits 1-2 queue count, bit 3 controller mode's
/// confirm from the checkpoint), 68 bytes of checkpoint page,
/// then length-prefixed commit-log bytes and one length-prefixed piece per queue.
pub fn fuzz_recover(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let mut page = input.take(68).to_vec();
    page.resize(CHECKPOINT_BYTES, 0);
    let log = files(input.sized(), FUZZ_LOG_FILE_BYTES);
    let queue_count = usize::from((flags >> 1) & 3).min(QUEUE_NAMES.len());
    let queues: Vec<Vec<Vec<u8>>> =
        (0..queue_count).map(|_| files(input.sized(), FUZZ_CQ_FILE_BYTES)).collect();
    let image = StoreImage {
        commit_log: images(&log, FUZZ_LOG_FILE_BYTES),
        queues: queues
            .iter()
            .zip(QUEUE_NAMES)
            .map(|(files, (topic, queue_id))| QueueImage {
                topic,
                queue_id,
                files: images(files, FUZZ_CQ_FILE_BYTES),
            })
            .collect(),
        checkpoint: Checkpoint::decode(&page),
        abort: flags & 1 == 1,
        check_crc: true,
        confirm_from_checkpoint: flags & 8 != 0,
    };
    let planned = plan(&image);
    check_plan(&image, &planned);
    check_replan(&image, &planned);
}

fn check_plan(image: &StoreImage<'_>, planned: &RecoveryPlan) {
    let log_end = image.commit_log.last().map_or(0, |f| f.base + f.bytes.len() as u64);
    assert!(
        planned.scan_from <= planned.redispatch_from,
        "redispatch before the scan: {planned:?}"
    );
    assert!(planned.redispatch_from <= planned.end, "redispatch past the end: {planned:?}");
    assert!(
        planned.redispatch_from <= planned.confirmed && planned.confirmed <= planned.end,
        "confirmed outside the redispatch range: {planned:?}"
    );
    if !image.confirm_from_checkpoint {
        assert_eq!(planned.confirmed, planned.end, "outside controller mode all is confirmed");
    }
    assert!(planned.end <= log_end, "end past the log: {planned:?}");
    assert_records_valid(image, planned.scan_from, planned.end);
    for (queue, keep) in image.queues.iter().zip(&planned.queue_keep_bytes) {
        let queue_bytes = queue.files.last().map_or(0, |f| f.base + f.bytes.len() as u64);
        assert!(keep.is_multiple_of(CQ_UNIT_BYTES) && *keep <= queue_bytes, "bad cut {keep}");
        let checked_from = queue.files.iter().rev().nth(2).map_or(0, |f| f.base);
        for at in (checked_from..*keep).step_by(CQ_UNIT_BYTES as usize) {
            let file = &queue.files[(at / FUZZ_CQ_FILE_BYTES as u64) as usize];
            let start = (at - file.base) as usize;
            let unit = Unit::decode(&file.bytes[start..start + CQ_UNIT_BYTES as usize]);
            assert!(unit.is_valid(), "kept an invalid unit at {at}");
            assert!(unit.is_filler() || unit.end() <= planned.end, "kept a unit past the end");
        }
    }
}

/// Every record in `[from, end)` passes every check, and they tile the range exactly.
fn assert_records_valid(image: &StoreImage<'_>, from: u64, end: u64) {
    if let Err(why) = records_valid(image, from, end) {
        panic!("recovery kept what it should not: {why}");
    }
}

fn records_valid(image: &StoreImage<'_>, from: u64, end: u64) -> Result<(), String> {
    let mut at = from;
    while at < end {
        let Some(file) =
            image.commit_log.iter().find(|f| f.base <= at && at < f.base + f.bytes.len() as u64)
        else {
            return Err(format!("{at} lies outside the log"));
        };
        let position = (at - file.base) as usize;
        let checks = Checks { physical_offset: Some(at as i64), crc: true };
        match scan_record(&file.bytes[position..], checks) {
            Scanned::Record(record) => at += record.bytes.len() as u64,
            Scanned::Blank => at = file.base + file.bytes.len() as u64,
            Scanned::Invalid(why) => return Err(format!("invalid record at {at}: {why:?}")),
        }
    }
    if at == end {
        Ok(())
    } else {
        Err(format!("records end at {at}, not at {end}"))
    }
}

/// Applying the plan (zeros past the end, queues cut) and planning again finds the same end.
fn check_replan(image: &StoreImage<'_>, planned: &RecoveryPlan) {
    let log: Vec<Vec<u8>> = image
        .commit_log
        .iter()
        .filter(|f| f.base < planned.end)
        .map(|f| {
            let mut bytes = f.bytes.to_vec();
            let keep = (planned.end - f.base).min(bytes.len() as u64) as usize;
            bytes[keep..].fill(0);
            bytes
        })
        .collect();
    let queues: Vec<Vec<Vec<u8>>> = image
        .queues
        .iter()
        .zip(&planned.queue_keep_bytes)
        .map(|(queue, keep)| {
            let kept = queue.files.iter().filter(|f| f.base < *keep || *keep == 0);
            kept.map(|f| {
                let mut bytes = f.bytes.to_vec();
                let cut = keep.saturating_sub(f.base).min(bytes.len() as u64) as usize;
                bytes[cut..].fill(0);
                bytes
            })
            .collect()
        })
        .collect();
    let again = StoreImage {
        commit_log: images(&log, FUZZ_LOG_FILE_BYTES),
        queues: image
            .queues
            .iter()
            .zip(&queues)
            .map(|(q, files)| QueueImage {
                topic: q.topic,
                queue_id: q.queue_id,
                files: images(files, FUZZ_CQ_FILE_BYTES),
            })
            .collect(),
        checkpoint: image.checkpoint,
        abort: image.abort,
        check_crc: true,
        confirm_from_checkpoint: image.confirm_from_checkpoint,
    };
    let replanned = plan(&again);
    // Recovery trusts what lies before its scan start (files flushed long ago, and consume-queue
    // files before the third-last). When that trusted part is intact, recovering the recovered
    // store finds the same end; when it is damaged, a second recovery may start elsewhere and
    // find the damage, so it may end earlier, but never later.
    if planned.synced_loss.is_none() && trusted_part_intact(image, planned) {
        assert_eq!(replanned.end, planned.end, "not idempotent: {planned:?} then {replanned:?}");
    } else {
        assert!(replanned.end <= planned.end, "a second recovery reached further");
    }
}

/// The log validates from its first file up to the plan's end, and every queue's kept units are
/// valid and in log order.
fn trusted_part_intact(image: &StoreImage<'_>, planned: &RecoveryPlan) -> bool {
    let first = image.commit_log.first().map_or(0, |f| f.base);
    let log_intact = records_valid(image, first, planned.end);
    let queues_intact = image.queues.iter().zip(&planned.queue_keep_bytes).all(|(queue, keep)| {
        let mut last_end = 0;
        (0..*keep).step_by(CQ_UNIT_BYTES as usize).all(|at| {
            let file = &queue.files[(at / FUZZ_CQ_FILE_BYTES as u64) as usize];
            let start = (at - file.base) as usize;
            let unit = Unit::decode(&file.bytes[start..start + CQ_UNIT_BYTES as usize]);
            let in_order = unit.is_filler() || (unit.offset as u64) >= last_end;
            if !unit.is_filler() {
                last_end = unit.end();
            }
            unit.is_valid() && in_order
        })
    });
    log_intact.is_ok() && queues_intact
}

/// Layout of an input: 8 bytes of seed, one byte of setup flags, then one or three bytes per
/// operation.
pub fn fuzz_recover_ops(data: &[u8]) {
    let mut input = Input(data);
    let mut seed = [0u8; 8];
    let given = input.take(8);
    seed[..given.len()].copy_from_slice(given);
    let flags = input.byte();
    let setup = Setup {
        seed: u64::from_be_bytes(seed),
        sync_flush: flags & 1 == 1,
        faults: SimDiskFaults {
            torn_write_ratio: [0.0, 0.3, 0.7, 1.0][usize::from((flags >> 1) & 3)],
            fsync_fail_ratio: if flags & 8 != 0 { 0.02 } else { 0.0 },
            enospc_ratio: if flags & 16 != 0 { 0.01 } else { 0.0 },
            read_bitflip_ratio: 0.0,
        },
        recovery_bitflip_ratio: if flags & 32 != 0 { 0.01 } else { 0.0 },
    };
    let mut run = ModelRun::new(&setup);
    for _ in 0..200 {
        if input.0.is_empty() {
            break;
        }
        let op = match input.byte() % 20 {
            0..=11 => {
                let target = input.byte();
                let size = input.byte();
                let tag = (target & 0x30 != 0).then_some(target >> 6);
                Op::Append {
                    topic: usize::from(target) % TOPICS.len(),
                    queue: i32::from((target >> 2) & 1),
                    len: usize::from(size) * 6,
                    tag,
                    count: if size % 4 == 3 { 3 } else { 1 },
                }
            }
            12..=14 => Op::Flush,
            15..=17 => Op::Dispatch,
            18 => Op::Checkpoint,
            _ => {
                if input.byte() & 1 == 0 {
                    Op::Crash
                } else {
                    Op::Restart
                }
            }
        };
        run.apply(&op);
    }
    run.crash();
}
