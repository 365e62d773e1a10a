//! Transaction messages' shared state (`docs/transactions.md`): the index of resolved half
//! messages, kept in step with the op queue, and the records END_TRANSACTION and the check
//! service append.
//!
//! The index is read and changed under one lock, held across the append that resolves a
//! half message: two END_TRANSACTIONs for one transaction, or an END_TRANSACTION and a
//! check, cannot both act. A commit's record and its op are one append; if a crash tears
//! that append after the commit record, [`repair`] writes the missing op when this broker
//! next serves as master, before anything is checked.

use std::sync::MutexGuard;

use petrel_core::broker::transaction::{
    self, op_body, op_offsets, op_properties, HalfView, ResolvedIndex, HALF_TOPIC, OP_HALF_TOPIC,
};
use petrel_core::record::{property, scan_record, sys_flag, Checks, Record, RecordInput, Scanned};
use petrel_storage::{Appended, LogEntry, ReadLimits, StoreError};

use super::{lock, Broker};
use crate::clock::now_millis;

/// The index and how far the op queue was read into it.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    pub(super) index: ResolvedIndex,
    /// The op queue is in the index up to here (ops this broker wrote are added at once).
    ops_read: i64,
    /// The last catch-up stopped at an op it could not read, short of the queue's end.
    short: bool,
}

impl Transactions {
    /// How far the op queue was read (the check service persists it as its op progress).
    pub(super) fn ops_read(&self) -> i64 {
        self.ops_read
    }

    /// Whether the transaction of the half message at `queue_offset`, first stored at
    /// `origin`, was committed or rolled back. An op the index could not read yet may be
    /// the one that resolved it: then only a yes is an answer, and a no is an error to try
    /// again on (taken for a no, it would have a committed transaction checked and
    /// committed again).
    pub(super) fn resolved(&self, queue_offset: i64, origin: i64) -> Result<bool, String> {
        match self.index.is_resolved(queue_offset, origin) {
            false if self.short => Err(format!(
                "the op queue did not read whole at offset {}; try again",
                self.ops_read
            )),
            resolved => Ok(resolved),
        }
    }
}

impl Broker {
    /// The index, caught up with the op queue: ops a master replicated to this broker, and
    /// at start every op the store holds.
    pub(super) fn transactions(&self) -> MutexGuard<'_, Transactions> {
        let mut guard = lock(&self.transactions);
        catch_up(self, &mut guard);
        guard
    }
}

fn catch_up(broker: &Broker, transactions: &mut Transactions) {
    let Some((min, max)) = broker.store().queue_offsets(OP_HALF_TOPIC, 0) else { return };
    let (min, max) = (min as i64, max as i64);
    transactions.index.forget_before(min);
    transactions.ops_read = transactions.ops_read.max(min);
    transactions.short = false;
    while transactions.ops_read < max {
        let from = transactions.ops_read as u64;
        let limits =
            ReadLimits { messages_max: 1_024, bytes_max: 4 << 20, ..ReadLimits::default() };
        let got = broker.store().get_messages(OP_HALF_TOPIC, 0, from, limits, &|_| true);
        for bytes in &got.messages {
            let Scanned::Record(op) =
                scan_record(bytes, Checks { physical_offset: None, crc: false })
            else {
                continue;
            };
            if property(op.properties, b"TAGS") == Some(transaction::REMOVE_TAG.as_bytes()) {
                transactions.index.record(op.queue_offset, &op_offsets(op.body));
            }
        }
        if got.next_begin_offset <= from {
            // Unreadable for now (a unit whose write failed, a read that failed): the next
            // caller reads on.
            transactions.short = true;
            break;
        }
        transactions.ops_read = got.next_begin_offset as i64;
    }
    #[cfg(madsim)]
    transactions.index.check_invariants();
}

/// The fields of a record the store read whole (its checks passed there).
pub(super) fn scanned(bytes: &[u8]) -> Option<Record<'_>> {
    match scan_record(bytes, Checks { physical_offset: None, crc: false }) {
        Scanned::Record(record) => Some(record),
        _ => None,
    }
}

/// A record read from the half topic, as the transaction core sees it.
pub(super) fn half_view<'a>(record: &Record<'a>) -> HalfView<'a> {
    HalfView {
        topic: record.topic_str(),
        queue_id: record.queue_id,
        queue_offset: record.queue_offset,
        physical_offset: record.physical_offset,
        sys_flag: record.sys_flag,
        born_timestamp: record.born_timestamp,
        properties: record.properties,
    }
}

