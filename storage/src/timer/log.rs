//! The timer log: files of `file_bytes` under `timerlog/`, named like the commit log's by the
//! 20-digit position of their first byte, holding 52-byte units back to back
//! (`docs/storage-format.md` §13). A unit that would leave fewer than `BLANK_BYTES` in its file
//! goes to the next file, and a blank marks the rest of the old one as unused.
//!
//! Inputs: units to append, a position to cut the log at when it is opened, positions to read
//! and to clean up to. Outputs: positions and units. Which units to write and where to cut is
//! the caller's decision. Units carry no checksum, so every read is a stable one.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{io_context, sync_context};
use crate::disk::{slice_stable, Disk};
use crate::error::StoreError;
use crate::segments::{file_name, Segment, Segments};
use petrel_core::broker::timer_unit::{
    encode_blank, is_blank, is_magic_ok, TimerUnit, BLANK_BYTES, UNIT_BYTES,
};

/// RocketMQ's `mappedFileSizeTimerLog`: 100 MiB.
pub const TIMER_LOG_FILE_BYTES_DEFAULT: u64 = 104_857_600;
/// The smallest file accepted: a few units and a blank.
pub const TIMER_LOG_FILE_BYTES_MIN: u64 = 4 * UNIT_BYTES;
/// The largest: a blank counts the bytes left in its file in an i32, and RocketMQ's file size
/// is an `int`.
pub const TIMER_LOG_FILE_BYTES_MAX: u64 = i32::MAX as u64;
/// Positions are i64 in units (`prevPos`) and slots.
const POSITION_MAX: u64 = i64::MAX as u64;

// A new file takes a unit without a blank, so every unit finds room in some file.
const _: () = assert!(TIMER_LOG_FILE_BYTES_MIN >= UNIT_BYTES + BLANK_BYTES);
const _: () = assert!(TIMER_LOG_FILE_BYTES_MIN <= TIMER_LOG_FILE_BYTES_DEFAULT);
const _: () = assert!(TIMER_LOG_FILE_BYTES_DEFAULT <= TIMER_LOG_FILE_BYTES_MAX);

/// The open timer log.
pub struct TimerLog {
    disk: Arc<dyn Disk>,
    segments: Segments,
    /// The first position held: the first file's start, or where the first file will go.
    start: u64,
    /// Where the next unit goes.
    end: u64,
    /// Every file holding bytes below this was synced by `sync`. Starts at `start`: what a
    /// previous process wrote may still sit in the page cache.
    synced: AtomicU64,
}

/// How the scan of one file ended.
enum FileScan {
    /// A blank (or no room for one): the log goes on at the next file's start.
    Full,
    /// The log ends at this position.
    EndsAt(u64),
}

