//! Recovery as a pure function: file images in, a plan out (`docs/storage-format.md` §11).
//!
//! The shell reads the checkpoint, the abort flag and every file of the commit log and consume
//! queues as byte slices (zero-copy maps on a real disk), calls [`plan`], and applies the
//! returned [`RecoveryPlan`]: zero the commit log past `end`, cut each consume queue, re-dispatch
//! the records in `[redispatch_from, confirmed)` (`confirmed` is `end` but in controller mode). Nothing here reads a file, a clock or a global, so the
//! same function is what `fuzz/` feeds with arbitrary bytes.

use std::collections::BTreeMap;

use petrel_core::record::{scan_record, Checks, Record, Scanned, BLANK_BYTES_MIN};

use crate::checkpoint::Checkpoint;
use crate::config::CQ_UNIT_BYTES;

/// One file of a sequence, as bytes.
#[derive(Debug, Clone, Copy)]
pub struct FileImage<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

/// The files of one consume queue.
#[derive(Debug, Clone)]
pub struct QueueImage<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub files: Vec<FileImage<'a>>,
}

/// Everything recovery looks at.
#[derive(Debug, Clone)]
pub struct StoreImage<'a> {
    /// Commit-log files in offset order, all of one size.
    pub commit_log: Vec<FileImage<'a>>,
    pub queues: Vec<QueueImage<'a>>,
    pub checkpoint: Checkpoint,
    /// The `abort` file exists: the last run did not shut down cleanly.
    pub abort: bool,
    /// `checkCRCOnRecover`.
    pub check_crc: bool,
    /// Controller mode: confirm again only what was confirmed before (see
    /// [`RecoveryPlan::confirmed`]), not the whole recovered log.
    pub confirm_from_checkpoint: bool,
}

/// What the shell must do to bring the files back to a consistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub abnormal: bool,
    /// The commit-log file the scan started at; records before it are trusted as they are.
    pub scan_from: u64,
    /// The end of the valid commit log: the next record goes here. Bytes past it are zeroed and
    /// files starting at or after it (other than the one holding it) are removed.
    pub end: u64,
    /// Records in `[redispatch_from, confirmed)` are dispatched again, skipping units a queue
    /// has.
    pub redispatch_from: u64,
    /// Consumers may see the records below this at once: the whole recovered log (`end`),
    /// or in controller mode the last record boundary at or below the most that was
    /// confirmed before (the checkpoint's `confirmPhyOffset`, or what the consume queues
    /// hold: only confirmed records are dispatched). The records past it stay in the log,
    /// their queue offsets taken, until the confirm machine confirms them (RocketMQ #7689
    /// lost them: it recovered only up to the confirm offset, and new writes reused their
    /// queue offsets).
    pub confirmed: u64,
    /// Per queue of the image (same order): the byte length of the consume queue to keep.
    pub queue_keep_bytes: Vec<u64>,
    /// A queue misses units the checkpoint promised: every queue is rebuilt from the log.
    pub rebuild_queues: bool,
    /// The scan stopped below the offset the checkpoint says was flushed: synced data failed
    /// validation (a damaged disk, or a read error the shell should retry).
    pub synced_loss: Option<SyncedLoss>,
    /// The newest store timestamp seen, so the store's clock never runs backwards.
    pub store_timestamp_max: i64,
}

/// Where flushed data turned out invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedLoss {
    pub offset: u64,
    pub flushed: u64,
}

