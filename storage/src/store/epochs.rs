//! The epoch file, `epochFileCheckpoint` in the store's root (RocketMQ's format,
//! `docs/failover.md`): where each epoch's records begin in the commit log.
//!
//! A store whose records are all of epoch 0 (a broker that never ran under a controller)
//! writes no file: its epochs are epoch 0 from the log's first record, as RocketMQ's brokers
//! outside controller mode keep none. The file is written whole, with the previous one kept as
//! `.bak`, before the first record of any later epoch, so that no record is ever on disk
//! without its epoch; reading it at open cuts it to the recovered log.

use std::path::Path;

use petrel_core::ha::epoch::EpochCache;

use super::EpochEntry;
use crate::disk::{self, Disk};
use crate::error::StoreError;

pub(super) const EPOCH_FILE: &str = "epochFileCheckpoint";
/// A file holds at most 65 536 entries of at most 32 bytes, and two header lines.
const EPOCH_FILE_BYTES_MAX: u64 = 4 << 20;

/// The epochs of a log that runs from `log_min` to `end`: the file's (its `.bak` copy's when
/// the file cannot be read), without the epochs that begin at or past `end` or ended before
/// `log_min`; epoch 0 from `log_min` when there is no file and the log holds records.
pub(super) fn load(
    disk: &dyn Disk,
    root: &Path,
    log_min: u64,
    end: u64,
) -> Result<EpochCache, StoreError> {
    let path = root.join(EPOCH_FILE);
    let backup = root.join(format!("{EPOCH_FILE}.bak"));
    let (Ok(log_min), Ok(end)) = (i64::try_from(log_min), i64::try_from(end)) else {
        return Err(StoreError::Layout(format!("log offsets {log_min}-{end} beyond int64")));
    };
    let read = |path: &Path| -> Result<Option<EpochCache>, String> {
        let bytes = disk::read_small(disk, path, EPOCH_FILE_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(bytes) = bytes else { return Ok(None) };
        let text = String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        EpochCache::from_checkpoint(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    };
    let cache = match read(&path) {
        Ok(cache) => cache,
        Err(damaged) => match read(&backup) {
            Ok(Some(cache)) => {
                tracing::warn!(%damaged, "epoch file unreadable; its .bak copy is used");
                Some(cache)
            }
            _ => {
                return Err(StoreError::Layout(format!(
                    "the epoch file and its .bak copy cannot be read ({damaged})"
                )))
            }
        },
    };
    let mut cache = match cache {
        Some(cache) => cache,
        None if end > log_min => {
            EpochCache::from_entries(vec![petrel_core::ha::epoch::EpochEntry {
                epoch: 0,
                start: log_min,
            }])
            .expect("one entry is in order")
        }
        None => EpochCache::default(),
    };
    cache.truncate_suffix(end);
    cache.truncate_prefix(log_min);
    Ok(cache)
}

/// Writes the file from `cache`.
pub(super) fn save(disk: &dyn Disk, root: &Path, cache: &EpochCache) -> Result<(), StoreError> {
    let path = root.join(EPOCH_FILE);
    disk::write_atomically(disk, &path, cache.to_checkpoint().as_bytes()).map_err(|source| {
        // Some of the write may have reached the disk: as after a failed sync, the store
        // stops and recovers from what the disk holds.
        StoreError::SyncFailed { what: format!("cannot write {}", path.display()), source }
    })
}

/// The cache's entries as the store reports them.
pub(super) fn entries(cache: &EpochCache) -> Vec<EpochEntry> {
    (cache.entries().iter())
        .map(|e| EpochEntry { epoch: e.epoch as u32, start_offset: e.start as u64 })
        .collect()
}