impl TimerLog {
    /// Opens the timer log in `dir` (RocketMQ's is `storePathRootDir/timerlog`, see
    /// [`log_dir`](super::log_dir)) and finds its end by scanning every unit from the first
    /// file's start. `visit` gets each valid unit with its position, in log order.
    ///
    /// The files are checked as the commit log's are (`Segments::load`): names that are not 20
    /// digits are ignored, a last file shorter than `file_bytes` is removed (its creation was
    /// interrupted), and any other file of another size, off the grid or after a gap is an
    /// error. `file_bytes` must lie in `TIMER_LOG_FILE_BYTES_MIN..=TIMER_LOG_FILE_BYTES_MAX`.
    ///
    /// The scan goes to the next file at a blank (a unit whose magic at byte 12 is
    /// `BLANK_MAGIC`) and ends at the first position at or past `truncate_at`, or at bytes that
    /// are no unit: a bad size or magic, zeros, or a unit naming no record (`size_py <= 0`,
    /// what a torn write leaves). The bytes after the end in its file are zeroed and synced,
    /// and later files removed. With no file at all, the log starts and ends at the start of
    /// the file holding `truncate_at` (cleanup deleted everything below it); a `truncate_at`
    /// past `i64::MAX`, such as `u64::MAX` for "no limit", then means position 0.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        file_bytes: u64,
        truncate_at: u64,
        mut visit: impl FnMut(u64, &TimerUnit),
    ) -> io::Result<TimerLog> {
        check_file_bytes(file_bytes)?;
        let segments = Segments::load(disk.as_ref(), dir, file_bytes).map_err(into_io)?;
        let start = match segments.files().first() {
            Some(first) => first.base,
            None if truncate_at <= POSITION_MAX => truncate_at - truncate_at % file_bytes,
            None => 0,
        };
        if start > POSITION_MAX - file_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a timer-log file starts at {start}, past i64::MAX", dir.display()),
            ));
        }
        let end = scan(&segments, start, truncate_at, &mut visit)?;
        let log = TimerLog { disk, segments, start, end, synced: AtomicU64::new(start) };
        log.cut_at_end()
    }

    /// Zeroes the end's file after the end, syncs it, then removes every later file.
    fn cut_at_end(mut self) -> io::Result<TimerLog> {
        let end = self.end;
        if let Some(segment) = self.segments.find(end).cloned() {
            let path = self.path_of(&segment);
            let context = || format!("cannot zero {} after {end}", path.display());
            segment.file.zero_from(end - segment.base).map_err(io_context(context))?;
            segment
                .file
                .sync()
                .map_err(sync_context(|| format!("cannot sync {}", path.display())))?;
        }
        let later = self.segments.files().iter().filter(|s| s.base > end).count();
        if later > 0 {
            let dir = self.segments.dir().display().to_string();
            tracing::warn!(dir, end, later, "removing timer-log files after the end");
            self.segments.remove_from(self.disk.as_ref(), end + 1).map_err(into_io)?;
        }
        Ok(self)
    }

    /// Appends `unit` and returns its position. When the unit would leave fewer than
    /// `BLANK_BYTES` in the current file, a blank fills the rest of it, that file is synced,
    /// and the unit starts the next file (created and synced with its directory). The unit is
    /// durable after `sync`.
    pub fn append(&mut self, unit: &TimerUnit) -> io::Result<u64> {
        assert!(
            is_magic_ok(unit.magic) && unit.is_whole(),
            "appending a unit that recovery would refuse: {unit:?}"
        );
        let file_bytes = self.segments.file_bytes();
        let mut pos = self.end;
        let left = file_bytes - pos % file_bytes;
        if left < UNIT_BYTES + BLANK_BYTES {
            self.write_blank(pos, left)?;
            pos += left;
        }
        if pos > POSITION_MAX - UNIT_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("the timer log reached position {pos}, the largest an i64 holds"),
            ));
        }
        let segment = self.segments.find_or_create(self.disk.as_ref(), pos).map_err(into_io)?;
        let bytes = unit.encode();
        debug_assert_eq!(TimerUnit::decode(&bytes).as_ref(), Some(unit));
        segment
            .file
            .write_at(pos - segment.base, &bytes)
            .map_err(io_context(|| format!("cannot write {}", self.path_of(&segment).display())))?;
        self.end = pos + UNIT_BYTES;
        Ok(pos)
    }

    /// Writes the blank at `pos`, `left` bytes before its file's end, and syncs the file: the
    /// next file exists only once this one is complete, so recovery never meets a file that
    /// lacks its blank followed by a later one.
    fn write_blank(&self, pos: u64, left: u64) -> io::Result<()> {
        assert!(
            left >= BLANK_BYTES,
            "the log ends {left} bytes before a file end: no room for a blank"
        );
        let segment =
            self.segments.find(pos).expect("the log ends inside a file only once that file exists");
        let path = self.path_of(segment);
        segment
            .file
            .write_at(pos - segment.base, &encode_blank(left))
            .map_err(io_context(|| format!("cannot write {}", path.display())))?;
        segment.file.sync().map_err(sync_context(|| format!("cannot sync {}", path.display())))
    }

    /// The unit at `pos`; an error when `pos` is outside the log or holds no unit.
    pub fn read(&self, pos: u64) -> io::Result<TimerUnit> {
        let file_bytes = self.segments.file_bytes();
        let inside =
            pos >= self.start && pos.checked_add(UNIT_BYTES).is_some_and(|e| e <= self.end);
        let segment = inside
            .then(|| self.segments.find(pos))
            .flatten()
            .filter(|s| pos - s.base + UNIT_BYTES <= file_bytes);
        let Some(segment) = segment else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "timer-log position {pos} holds no unit: the log spans [{}, {})",
                    self.start, self.end
                ),
            ));
        };
        let path = self.path_of(segment);
        let bytes = slice_stable(segment.file.as_ref(), pos - segment.base, UNIT_BYTES as usize)
            .map_err(io_context(|| format!("cannot read {}", path.display())))?;
        TimerUnit::decode(&bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no timer unit at position {pos}", path.display()),
            )
        })
    }

    /// fdatasync of every file written since the last `sync` (every file, the first time
    /// after `open`): every unit appended so far is durable when this returns `Ok`.
    pub fn sync(&self) -> io::Result<()> {
        let synced = self.synced.load(Ordering::Acquire);
        let file_bytes = self.segments.file_bytes();
        for segment in self.segments.files() {
            if segment.base + file_bytes > synced && segment.base < self.end {
                let path = self.path_of(segment);
                segment
                    .file
                    .sync()
                    .map_err(sync_context(|| format!("cannot sync {}", path.display())))?;
            }
        }
        self.synced.store(self.end, Ordering::Release);
        Ok(())
    }

    /// Where the next unit goes.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The first position held: the first file's start.
    pub fn first_offset(&self) -> u64 {
        self.start
    }

    pub fn file_bytes(&self) -> u64 {
        self.segments.file_bytes()
    }

    /// Removes the oldest files that end at or before `pos` (cleanup of units no slot needs),
    /// never the newest file; returns how many went. The directory is synced after.
    pub fn remove_files_before(&mut self, pos: u64) -> io::Result<usize> {
        let file_bytes = self.segments.file_bytes();
        let files = self.segments.files();
        let older = &files[..files.len().saturating_sub(1)];
        let count = older.iter().take_while(|s| s.base + file_bytes <= pos).count();
        if count == 0 {
            return Ok(0);
        }
        self.segments.remove_first(self.disk.as_ref(), count).map_err(into_io)?;
        self.start = self.segments.min_offset();
        Ok(count)
    }

    fn path_of(&self, segment: &Segment) -> PathBuf {
        self.segments.dir().join(file_name(segment.base))
    }
}

