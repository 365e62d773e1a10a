//! One consume queue, `consumequeue/{topic}/{queueId}/`: 20-byte units pointing into the commit
//! log, in queue-offset order. Unit `q` lives at byte `q * 20` of the queue's byte sequence.
//!
//! Dispatch appends units to a pending buffer and writes them in one `write_at` per file at the
//! end of a round; readers see units up to `write_bytes` only.

use std::path::Path;

use bytes::Bytes;

use crate::config::CQ_UNIT_BYTES;
use crate::disk::Disk;
use crate::error::{IoContext, StoreError};
use crate::recovery::Unit;
use crate::segments::Segments;

pub struct ConsumeQueue {
    segments: Segments,
    /// Byte position of the first unit held (a file boundary, or past leading fillers).
    start_bytes: u64,
    /// Byte position after the last unit written to a file.
    write_bytes: u64,
    /// Units dispatched but not yet written, starting at `write_bytes`.
    pending: Vec<u8>,
    flushed_bytes: u64,
    /// The queue offset of the first real (non-filler) unit.
    min_offset: u64,
}

impl ConsumeQueue {
    /// Opens the queue in `dir`, keeping its first `keep_bytes` bytes (from recovery's plan):
    /// the rest of the file holding `keep_bytes` is zeroed and later files removed.
    pub fn open(
        disk: &dyn Disk,
        dir: &Path,
        file_bytes: u64,
        keep_bytes: Option<u64>,
    ) -> Result<ConsumeQueue, StoreError> {
        let mut segments = Segments::load(disk, dir, file_bytes)?;
        let start_bytes = segments.min_offset();
        let keep = keep_bytes.unwrap_or(start_bytes).max(start_bytes);
        let on_boundary = keep.is_multiple_of(file_bytes);
        if let Some(segment) = segments.find(keep).filter(|_| !on_boundary) {
            let at = keep - segment.base;
            segment.file.zero_from(at).context(|| format!("cannot cut {}", dir.display()))?;
            segment.file.sync().sync_context(|| format!("cannot sync {}", dir.display()))?;
        }
        let remove_at = if on_boundary { keep } else { keep - keep % file_bytes + file_bytes };
        segments.remove_from(disk, remove_at)?;
        let mut queue = ConsumeQueue {
            segments,
            start_bytes,
            write_bytes: keep,
            pending: Vec::new(),
            // Nothing read at recovery is known durable until synced: the first flush syncs
            // every file of the queue.
            flushed_bytes: start_bytes,
            min_offset: start_bytes / CQ_UNIT_BYTES,
        };
        queue.min_offset = queue.first_real_unit();
        Ok(queue)
    }

    fn first_real_unit(&self) -> u64 {
        let mut q = self.start_bytes / CQ_UNIT_BYTES;
        while q < self.max_offset() {
            match self.unit(q) {
                Some(unit) if unit.is_filler() => q += 1,
                _ => break,
            }
        }
        q
    }

    /// The next queue offset to be dispatched.
    pub fn max_offset(&self) -> u64 {
        (self.write_bytes + self.pending.len() as u64) / CQ_UNIT_BYTES
    }

    /// The queue offset readers can see up to (written to the file).
    pub fn readable_max_offset(&self) -> u64 {
        self.write_bytes / CQ_UNIT_BYTES
    }

    pub fn min_offset(&self) -> u64 {
        self.min_offset
    }

    /// The unit at queue offset `q`, if written and read alike three times (units carry no
    /// checksum; a misread one could cut the queue or expire its file).
    pub fn unit(&self, q: u64) -> Option<Unit> {
        let at = q.checked_mul(CQ_UNIT_BYTES)?;
        if at < self.start_bytes || at + CQ_UNIT_BYTES > self.write_bytes {
            return None;
        }
        let segment = self.segments.find(at)?;
        let mut bytes = [0u8; CQ_UNIT_BYTES as usize];
        crate::disk::read_stable(segment.file.as_ref(), at - segment.base, &mut bytes).ok()?;
        Some(Unit::decode(&bytes))
    }