/// A consume-queue unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl Unit {
    /// RocketMQ's placeholder for units before a queue's first real one.
    pub const FILLER: Unit = Unit { offset: 0, size: i32::MAX, tags_code: 0 };

    pub fn decode(bytes: &[u8]) -> Unit {
        let mut unit = [0u8; CQ_UNIT_BYTES as usize];
        let n = bytes.len().min(unit.len());
        unit[..n].copy_from_slice(&bytes[..n]);
        Unit {
            offset: i64::from_be_bytes(array(&unit[0..8])),
            size: i32::from_be_bytes(array(&unit[8..12])),
            tags_code: i64::from_be_bytes(array(&unit[12..20])),
        }
    }

    pub fn encode(&self) -> [u8; CQ_UNIT_BYTES as usize] {
        let mut out = [0u8; CQ_UNIT_BYTES as usize];
        out[0..8].copy_from_slice(&self.offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size.to_be_bytes());
        out[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        out
    }

    /// RocketMQ's rule for where a queue's valid units stop.
    pub fn is_valid(&self) -> bool {
        self.offset >= 0 && self.size > 0
    }

    pub fn is_filler(&self) -> bool {
        *self == Unit::FILLER
    }

    /// The first byte after the record, for a real unit; saturating, since units read from a
    /// damaged file can hold anything.
    pub fn end(&self) -> u64 {
        (self.offset as u64).saturating_add(self.size.max(0) as u64)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Whether a record gets a consume-queue unit: transactional half and rollback messages do not.
pub fn is_dispatched(record: &Record<'_>) -> bool {
    petrel_core::record::sys_flag::is_dispatched(record.sys_flag)
}

/// The valid prefix of a consume queue: its byte length, and the end of the last real unit.
struct QueueScan {
    valid_bytes: u64,
    last_end: Option<u64>,
}

/// Scans a queue from its third-last file (as RocketMQ; older files are trusted) and stops at
/// the first unit that is invalid or does not follow the previous one in the log.
fn scan_queue(queue: &QueueImage<'_>) -> QueueScan {
    let start = queue.files.len().saturating_sub(3);
    let mut valid_bytes = queue.files.get(start).map_or(0, |f| f.base);
    let mut last_end: Option<u64> = None;
    for file in &queue.files[start..] {
        for chunk in file.bytes.chunks_exact(CQ_UNIT_BYTES as usize) {
            let unit = Unit::decode(chunk);
            if !unit.is_valid() {
                return QueueScan { valid_bytes, last_end };
            }
            if !unit.is_filler() {
                if last_end.is_some_and(|end| (unit.offset as u64) < end) {
                    return QueueScan { valid_bytes, last_end };
                }
                last_end = Some(unit.end());
            }
            valid_bytes += CQ_UNIT_BYTES;
        }
        if !(file.bytes.len() as u64).is_multiple_of(CQ_UNIT_BYTES) {
            break;
        }
    }
    QueueScan { valid_bytes, last_end }
}

/// How many bytes of the queue to keep so that no unit points past `end`: everything after the
/// last valid real unit that ends within the log goes, trailing fillers and invalid units
/// included.
fn cut_queue(queue: &QueueImage<'_>, valid_bytes: u64, end: u64) -> u64 {
    let mut keep = valid_bytes;
    while keep > 0 {
        let at = keep - CQ_UNIT_BYTES;
        let Some(unit) = unit_at(queue, at) else { break };
        // Files before the scanned ones are trusted, but a crash can leave them all zeros when
        // their units were never synced: an invalid unit is cut like one past the end.
        if unit.is_valid() && !unit.is_filler() && unit.end() <= end {
            break;
        }
        keep = at;
    }
    keep
}

fn unit_at(queue: &QueueImage<'_>, at: u64) -> Option<Unit> {
    let file = queue.files.iter().rev().find(|f| f.base <= at)?;
    let start = usize::try_from(at - file.base).ok()?;
    let bytes = file.bytes.get(start..start + CQ_UNIT_BYTES as usize)?;
    Some(Unit::decode(bytes))
}

/// Computes the recovery plan for `image` (see the module doc).
pub fn plan(image: &StoreImage<'_>) -> RecoveryPlan {
    let scans: Vec<QueueScan> = image.queues.iter().map(scan_queue).collect();
    let queue_end_max = scans.iter().filter_map(|s| s.last_end).max().unwrap_or(0);
    let (scan_from, redispatch_from) = choose_start(image, queue_end_max);
    let confirm_want = match image.confirm_from_checkpoint {
        true => u64::try_from(image.checkpoint.confirm_phy_offset)
            .unwrap_or(0)
            .max(queue_end_max)
            .max(redispatch_from),
        false => u64::MAX,
    };
    let scanned = scan_log(image, scan_from, redispatch_from, confirm_want);
    // A dispatch point that is not a record boundary (a damaged checkpoint or queue) cannot be
    // dispatched from; the start of the scanned file always is one.
    let redispatch_from = if scanned.boundary_seen { redispatch_from } else { scan_from };
    let loss = synced_loss(image, scanned.end);
    let redispatch_from = redispatch_from.min(scanned.end);
    let queue_keep_bytes: Vec<u64> = image
        .queues
        .iter()
        .zip(&scans)
        .map(|(queue, scan)| cut_queue(queue, scan.valid_bytes, scanned.end))
        .collect();
    let mut plan = RecoveryPlan {
        abnormal: image.abort,
        scan_from,
        end: scanned.end,
        redispatch_from,
        confirmed: scanned.confirmed.max(redispatch_from),
        queue_keep_bytes,
        rebuild_queues: false,
        synced_loss: loss,
        store_timestamp_max: scanned.store_timestamp_max,
    };
    if has_gap(image, &plan) {
        // Rebuilding reads the whole log, so the whole log is validated first.
        let first = image.commit_log.first().map_or(0, |f| f.base);
        let scanned = scan_log(image, first, first, confirm_want);
        plan.rebuild_queues = true;
        plan.scan_from = first;
        plan.redispatch_from = first;
        plan.confirmed = scanned.confirmed;
        plan.end = scanned.end;
        plan.store_timestamp_max = scanned.store_timestamp_max;
        plan.synced_loss = synced_loss(image, scanned.end);
        plan.queue_keep_bytes.iter_mut().for_each(|keep| *keep = 0);
    }
    plan
}

/// The loss of flushed data, when the log ends below what the checkpoint says was flushed.
fn synced_loss(image: &StoreImage<'_>, end: u64) -> Option<SyncedLoss> {
    let flushed = image.checkpoint.commit_log_flushed_offset?;
    (end < flushed).then_some(SyncedLoss { offset: end, flushed })
}

/// Where to start scanning the log, and from where to dispatch again.
fn choose_start(image: &StoreImage<'_>, queue_end_max: u64) -> (u64, u64) {
    let log = &image.commit_log;
    let Some(first) = log.first() else { return (0, 0) };
    let file_of =
        |offset: u64| log.iter().rev().find(|f| f.base <= offset).map_or(first.base, |f| f.base);
    let checkpoint = &image.checkpoint;
    if let (Some(flushed), Some(dispatched)) =
        (checkpoint.commit_log_flushed_offset, checkpoint.dispatched_flushed_offset)
    {
        // The log is trusted only up to what was flushed; under ASYNC_FLUSH the queues can be
        // durable further than the log they point into.
        return (file_of(flushed.min(dispatched)), dispatched);
    }
    if !image.abort {
        // RocketMQ's normal recovery: the consume queues were flushed at shutdown.
        return (file_of(queue_end_max), queue_end_max);
    }
    // RocketMQ's abnormal recovery: the newest file stored entirely after the checkpoint's
    // time cannot be trusted; start at the one before it.
    let min_timestamp = image.checkpoint.min_timestamp();
    let chosen = log
        .iter()
        .rev()
        .find(|file| match first_record(file, image.check_crc) {
            Some(record) => record.store_timestamp != 0 && record.store_timestamp <= min_timestamp,
            None => false,
        })
        .map_or(first.base, |f| f.base);
    (chosen, chosen)
}

fn first_record<'a>(file: &FileImage<'a>, crc: bool) -> Option<Record<'a>> {
    let checks = Checks { physical_offset: Some(file.base as i64), crc };
    match scan_record(file.bytes, checks) {
        Scanned::Record(record) => Some(record),
        _ => None,
    }
}

