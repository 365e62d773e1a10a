//! The store's settings, named after RocketMQ's `MessageStoreConfig` properties, with its
//! defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use petrel_core::broker::schedule::DelayLevels;
use petrel_core::confirm::{ConfirmConfig, FlushPolicy};

/// RocketMQ's `mappedFileSizeCommitLog`: 1 GiB.
pub const COMMIT_LOG_FILE_BYTES_DEFAULT: u64 = 1 << 30;
/// A dirty page as RocketMQ counts them for `flushCommitLogLeastPages`.
pub const PAGE_BYTES: u64 = 4096;
/// One consume-queue unit: `int64 offset | int32 size | int64 tagsCode`.
pub const CQ_UNIT_BYTES: u64 = 20;
/// RocketMQ's `mappedFileSizeConsumeQueue`: 300 000 units.
pub const CQ_FILE_UNITS_DEFAULT: u64 = 300_000;
/// RocketMQ's `maxMessageSize`: 4 MiB.
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Commit-log files must hold the largest message plus the end-of-file filler, and their
/// offsets must fit the 20-digit names and Java's signed longs.
pub const COMMIT_LOG_FILE_BYTES_MIN: u64 = 4096;
/// The largest commit-log file accepted: 16 times RocketMQ's default 1 GiB. A larger one
/// (a typo of a few digits) would start a broker whose first file cannot be created.
pub const COMMIT_LOG_FILE_BYTES_MAX: u64 = 16 << 30;

/// When a producer is acknowledged relative to the disk (`flushDiskType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Acknowledge after the group commit's fdatasync; consumers see only flushed records.
    SyncFlush,
    /// Acknowledge once written to the page cache; flush in the background.
    AsyncFlush,
}

impl std::fmt::Display for FlushDiskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        })
    }
}

impl std::str::FromStr for FlushDiskType {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "SYNC_FLUSH" => Ok(FlushDiskType::SyncFlush),
            "ASYNC_FLUSH" => Ok(FlushDiskType::AsyncFlush),
            other => Err(format!("flushDiskType {other} is neither SYNC_FLUSH nor ASYNC_FLUSH")),
        }
    }
}

/// Everything the store needs to know; `StoreConfig::new` gives RocketMQ's defaults.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `storePathRootDir`: holds `commitlog/`, `consumequeue/`, `checkpoint`, `abort`, ...
    pub root: PathBuf,
    /// `mappedFileSizeCommitLog`.
    pub commit_log_file_bytes: u64,
    /// `mappedFileSizeConsumeQueue` / 20.
    pub cq_file_units: u64,
    /// `maxMessageSize`: bodies over this are refused.
    pub message_bytes_max: usize,
    /// Replicas that must hold a record before its producer is answered: 1 for a
    /// SYNC_MASTER, 0 otherwise.
    pub replica_acks_required: usize,
    /// `flushDiskType`.
    pub flush_disk_type: FlushDiskType,
    /// `syncFlushTimeout`: how long a SYNC_FLUSH append waits before FLUSH_DISK_TIMEOUT.
    pub sync_flush_timeout_ms: u64,
    /// `flushIntervalCommitLog`.
    pub flush_interval_ms: u64,
    /// `flushCommitLogLeastPages`: async flush waits for this many dirty 4 KiB pages...
    pub flush_least_pages: u64,
    /// `flushCommitLogThoroughInterval`: ...unless this long has passed since the last flush.
    pub flush_thorough_interval_ms: u64,
    /// `flushIntervalConsumeQueue`: consume queues and the checkpoint.
    pub flush_cq_interval_ms: u64,
    /// `enabledAppendPropCRC`: end every record with a CRC of the whole record. RocketMQ's
    /// default is off; Petrel's is on, because the body CRC alone lets torn properties through.
    pub append_record_crc: bool,
    /// `checkCRCOnRecover`.
    pub check_crc_on_recover: bool,
    /// The broker's address, written into every record as the store host.
    pub store_host: SocketAddr,
    /// `fileReservedTime`, hours: commit-log files older than this are deleted.
    pub file_reserved_hours: u64,
    /// `deleteWhen`: the hours (UTC) at which expired files are deleted, `;`-separated.
    pub delete_when: Vec<u8>,
    /// `diskMaxUsedSpaceRatio`: above this share of the disk used, expired files go at any hour.
    pub disk_max_used_ratio: u64,
    /// `diskSpaceCleanForciblyRatio`: above this, the oldest files go even if not expired.
    pub disk_clean_forcibly_ratio: u64,
    /// `diskSpaceWarningLevelRatio`: above this, appends are refused.
    pub disk_warning_ratio: u64,
    /// `deleteFileBatchMax`: at most this many files go per pass.
    pub delete_files_batch_max: usize,
    /// `messageIndexEnable`: keep the key index under `index/`.
    pub message_index_enable: bool,
    /// `maxHashSlotNum`.
    pub max_hash_slots: u32,
    /// `maxIndexNum`.
    pub max_index_entries: u32,
    /// `messageDelayLevel`: the schedule topic's consume queues hold each message's due time,
    /// computed from its level.
    pub delay_levels: DelayLevels,
    /// A broker in controller mode (`enableControllerMode`): after a restart consumers see
    /// only what was confirmed before it (`RecoveryPlan::confirmed`), and the confirm
    /// machine starts as a slave's, confirming only what a master confirms, until the
    /// controller says otherwise.
    pub controller_mode: bool,
    /// The checkpoint keeps the next recovery's scan at or before this run's
    /// (`RecoveryPlan::scan_from`) until [`Store::release_recovery_start`]: the owner still
    /// has work on the range recovery read (the broker's repair of transaction ops a crash
    /// tore off its commits), and a crash before that work is done must have the next
    /// recovery read the range again rather than start past it.
    ///
    /// [`Store::release_recovery_start`]: crate::Store::release_recovery_start
    pub hold_recovery_start: bool,
}