    /// Up to `count` written units from `q` on, as one zero-copy slice per file touched.
    pub fn units(&self, q: u64, count: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let Some(mut at) = q.checked_mul(CQ_UNIT_BYTES) else { return out };
        let end = at.saturating_add(count.saturating_mul(CQ_UNIT_BYTES)).min(self.write_bytes);
        while at < end && at >= self.start_bytes {
            let Some(segment) = self.segments.find(at) else { break };
            let stop = end.min(segment.base + self.segments.file_bytes());
            // Units carry no checksum: a unit misread would send the reader to the wrong record
            // or past a message, so reads must agree (`slice_stable`).
            match crate::disk::slice_stable(
                segment.file.as_ref(),
                at - segment.base,
                (stop - at) as usize,
            ) {
                Ok(bytes) => out.push(bytes),
                Err(_) => break,
            }
            at = stop;
        }
        out
    }

    /// Adds the unit for queue offset `q`. A unit the queue already has is compared, and the
    /// queue is cut there if it differs (a torn unit can look valid). A hole before `q` in an
    /// empty queue is filled with fillers, as RocketMQ does for a queue whose head was cleaned;
    /// a hole in a non-empty queue is a lost unit, filled likewise and reported.
    pub fn put(&mut self, disk: &dyn Disk, q: u64, unit: Unit) -> Result<PutOutcome, StoreError> {
        let at = q * CQ_UNIT_BYTES;
        let next = self.write_bytes + self.pending.len() as u64;
        if at < next {
            if at < self.write_bytes && self.unit(q) == Some(unit) {
                return Ok(PutOutcome::Present);
            }
            if at < self.start_bytes {
                return Ok(PutOutcome::Present);
            }
            self.cut(disk, at)?;
            self.pending.extend_from_slice(&unit.encode());
            return Ok(PutOutcome::Replaced);
        }
        let no_real_units = self.min_offset >= self.max_offset();
        let outcome = if at > next {
            let empty = next == self.start_bytes;
            let fill_from = if empty { at - at % self.segments.file_bytes() } else { next };
            if empty {
                self.start_bytes = fill_from;
                self.write_bytes = fill_from;
                self.flushed_bytes = fill_from;
            }
            for _ in (fill_from.max(next)..at).step_by(CQ_UNIT_BYTES as usize) {
                self.pending.extend_from_slice(&Unit::FILLER.encode());
            }
            if empty {
                PutOutcome::Appended
            } else {
                PutOutcome::Hole
            }
        } else {
            PutOutcome::Appended
        };
        if no_real_units {
            self.min_offset = q;
        }
        self.pending.extend_from_slice(&unit.encode());
        Ok(outcome)
    }

    /// Drops every unit from byte `at` on, pending or written.
    fn cut(&mut self, disk: &dyn Disk, at: u64) -> Result<(), StoreError> {
        if at >= self.write_bytes {
            self.pending.truncate((at - self.write_bytes) as usize);
            return Ok(());
        }
        self.pending.clear();
        if let Some(segment) = self.segments.find(at) {
            segment
                .file
                .zero_from(at - segment.base)
                .context(|| format!("cannot cut {}", self.segments.dir().display()))?;
        }
        let file_bytes = self.segments.file_bytes();
        self.segments.remove_from(disk, at - at % file_bytes + file_bytes)?;
        self.write_bytes = at;
        self.flushed_bytes = self.flushed_bytes.min(at);
        Ok(())
    }

    /// Drops the units of records at or past commit-log offset `end` (a truncated log's new
    /// end), written or pending, and syncs the cut.
    pub fn cut_to_log(&mut self, disk: &dyn Disk, end: u64) -> Result<(), StoreError> {
        self.write_pending(disk)?;
        let first = self.start_bytes / CQ_UNIT_BYTES;
        let mut keep = self.max_offset();
        // Units point forward through the log: the ones to drop are the newest.
        while keep > first {
            match self.unit(keep - 1) {
                Some(unit) if !unit.is_filler() && unit.offset as u64 >= end => keep -= 1,
                _ => break,
            }
        }
        if keep == self.max_offset() {
            return Ok(());
        }
        let at = keep * CQ_UNIT_BYTES;
        self.cut(disk, at)?;
        if let Some(segment) = self.segments.find(at).filter(|s| s.base < at) {
            segment
                .file
                .sync()
                .sync_context(|| format!("cannot sync {}", self.segments.dir().display()))?;
        }
        self.min_offset = self.min_offset.min(keep);
        Ok(())
    }