/// The op message naming `offsets`, as the broker writes it (`makeOpMessageInner`).
pub(super) fn op_record<'a>(
    broker: &Broker,
    body: &'a str,
    properties: &'a [u8],
    now: i64,
) -> RecordInput<'a> {
    super::broker_record(broker, (OP_HALF_TOPIC, 0), body.as_bytes(), properties, now)
}

/// Appends `commit` (a commit's record, if any) followed by the op resolving the half
/// message at `queue_offset` of transaction `origin`, as one unit, and notes the op in the
/// index. The caller holds `transactions` from its decision to here.
pub(super) fn resolve(
    broker: &Broker,
    transactions: &mut Transactions,
    commit: Option<RecordInput<'_>>,
    queue_offset: i64,
    origin: i64,
) -> Result<Appended, StoreError> {
    let now = now_millis() as i64;
    let halves = transaction::resolved_offsets(queue_offset, origin);
    let (body, properties) = (op_body(&halves), op_properties());
    let op = op_record(broker, &body, &properties, now);
    let both;
    let unit = match commit {
        Some(commit) => {
            both = [commit, op];
            &both[..]
        }
        None => std::slice::from_ref(&op),
    };
    let mut op_offset = 0;
    let appended = broker.store.append_batch(unit, now, &mut |_, queue| op_offset = queue)?;
    transactions.index.record(op_offset, &halves);
    Ok(appended)
}

/// Writes the op of every commit in the commit log from `from` whose op a crash tore off
/// (see the module documentation); how many it wrote. A record it cannot read (a failed
/// read: recovery read the whole range) or an op it cannot write stops it with an error, to
/// be run again: a commit whose op is missing would be committed twice once checked.
pub(super) fn repair(broker: &Broker, from: u64) -> Result<usize, String> {
    let mut repaired = 0;
    scan_log(broker, from, |record| {
        let committed = record.sys_flag & sys_flag::TRANSACTION_MASK == transaction::COMMIT;
        if committed && record.prepared_transaction_offset >= 0 && repair_one(broker, record)? {
            repaired += 1;
        }
        Ok(())
    })?;
    Ok(repaired)
}

/// Hands `visit` every record of the commit log from `from` to its end, in order; a record
/// that does not read whole (recovery read the whole range, so a failed read) or an error of
/// `visit` stops it with that error.
pub(super) fn scan_log(
    broker: &Broker,
    from: u64,
    mut visit: impl FnMut(&Record<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let store = broker.store();
    let file_bytes = broker.config.store.commit_log_file_bytes;
    let (mut at, end) = (from.max(store.min_physical_offset()), store.written_offset());
    while at < end {
        let bytes = match store.entry_at(at) {
            LogEntry::Record(bytes) => bytes,
            LogEntry::Blank => {
                at = (at / file_bytes + 1) * file_bytes;
                continue;
            }
            LogEntry::Unreadable => return Err(format!("the record at {at} did not read whole")),
        };
        at += bytes.len() as u64;
        if let Some(record) = scanned(&bytes) {
            visit(&record)?;
        }
    }
    Ok(())
}

/// Writes the op of `committed` if its half message is not resolved; whether it did.
fn repair_one(broker: &Broker, committed: &Record<'_>) -> Result<bool, String> {
    let half_at = committed.prepared_transaction_offset as u64;
    if half_at < broker.store().min_physical_offset() {
        // Its half message's file was deleted: the half queue no longer holds it either.
        return Ok(false);
    }
    let bytes = match broker.store().entry_at(half_at) {
        LogEntry::Record(bytes) => bytes,
        LogEntry::Blank => return Ok(false),
        LogEntry::Unreadable => {
            return Err(format!("the half message at {half_at} did not read whole"));
        }
    };
    let Some(half) = scanned(&bytes) else { return Ok(false) };
    if half.topic_str() != HALF_TOPIC {
        return Ok(false);
    }
    let origin = transaction::origin(half.properties, half.queue_offset);
    let mut transactions = broker.transactions();
    if transactions.resolved(half.queue_offset, origin)? {
        return Ok(false);
    }
    resolve(broker, &mut transactions, None, half.queue_offset, origin).map_err(|e| {
        format!("the op of the half message at {} not written: {e}", half.queue_offset)
    })?;
    tracing::warn!(half = half.queue_offset, "a commit's op was lost in a crash: written");
    Ok(true)
}