/// Scans the files from `start`; returns where the log ends.
fn scan(
    segments: &Segments,
    start: u64,
    truncate_at: u64,
    visit: &mut impl FnMut(u64, &TimerUnit),
) -> io::Result<u64> {
    let mut end = start;
    for segment in segments.files() {
        debug_assert_eq!(segment.base, end, "timer-log files follow each other");
        let path = segments.dir().join(file_name(segment.base));
        match scan_file(segment, segments.file_bytes(), truncate_at, visit)
            .map_err(io_context(|| format!("cannot read {}", path.display())))?
        {
            FileScan::EndsAt(pos) => return Ok(pos),
            FileScan::Full => end = segment.base + segments.file_bytes(),
        }
    }
    Ok(end)
}

fn scan_file(
    segment: &Segment,
    file_bytes: u64,
    truncate_at: u64,
    visit: &mut impl FnMut(u64, &TimerUnit),
) -> io::Result<FileScan> {
    let mut at = 0;
    loop {
        let pos = segment.base + at;
        if pos >= truncate_at {
            return Ok(FileScan::EndsAt(pos));
        }
        let left = file_bytes - at;
        if left < BLANK_BYTES {
            // Not reached in a log Petrel or RocketMQ wrote: a unit always leaves room for a
            // blank after it.
            return Ok(FileScan::Full);
        }
        let bytes = slice_stable(segment.file.as_ref(), at, left.min(UNIT_BYTES) as usize)?;
        if is_blank(&bytes) {
            return Ok(FileScan::Full);
        }
        // With fewer than UNIT_BYTES left and no blank, `decode` finds no unit: the log ends
        // here and the next append writes the blank RocketMQ's recovery expects.
        match TimerUnit::decode(&bytes).filter(TimerUnit::is_whole) {
            Some(unit) => {
                visit(pos, &unit);
                at += UNIT_BYTES;
            }
            None => return Ok(FileScan::EndsAt(pos)),
        }
    }
}