    /// Writes pending units to their files (one write per file touched).
    pub fn write_pending(&mut self, disk: &dyn Disk) -> Result<(), StoreError> {
        let mut done = 0usize;
        let result = self.write_some(disk, &mut done);
        // Whatever was written is no longer pending, even if a later file failed.
        self.pending.drain(..done);
        result
    }

    fn write_some(&mut self, disk: &dyn Disk, done: &mut usize) -> Result<(), StoreError> {
        let file_bytes = self.segments.file_bytes();
        while *done < self.pending.len() {
            let at = self.write_bytes;
            let segment = self.segments.find_or_create(disk, at)?;
            let room = (segment.base + file_bytes - at) as usize;
            let n = room.min(self.pending.len() - *done);
            let units = &self.pending[*done..*done + n];
            segment
                .file
                .write_at(at - segment.base, units)
                .context(|| format!("cannot write {}", self.segments.dir().display()))?;
            self.write_bytes += n as u64;
            *done += n;
        }
        Ok(())
    }

    /// Writes pending units, then syncs the files holding units written since the last flush.
    pub fn flush(&mut self, disk: &dyn Disk) -> Result<(), StoreError> {
        self.write_pending(disk)?;
        if self.flushed_bytes >= self.write_bytes {
            return Ok(());
        }
        let file_bytes = self.segments.file_bytes();
        let first = self.flushed_bytes - self.flushed_bytes % file_bytes;
        for segment in self.segments.files().iter().filter(|s| s.base >= first) {
            if segment.base < self.write_bytes {
                segment
                    .file
                    .sync()
                    .sync_context(|| format!("cannot sync {}", self.segments.dir().display()))?;
            }
        }
        self.flushed_bytes = self.write_bytes;
        Ok(())
    }

    /// Removes files whose units all point below `log_min` (the commit log's first offset),
    /// keeping the newest file, and moves the min offset past units whose record is gone
    /// (RocketMQ's `deleteExpiredFile` and `correctMinOffset`).
    pub fn remove_before(&mut self, disk: &dyn Disk, log_min: u64) -> Result<usize, StoreError> {
        let file_bytes = self.segments.file_bytes();
        let files = self.segments.files().len();
        let mut expired = 0;
        for segment in self.segments.files().iter().take(files.saturating_sub(1)) {
            let last = segment.base + file_bytes - CQ_UNIT_BYTES;
            match self.unit(last / CQ_UNIT_BYTES) {
                Some(unit) if unit.is_filler() || unit.end() <= log_min => expired += 1,
                _ => break,
            }
        }
        if expired > 0 {
            self.segments.remove_first(disk, expired)?;
            self.start_bytes = self.segments.min_offset();
            self.flushed_bytes = self.flushed_bytes.max(self.start_bytes);
        }
        let mut q = self.min_offset.max(self.start_bytes / CQ_UNIT_BYTES);
        while q < self.readable_max_offset() {
            match self.unit(q) {
                Some(unit) if unit.is_filler() || (unit.offset as u64) < log_min => q += 1,
                _ => break,
            }
        }
        self.min_offset = q;
        Ok(expired)
    }

    /// Internal consistency, for tests and the simulator.
    pub fn check_invariants(&self) {
        assert!(self.start_bytes <= self.write_bytes, "queue starts after its end");
        assert!(self.flushed_bytes <= self.write_bytes, "flushed past written");
        assert_eq!(self.start_bytes % CQ_UNIT_BYTES, 0, "start on a unit boundary");
        assert_eq!(self.write_bytes % CQ_UNIT_BYTES, 0, "end on a unit boundary");
        assert_eq!(self.pending.len() as u64 % CQ_UNIT_BYTES, 0, "pending whole units");
    }
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Appended,
    /// The same unit was already there.
    Present,
    /// A different unit was there; the queue was cut and the new one written.
    Replaced,
    /// Units were missing before this one and were filled with fillers.
    Hole,
}