struct LogScan {
    end: u64,
    store_timestamp_max: i64,
    /// The scan passed a record boundary at the offset it was asked about.
    boundary_seen: bool,
    /// The last record boundary at or below the confirm offset it was asked about (`end` at
    /// most; the scan's start at least).
    confirmed: u64,
}

impl LogScan {
    /// The scan is at a record boundary, `at`.
    fn boundary(&mut self, at: u64, boundary: u64, confirm_want: u64) {
        self.boundary_seen |= at == boundary;
        if at <= confirm_want {
            self.confirmed = at;
        }
    }
}

/// Validates records forward from the file at `scan_from`; the end is the first invalid one.
fn scan_log(image: &StoreImage<'_>, scan_from: u64, boundary: u64, confirm_want: u64) -> LogScan {
    let mut scan = LogScan {
        end: scan_from,
        store_timestamp_max: 0,
        boundary_seen: boundary == scan_from,
        confirmed: scan_from,
    };
    let files = image.commit_log.iter().skip_while(|f| f.base < scan_from);
    let mut expected_base = scan_from;
    for file in files {
        if file.base != expected_base {
            break;
        }
        let mut at = 0usize;
        loop {
            let checks = Checks {
                physical_offset: Some((file.base + at as u64) as i64),
                crc: image.check_crc,
            };
            match scan_record(&file.bytes[at..], checks) {
                // The writer always leaves room for a blank after a record.
                Scanned::Record(record)
                    if at + record.bytes.len() + BLANK_BYTES_MIN > file.bytes.len() =>
                {
                    return scan;
                }
                Scanned::Record(record) => {
                    at += record.bytes.len();
                    scan.end = file.base + at as u64;
                    scan.boundary(scan.end, boundary, confirm_want);
                    scan.store_timestamp_max = scan.store_timestamp_max.max(record.store_timestamp);
                }
                Scanned::Blank => {
                    scan.boundary(file.base + at as u64, boundary, confirm_want);
                    scan.end = file.base + file.bytes.len() as u64;
                    scan.boundary(scan.end, boundary, confirm_want);
                    break;
                }
                Scanned::Invalid(_) => return scan,
            }
            if at >= file.bytes.len() {
                break;
            }
        }
        expected_base = file.base + file.bytes.len() as u64;
    }
    scan
}

