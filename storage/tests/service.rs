#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
//! The store's tasks: group commit, fatal fsync failure, dispatch notification.

mod common;

use std::sync::Arc;

use petrel_core::record::RecordInput;
use petrel_storage::disk::{SimDisk, SimDiskFaults};
use petrel_storage::{FlushDiskType, PutError, Store, StoreConfig, StoreError, StoreService};

fn input(body: &[u8]) -> RecordInput<'_> {
    common::input("T", 0, body, b"")
}

fn open(disk: &SimDisk, flush: FlushDiskType) -> Arc<Store> {
    let mut config = StoreConfig::new("/store");
    config.commit_log_file_bytes = 1 << 20;
    config.message_bytes_max = 1 << 16;
    config.max_hash_slots = 64;
    config.max_index_entries = 1024;
    config.flush_disk_type = flush;
    Arc::new(Store::open(Arc::new(disk.clone()), config).unwrap().0)
}

#[tokio::test]
async fn sync_flush_shares_one_fdatasync_among_waiting_producers() {
    let disk = SimDisk::new(3, 1 << 30, SimDiskFaults::default());
    let service = Arc::new(StoreService::start(open(&disk, FlushDiskType::SyncFlush)));
    let syncs_before = disk.stats().syncs;
    let producers: Vec<_> = (0..64)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                let body = format!("message {i}");
                service.put(&input(body.as_bytes()), 10).await.unwrap()
            })
        })
        .collect();
    let mut ends = Vec::new();
    for producer in producers {
        ends.push(producer.await.unwrap().end_offset);
    }
    let syncs = disk.stats().syncs - syncs_before;
    assert!(syncs < 64 / 4, "64 acknowledged appends took {syncs} syncs; group commit shares them");
    let store = service.store().clone();
    assert!(store.flushed_offset() >= *ends.iter().max().unwrap(), "acknowledged means flushed");
    Arc::try_unwrap(service).ok().unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_fsync_stops_the_store_for_good() {
    let disk = SimDisk::new(4, 1 << 30, SimDiskFaults::default());
    let store = open(&disk, FlushDiskType::SyncFlush);
    let service = StoreService::start(store.clone());
    disk.set_faults(SimDiskFaults { fsync_fail_ratio: 1.0, ..SimDiskFaults::default() });
    // The first append creates the first file, whose sync fails: nothing is stored.
    let error = service.put(&input(b"lost?"), 10).await.unwrap_err();
    assert!(matches!(error, PutError::Store(StoreError::Stopped(_))), "{error}");
    disk.set_faults(SimDiskFaults::default());
    let error = service.put(&input(b"after"), 11).await.unwrap_err();
    assert!(
        matches!(error, PutError::Store(StoreError::Stopped(_))),
        "no write after a failed fsync"
    );
    assert!(store.flush_log().is_err(), "flush refuses too: the page cache state is unknown");
    drop(service);
    disk.crash();
    let reopened = open(&disk, FlushDiskType::SyncFlush);
    reopened.check_invariants();
}

#[tokio::test]
async fn an_append_whose_flush_fails_is_stored_but_not_durable() {
    let disk = SimDisk::new(6, 1 << 30, SimDiskFaults::default());
    let store = open(&disk, FlushDiskType::SyncFlush);
    let service = StoreService::start(store.clone());
    service.put(&input(b"first"), 10).await.unwrap();
    disk.set_faults(SimDiskFaults { fsync_fail_ratio: 1.0, ..SimDiskFaults::default() });
    let error = service.put(&input(b"in the page cache"), 11).await.unwrap_err();
    let PutError::NotDurable { appended, .. } = error else {
        panic!("the append succeeded, its flush failed: {error}")
    };
    assert_eq!(appended.queue_offset, 1);
    assert!(store.check_running().is_err(), "the failed flush stopped the store");
}

#[tokio::test]
async fn async_flush_dispatches_without_waiting_for_the_disk() {
    let disk = SimDisk::new(5, 1 << 30, SimDiskFaults::default());
    let service = StoreService::start(open(&disk, FlushDiskType::AsyncFlush));
    let dispatched = service.dispatched();
    let appended = service.put(&input(b"fast"), 10).await.unwrap();
    assert_eq!(service.store().flushed_offset(), 0, "async: acknowledged before any flush");
    assert!(dispatched.wait_for(|d| d >= appended.end_offset).await);
    assert_eq!(service.store().queue_offsets("T", 0), Some((0, 1)));
    service.shutdown().await.unwrap();
    disk.crash();
    let mut config = StoreConfig::new("/store");
    config.commit_log_file_bytes = 1 << 20;
    config.message_bytes_max = 1 << 16;
    config.max_hash_slots = 64;
    config.max_index_entries = 1024;
    let (reopened, report) = Store::open(Arc::new(disk.clone()), config).unwrap();
    assert!(!report.plan.abnormal, "a clean shutdown removes the abort file");
    assert_eq!(reopened.queue_offsets("T", 0), Some((0, 1)), "clean shutdown flushed it");
}

/// A running store cut back (a slave's truncation) starts its confirm machine again at the
/// cut: appends after it are flushed, acknowledged, confirmed and dispatched as before, and a
/// new epoch begins where the new master says.
#[tokio::test]
async fn a_truncated_service_goes_on_from_the_cut() {
    let disk = SimDisk::new(5, 1 << 30, SimDiskFaults::default());
    let service = StoreService::start(open(&disk, FlushDiskType::SyncFlush));
    let mut cut = 0;
    for i in 0..20 {
        let appended = service.put(&input(format!("m{i}").as_bytes()), 10).await.unwrap();
        if i == 10 {
            cut = appended.physical_offset;
        }
    }
    service.dispatched().wait_for(|d| d >= service.store().written_offset()).await;
    service.truncate_to(cut).unwrap();
    service.check_invariants();
    assert_eq!(service.store().written_offset(), cut);
    assert_eq!(service.store().queue_offsets("T", 0), Some((0, 10)));
    assert!(service.begin_epoch(0).is_ok());
    service.begin_epoch(2).unwrap();
    assert!(service.begin_epoch(1).is_err(), "an older epoch is refused");
    let appended = service.put(&input(b"new"), 11).await.unwrap();
    assert_eq!((appended.physical_offset, appended.queue_offset, appended.epoch), (cut, 10, 2));
    service.dispatched().wait_for(|d| d >= appended.end_offset).await;
    assert_eq!(service.store().queue_offsets("T", 0), Some((0, 11)));
    service.check_invariants();
    service.shutdown().await.unwrap();
}