impl StoreConfig {
    /// RocketMQ's defaults, with the store under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            root: root.into(),
            commit_log_file_bytes: COMMIT_LOG_FILE_BYTES_DEFAULT,
            cq_file_units: CQ_FILE_UNITS_DEFAULT,
            message_bytes_max: MESSAGE_BYTES_MAX_DEFAULT,
            replica_acks_required: 0,
            flush_disk_type: FlushDiskType::AsyncFlush,
            sync_flush_timeout_ms: 5_000,
            flush_interval_ms: 500,
            flush_least_pages: 4,
            flush_thorough_interval_ms: 10_000,
            flush_cq_interval_ms: 1_000,
            append_record_crc: true,
            check_crc_on_recover: true,
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            file_reserved_hours: 72,
            delete_when: vec![4],
            disk_max_used_ratio: 75,
            disk_clean_forcibly_ratio: 85,
            disk_warning_ratio: 90,
            delete_files_batch_max: 10,
            message_index_enable: true,
            max_hash_slots: crate::index::SLOTS_DEFAULT,
            max_index_entries: crate::index::ENTRIES_DEFAULT,
            delay_levels: DelayLevels::default(),
            controller_mode: false,
            hold_recovery_start: false,
        }
    }

    /// The confirm machine's configuration for `flushDiskType` and the flush settings: under
    /// SYNC_FLUSH producers and consumers wait for the group commit (so a crash can never take
    /// back what a consumer saw), under ASYNC_FLUSH for the append alone (as RocketMQ).
    pub fn confirm_config(&self) -> ConfirmConfig {
        let flush = match self.flush_disk_type {
            FlushDiskType::SyncFlush => FlushPolicy::Sync,
            FlushDiskType::AsyncFlush => FlushPolicy::Async {
                interval_ms: self.flush_interval_ms.max(1),
                least_bytes: self.flush_least_pages * PAGE_BYTES,
                thorough_ms: self.flush_thorough_interval_ms,
            },
        };
        let acks_required = self.replica_acks_required;
        // In controller mode nothing more is confirmed until the controller names a master.
        ConfirmConfig {
            flush,
            acks_required,
            confirm_waits_for_replicas: false,
            upstream_confirms: self.controller_mode,
        }
    }

    pub fn commit_log_dir(&self) -> PathBuf {
        self.root.join("commitlog")
    }
    pub fn cq_root(&self) -> PathBuf {
        self.root.join("consumequeue")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    pub fn abort_path(&self) -> PathBuf {
        self.root.join("abort")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn cq_file_bytes(&self) -> u64 {
        self.cq_file_units * CQ_UNIT_BYTES
    }

    /// Refuses settings the store cannot run with, saying which and why.
    pub fn validate(&self) -> Result<(), String> {
        let file = self.commit_log_file_bytes;
        if !(COMMIT_LOG_FILE_BYTES_MIN..=COMMIT_LOG_FILE_BYTES_MAX).contains(&file) {
            return Err(format!(
                "mappedFileSizeCommitLog={file} is outside [{COMMIT_LOG_FILE_BYTES_MIN}, \
                 {COMMIT_LOG_FILE_BYTES_MAX}] (RocketMQ's default is 1 GiB)"
            ));
        }
        for (name, ratio) in [
            ("diskMaxUsedSpaceRatio", self.disk_max_used_ratio),
            ("diskSpaceCleanForciblyRatio", self.disk_clean_forcibly_ratio),
            ("diskSpaceWarningLevelRatio", self.disk_warning_ratio),
        ] {
            if ratio > 100 {
                return Err(format!("{name}={ratio} is a percentage of the disk: 0 to 100"));
            }
        }
        if self.message_bytes_max as u64 + 8 > file {
            return Err(format!(
                "maxMessageSize={} does not fit a commit-log file of {file} bytes",
                self.message_bytes_max
            ));
        }
        if self.max_hash_slots == 0 || self.max_index_entries < 2 {
            return Err("maxHashSlotNum must be at least 1 and maxIndexNum at least 2".into());
        }
        if self.cq_file_units == 0 {
            return Err("mappedFileSizeConsumeQueue must hold at least one unit".into());
        }
        Ok(())
    }
}
