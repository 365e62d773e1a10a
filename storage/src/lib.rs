//! petrel-storage: the broker's store in RocketMQ's on-disk formats.
//!
//! `docs/storage-format.md` is the byte-level specification and crash analysis this crate
//! implements. All file access goes through [`disk::Disk`], so the same store runs on the real
//! file system and on the simulator's faulty disk.

pub mod checkpoint;
pub mod cleanup;
pub mod config;
pub mod consume_queue;
pub mod disk;
pub mod error;
pub mod fuzzing;
pub mod index;
pub mod model;
pub mod recovery;
pub mod segments;
pub mod service;
pub mod store;
pub mod timer;

pub use config::{FlushDiskType, StoreConfig};
pub use error::StoreError;
pub use service::{PutError, StoreService};
pub use store::{
    Appended, GetMessages, GetStatus, LogEntry, ReadLimits, RecordFilter, RecoveryReport, Store,
};