fn check_file_bytes(file_bytes: u64) -> io::Result<()> {
    if (TIMER_LOG_FILE_BYTES_MIN..=TIMER_LOG_FILE_BYTES_MAX).contains(&file_bytes) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "mappedFileSizeTimerLog={file_bytes}: a timer-log file must hold \
             {TIMER_LOG_FILE_BYTES_MIN} to {TIMER_LOG_FILE_BYTES_MAX} bytes"
        ),
    ))
}

/// The segments' errors as I/O errors, keeping the kind of the underlying one.
fn into_io(error: StoreError) -> io::Error {
    match error {
        StoreError::Io { what, source } => {
            io::Error::new(source.kind(), format!("{what}: {source}"))
        }
        StoreError::SyncFailed { what, source } => sync_context(|| what)(source),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{FsDisk, SimDisk, SimDiskFaults};
    use petrel_core::broker::timer::MAGIC_DEFAULT;

    /// Four units and a 20-byte blank per file.
    const FILE_BYTES: u64 = 4 * UNIT_BYTES + 20;
    const DIR: &str = "/store/timerlog";

    fn unit(n: i64) -> TimerUnit {
        TimerUnit {
            prev_pos: n - 1,
            magic: MAGIC_DEFAULT,
            write_time_ms: 1_000 + n,
            delay_ms: 1_000,
            offset_py: n * 100,
            size_py: 100,
            topic_hash: 7,
        }
    }

    fn sim() -> SimDisk {
        SimDisk::new(1, 1 << 30, SimDiskFaults::default())
    }

    /// Opens the log and returns what the scan saw.
    fn open(
        disk: &SimDisk,
        file_bytes: u64,
        truncate_at: u64,
    ) -> (TimerLog, Vec<(u64, TimerUnit)>) {
        let mut seen = Vec::new();
        let log = TimerLog::open(
            Arc::new(disk.clone()),
            Path::new(DIR),
            file_bytes,
            truncate_at,
            |pos, unit| seen.push((pos, *unit)),
        )
        .unwrap();
        (log, seen)
    }

    fn file(base: u64) -> PathBuf {
        Path::new(DIR).join(file_name(base))
    }

    /// Appends units 0..count and returns them with their positions.
    fn fill(log: &mut TimerLog, count: i64) -> Vec<(u64, TimerUnit)> {
        (0..count).map(|n| (log.append(&unit(n)).unwrap(), unit(n))).collect()
    }

    #[test]
    fn appends_cross_a_file_boundary_behind_a_blank() {
        let disk = sim();
        let (mut log, seen) = open(&disk, FILE_BYTES, u64::MAX);
        assert!(seen.is_empty() && log.end() == 0 && log.first_offset() == 0);
        let written = fill(&mut log, 10);
        let positions: Vec<u64> = written.iter().map(|(pos, _)| *pos).collect();
        assert_eq!(positions, [0, 52, 104, 156, 228, 280, 332, 384, 456, 508]);
        assert_eq!(log.end(), 560);
        let first = disk.image(&file(0)).unwrap();
        assert_eq!(first[208..224], encode_blank(20), "a blank counting the 20 bytes left");
        assert_eq!(first[224..], [0u8; 4]);
        for (pos, unit) in &written {
            assert_eq!(log.read(*pos).unwrap(), *unit);
        }
        assert!(log.read(208).is_err(), "a blank is no unit");
        assert!(log.read(560).is_err(), "past the end");
        log.sync().unwrap();
        let (mut log, seen) = open(&disk, FILE_BYTES, u64::MAX);
        assert_eq!(seen, written);
        assert_eq!(log.end(), 560);
        assert_eq!(log.append(&unit(10)).unwrap(), 560);
    }

    #[test]
    fn a_blank_as_long_as_a_unit_and_a_newest_file_ending_in_a_blank() {
        let disk = sim();
        let file_bytes = 4 * UNIT_BYTES;
        let (mut log, _) = open(&disk, file_bytes, u64::MAX);
        let written = fill(&mut log, 4);
        assert_eq!(written[3].0, 208, "three units, then a 52-byte blank");
        assert_eq!(disk.image(&file(0)).unwrap()[156..172], encode_blank(52));
        log.sync().unwrap();
        drop(log);
        // As if the crash came after the blank was synced but before the new file was.
        disk.remove(&file(208)).unwrap();
        let (mut log, seen) = open(&disk, file_bytes, u64::MAX);
        assert_eq!(seen, written[..3]);
        assert_eq!(log.end(), 208, "the full file's end");
        assert_eq!(log.append(&unit(3)).unwrap(), 208);
        assert_eq!(log.read(208).unwrap(), unit(3));
    }

    #[test]
    fn truncate_at_drops_later_units_and_zeroes_them() {
        let disk = sim();
        let (mut log, _) = open(&disk, FILE_BYTES, u64::MAX);
        let written = fill(&mut log, 10);
        log.sync().unwrap();
        drop(log);
        let (mut log, seen) = open(&disk, FILE_BYTES, 280);
        assert_eq!(seen, written[..5]);
        assert_eq!(log.end(), 280);
        assert!(disk.image(&file(228)).unwrap()[52..].iter().all(|b| *b == 0));
        assert!(!disk.exists(&file(456)), "a file wholly after the end is removed");
        assert!(log.read(280).is_err());
        assert_eq!(log.append(&unit(99)).unwrap(), 280);
        log.sync().unwrap();
        drop(log);
        let (_, seen) = open(&disk, FILE_BYTES, u64::MAX);
        assert_eq!(seen.last(), Some(&(280, unit(99))));
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn a_torn_write_ends_the_log_at_the_last_whole_unit() {
        for tail in [vec![0xAB; 30], unit(5).encode()[..16].to_vec()] {
            let disk = sim();
            let (mut log, _) = open(&disk, FILE_BYTES, u64::MAX);
            let written = fill(&mut log, 5);
            log.sync().unwrap();
            drop(log);
            disk.open(&file(228)).unwrap().write_at(52, &tail).unwrap();
            let (log, seen) = open(&disk, FILE_BYTES, u64::MAX);
            assert_eq!(seen, written, "tail {tail:x?}");
            assert_eq!(log.end(), 280);
            assert!(disk.image(&file(228)).unwrap()[52..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn a_crash_keeps_every_synced_unit_and_no_stranger() {
        let mut kept = Vec::new();
        for seed in 0..32 {
            let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
            let disk = SimDisk::new(seed, 1 << 30, faults);
            let (mut log, _) = open(&disk, FILE_BYTES, u64::MAX);
            let mut written = fill(&mut log, 7);
            log.sync().unwrap();
            written.extend((7..20).map(|n| (log.append(&unit(n)).unwrap(), unit(n))));
            disk.crash();
            let (log, seen) = open(&disk, FILE_BYTES, u64::MAX);
            assert!(seen.len() >= 7, "seed {seed}: a synced unit was lost");
            assert_eq!(seen, written[..seen.len()], "seed {seed}");
            let end = seen.last().map(|(pos, _)| pos + UNIT_BYTES).unwrap();
            assert!(
                log.end() == end || log.end() % FILE_BYTES == 0,
                "seed {seed}: end {}",
                log.end()
            );
            kept.push(seen.len());
        }
        assert!(kept.iter().any(|n| *n < 20) && kept.iter().any(|n| *n > 8), "{kept:?}");
    }

    #[test]
    fn cleanup_removes_whole_files_but_never_the_newest() {
        let disk = sim();
        let (mut log, _) = open(&disk, FILE_BYTES, u64::MAX);
        let written = fill(&mut log, 10);
        assert_eq!(log.remove_files_before(227).unwrap(), 0);
        assert_eq!(log.remove_files_before(300).unwrap(), 1);
        assert_eq!(log.first_offset(), 228);
        assert!(!disk.exists(&file(0)) && log.read(0).is_err());
        assert_eq!(log.read(228).unwrap(), unit(4));
        assert_eq!(log.remove_files_before(u64::MAX).unwrap(), 1, "the newest file stays");
        assert_eq!(log.first_offset(), 456);
        log.sync().unwrap();
        drop(log);
        let (log, seen) = open(&disk, FILE_BYTES, u64::MAX);
        assert_eq!(seen, written[8..]);
        assert_eq!((log.first_offset(), log.end()), (456, 560));
    }

    #[test]
    fn an_empty_directory_starts_at_the_file_holding_truncate_at() {
        let disk = sim();
        let (mut log, _) = open(&disk, FILE_BYTES, 1_000);
        assert_eq!((log.first_offset(), log.end()), (912, 912));
        assert_eq!(log.append(&unit(0)).unwrap(), 912);
        log.sync().unwrap();
        assert!(disk.exists(&file(912)));
        drop(log);
        let (log, seen) = open(&disk, FILE_BYTES, u64::MAX);
        assert_eq!(seen, [(912, unit(0))]);
        assert_eq!(log.first_offset(), 912);
        let (log, _) = open(&sim(), FILE_BYTES, u64::MAX);
        assert_eq!(log.end(), 0, "no limit on an empty directory: position 0");
    }

    #[test]
    fn bad_file_sizes_are_refused() {
        let disk = sim();
        let error = TimerLog::open(Arc::new(disk.clone()), Path::new(DIR), 100, 0, |_, _| {})
            .err()
            .unwrap();
        assert!(error.to_string().contains("mappedFileSizeTimerLog=100"), "{error}");
        let (mut log, _) = open(&disk, FILE_BYTES, u64::MAX);
        fill(&mut log, 6);
        log.sync().unwrap();
        drop(log);
        let error =
            TimerLog::open(Arc::new(disk), Path::new(DIR), 2 * FILE_BYTES, u64::MAX, |_, _| {})
                .err()
                .unwrap();
        assert!(error.to_string().contains("configured file size"), "{error}");
    }

    #[test]
    fn works_on_the_real_file_system() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("timerlog");
        let open = |truncate_at| {
            let mut seen = Vec::new();
            let log =
                TimerLog::open(Arc::new(FsDisk), &dir, FILE_BYTES, truncate_at, |pos, unit| {
                    seen.push((pos, *unit))
                })
                .unwrap();
            (log, seen)
        };
        let (mut log, _) = open(u64::MAX);
        let written = fill(&mut log, 6);
        log.sync().unwrap();
        drop(log);
        let (log, seen) = open(280);
        assert_eq!((seen.as_slice(), log.end()), (&written[..5], 280));
        drop(log);
        let (log, seen) = open(u64::MAX);
        assert_eq!((seen.as_slice(), log.end()), (&written[..5], 280), "the cut unit is zeroed");
    }
}