/// Whether dispatching `[redispatch_from, end)` would leave a hole in some queue: a record
/// whose queue offset is past the queue's kept units. The records in that hole were promised
/// durable by the checkpoint and are gone from the queue, so only a full rebuild is safe.
fn has_gap(image: &StoreImage<'_>, plan: &RecoveryPlan) -> bool {
    let mut next: BTreeMap<(&[u8], i32), u64> = image
        .queues
        .iter()
        .zip(&plan.queue_keep_bytes)
        .map(|(q, keep)| ((q.topic.as_bytes(), q.queue_id), keep / CQ_UNIT_BYTES))
        .collect();
    let mut gap = false;
    for_each_record(image, plan.redispatch_from, plan.end, |record| {
        if !is_dispatched(record) {
            return true;
        }
        let queue_offset = record.queue_offset.max(0) as u64;
        let next = next.entry((record.topic, record.queue_id)).or_insert(queue_offset);
        if queue_offset > *next {
            gap = true;
            return false;
        }
        *next = (*next).max(queue_offset + 1);
        true
    });
    gap
}

/// Calls `visit` for each record in `[from, end)` (already validated by the scan) until it
/// returns false.
pub fn for_each_record<'a>(
    image: &StoreImage<'a>,
    from: u64,
    end: u64,
    mut visit: impl FnMut(&Record<'a>) -> bool,
) {
    for file in &image.commit_log {
        let file_end = file.base + file.bytes.len() as u64;
        if file_end <= from || file.base >= end {
            continue;
        }
        let mut at = from.saturating_sub(file.base) as usize;
        while file.base + (at as u64) < end {
            let position = Some((file.base + at as u64) as i64);
            let checks = Checks { physical_offset: position, crc: false };
            let Scanned::Record(record) = scan_record(&file.bytes[at..], checks) else { break };
            if !visit(&record) {
                return;
            }
            at += record.bytes.len();
        }
    }
}
