//! RocketMQ 5's timer files, byte for byte (`docs/storage-format.md` §13): the `timerwheel`
//! slot table, the `timerlog/` of 52-byte units, and the `config/timercheck` page.
//!
//! This module only reads and writes those files through [`Disk`]; it holds no broker logic.
//! Which units to append, which slots to rewrite and where to cut the log are the caller's
//! decisions (the timer core, elsewhere). Every integer is big-endian.
//!
//! - [`unit`](mod@unit): one timer-log unit, its encoding and the blank that ends a file;
//! - [`wheel`]: a slot and the wheel file that holds `2 × WHEEL_SLOTS` of them;
//! - [`log`]: the timer log, its recovery scan at open, appends and file cleanup;
//! - [`checkpoint`]: the `timercheck` page, with Petrel's commit-log end in bytes RocketMQ
//!   leaves zero.

pub mod checkpoint;
pub mod log;
pub mod wheel;

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::Disk;

pub use checkpoint::{
    read_checkpoint, write_checkpoint, TimerCheckpoint, CHECKPOINT_FILE_BYTES,
    CHECKPOINT_WRITE_BYTES, COMMIT_LOG_END_MARKER,
};
pub use log::{
    TimerLog, TIMER_LOG_FILE_BYTES_DEFAULT, TIMER_LOG_FILE_BYTES_MAX, TIMER_LOG_FILE_BYTES_MIN,
};
/// The unit's layout and magic bits are the timer core's, which builds the units.
pub use petrel_core::broker::timer::{MAGIC_DEFAULT, MAGIC_DELETE, MAGIC_ROLL};
pub use petrel_core::broker::timer_unit::{
    is_magic_ok, TimerUnit, BLANK_BYTES, BLANK_MAGIC, UNIT_BYTES,
};
pub use wheel::{slot_index, Slot, TimerWheelFile, SLOT_BYTES, WHEEL_FILE_BYTES, WHEEL_SLOTS};

/// Where RocketMQ keeps the wheel: `storePathRootDir/timerwheel`.
pub fn wheel_path(root: &Path) -> PathBuf {
    root.join("timerwheel")
}

/// Where RocketMQ keeps the timer log's files: `storePathRootDir/timerlog/`.
pub fn log_dir(root: &Path) -> PathBuf {
    root.join("timerlog")
}

/// Where RocketMQ keeps the timer checkpoint: `storePathRootDir/config/timercheck`.
pub fn checkpoint_path(root: &Path) -> PathBuf {
    root.join("config").join("timercheck")
}

/// Makes the directory entries of the timer files durable before anything relies on them: a
/// run that created one and stopped before its directory's sync leaves an entry a power loss
/// can take with its file, while a later run reads and extends that file.
pub fn sync_entries(disk: &dyn Disk, root: &Path) -> io::Result<()> {
    for dir in [root.to_path_buf(), log_dir(root), root.join("config")] {
        if disk.exists(&dir) {
            disk.sync_dir(&dir)
                .map_err(sync_context(|| format!("cannot sync {}", dir.display())))?;
        }
    }
    Ok(())
}

/// A failed fdatasync or directory sync of a timer file, inside the `io::Error` it returns:
/// after it nothing about the file is known (§9), so the caller stops the store, as a failed
/// sync of the commit log does.
#[derive(Debug)]
pub struct SyncFailed(pub String);

impl std::fmt::Display for SyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyncFailed {}

/// Whether `error` is a failed sync ([`SyncFailed`]).
pub fn is_sync_failure(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<SyncFailed>())
}

/// Wraps the error of a sync as [`SyncFailed`], with the file it concerns.
pub(crate) fn sync_context(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> io::Error {
    move |error| io::Error::new(error.kind(), SyncFailed(format!("{}: {error}", what())))
}

/// Wraps an I/O error with the operation and file it concerns, keeping its kind.
pub(crate) fn io_context(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> io::Error {
    move |error| io::Error::new(error.kind(), format!("{}: {error}", what()))
}

/// Creates `dir` when it is missing and makes its entry durable (an fsync of its parent).
pub(crate) fn ensure_dir(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    if disk.exists(dir) {
        return Ok(());
    }
    disk.create_dir_all(dir).map_err(io_context(|| format!("cannot create {}", dir.display())))?;
    // A relative directory's parent is the empty path: the current directory.
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    disk.sync_dir(parent).map_err(sync_context(|| format!("cannot sync {}", parent.display())))
}

/// Bytes from hex digits, spaces and line breaks ignored: the test vectors of §13.
#[cfg(test)]
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    let value = |d: u8| (d as char).to_digit(16).expect("a hex digit") as u8;
    digits.chunks(2).map(|pair| (value(pair[0]) << 4) | value(pair[1])).collect()
}
