//! The store's errors: each says what failed and what an operator can do about it.

use std::io;

use petrel_core::record::RecordError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed; `what` names the file and the operation.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// An fdatasync or directory fsync failed: what is on disk is unknown from here on. The
    /// store turns this into `Stopped` (see `docs/storage-format.md` §9).
    #[error("{what}: {source}")]
    SyncFailed { what: String, source: io::Error },
    /// A sync failed earlier, so what is on disk is unknown; the store accepts nothing more and
    /// must be restarted to recover from what the disk really holds.
    #[error("the store stopped after a failed disk sync ({0}); restart the broker to recover")]
    Stopped(String),
    /// The body is larger than `maxMessageSize`.
    #[error("message body is {size} bytes, larger than maxMessageSize={max}")]
    MessageTooLarge { size: usize, max: usize },
    /// The disk is fuller than `diskSpaceWarningLevelRatio`; appends resume once cleanup or an
    /// operator frees space.
    #[error(
        "disk is {used_percent}% full, over diskSpaceWarningLevelRatio={limit_percent}%: \
         writes are refused until it is below; the broker deletes commit-log files older than \
         fileReservedTime as they come due, and an operator can free space on the disk"
    )]
    DiskFull { used_percent: u64, limit_percent: u64 },
    /// The topic breaks RocketMQ's naming rule.
    #[error("topic {0:?} is not valid: use 1 to 127 characters of letters, digits, %, |, _ and -")]
    InvalidTopic(String),
    /// The message cannot be encoded as a record.
    #[error("message cannot be stored: {0}")]
    Record(#[from] RecordError),
    /// The records of one append do not make a batch.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A write of an older epoch than the store has seen: a deposed master's.
    #[error("a write of epoch {epoch} after epoch {current}: this broker is no longer the master")]
    StaleEpoch { epoch: u32, current: u32 },
    /// The store directory is not laid out as the configuration says.
    #[error("store directory is damaged or misconfigured: {0}")]
    Layout(String),
    /// The configuration cannot be run with.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(what: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io { what: what.into(), source }
    }

    /// Whether a file operation failed for want of space on the disk.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}

/// Adds context to I/O results.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
    /// For the result of a sync, whose failure is fatal.
    fn sync_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(what(), source))
    }
    fn sync_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::SyncFailed { what: what(), source })
    }
}
