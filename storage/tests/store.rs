#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
//! The store end to end on both disks: append, flush, dispatch, read, restart, crash.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::input;
use petrel_core::record::{put_property, scan_record, sys_flag, Checks, RecordInput, Scanned};
use petrel_storage::disk::{Disk, FsDisk, SimDisk, SimDiskFaults};
use petrel_storage::{FlushDiskType, GetStatus, ReadLimits, Store, StoreConfig};

fn config(root: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(root);
    config.commit_log_file_bytes = 16 * 1024;
    config.cq_file_units = 50;
    config.max_hash_slots = 64;
    config.max_index_entries = 256;
    config.message_bytes_max = 2048;
    config.flush_disk_type = FlushDiskType::SyncFlush;
    config
}

fn body(i: usize) -> Vec<u8> {
    format!("message-{i}-").repeat(1 + i % 40).into_bytes()
}

/// The bodies of every message of a queue, in order.
fn all(store: &Store, topic: &str, queue_id: i32) -> Vec<Vec<u8>> {
    common::read_queue(store, topic, queue_id).iter().map(|m| body_of(m)).collect()
}

fn body_of(message: &[u8]) -> Vec<u8> {
    match scan_record(message, Checks { physical_offset: None, crc: true }) {
        Scanned::Record(record) => record.body.to_vec(),
        _ => panic!("a read message fails its checks"),
    }
}

fn exercise(disk: Arc<dyn Disk>, root: &Path) {
    let (store, report) = Store::open(disk.clone(), config(root)).unwrap();
    assert_eq!(report.plan.end, 0);
    let mut props = Vec::new();
    put_property(&mut props, "TAGS", "TagA");
    put_property(&mut props, "KEYS", "k");
    for i in 0..300 {
        let b = body(i);
        let appended = store
            .append(&input("TopicTest", (i % 3) as i32, &b, &props), 5_000 + i as i64, 0)
            .unwrap();
        assert_eq!(appended.queue_offset as usize, i / 3);
    }
    assert!(store.written_offset() > 16 * 1024 * 4, "the log rolled over several files");
    assert_eq!(
        store.get_messages("TopicTest", 0, 0, ReadLimits::default(), &|_| true).status,
        GetStatus::NoMatchedLogicQueue,
        "nothing dispatched before the flush under SYNC_FLUSH"
    );
    common::flush_and_dispatch(&store);
    for queue in 0..3 {
        let expected: Vec<Vec<u8>> = (0..300).filter(|i| i % 3 == queue).map(body).collect();
        assert_eq!(all(&store, "TopicTest", queue as i32), expected);
    }
    let tag = petrel_core::record::tags_code(b"TagA");
    let filtered =
        store.get_messages("TopicTest", 1, 0, ReadLimits::default(), &|code| code != tag);
    assert_eq!(filtered.status, GetStatus::NoMatchedMessage);
    assert!(filtered.behind_bytes > 0, "units a filter passed over were still looked at");
    // The newest record read: the bytes after it are its own length less; here none.
    let newest = store.get_messages("TopicTest", 2, 99, ReadLimits::default(), &|_| true);
    assert_eq!(newest.behind_bytes, newest.messages[0].len() as u64);
    let oldest = store.get_messages("TopicTest", 0, 0, ReadLimits::default(), &|_| true);
    let read: u64 = oldest.messages.iter().map(|m| m.len() as u64).sum();
    assert!(oldest.behind_bytes > read, "the first 32 of 300 records are far behind the end");
    let past_end = store.get_messages("TopicTest", 1, 100, ReadLimits::default(), &|_| true);
    assert_eq!(past_end.status, GetStatus::OffsetOverflowOne);
    assert_eq!(past_end.behind_bytes, 0, "a read that looked at no record is behind nothing");
    assert_eq!(
        store.get_messages("TopicTest", 1, 101, ReadLimits::default(), &|_| true).status,
        GetStatus::OffsetOverflowBadly
    );
    assert_eq!(store.offset_by_time("TopicTest", 0, 5_000 + 150), 50);
    assert_eq!(store.earliest_time("TopicTest", 2), Some(5_002));
    store.check_invariants();
    store.shutdown().unwrap();
    drop(store);

    let (store, report) = Store::open(disk, config(root)).unwrap();
    assert!(!report.plan.abnormal);
    assert_eq!(
        report.plan.redispatch_from, report.plan.end,
        "a clean shutdown needs no re-dispatch"
    );
    for queue in 0..3 {
        assert_eq!(all(&store, "TopicTest", queue).len(), 100);
    }
    let appended = store.append(&input("TopicTest", 0, b"after", &props), 9_000, 0).unwrap();
    assert_eq!(appended.queue_offset, 100);
}

#[test]
fn store_on_the_real_file_system() {
    let dir = tempfile::tempdir().unwrap();
    exercise(Arc::new(FsDisk), dir.path());
    let names = FsDisk.list(&dir.path().join("consumequeue/TopicTest/0")).unwrap();
    assert_eq!(names[0], "00000000000000000000");
    assert_eq!(names[1], "00000000000000001000", "the second file starts at 50 units x 20 bytes");
}

#[test]
fn store_on_the_simulated_disk() {
    let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
    exercise(Arc::new(disk), Path::new("/store"));
}

#[test]
fn a_crash_keeps_every_flushed_message() {
    let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
    for seed in 0..20 {
        let disk = SimDisk::new(seed, 1 << 30, faults);
        let root = Path::new("/store");
        let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
        for i in 0..100 {
            let b = body(i);
            store.append(&input("T", 0, &b, b""), i as i64, 0).unwrap();
            if i == 59 {
                common::flush_and_dispatch(&store);
            }
        }
        store.dispatch().unwrap();
        drop(store);
        disk.crash();
        let (store, report) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
        assert!(report.plan.abnormal);
        let got = all(&store, "T", 0);
        assert!(got.len() >= 60, "seed {seed}: {} of 60 flushed messages back", got.len());
        let expected: Vec<Vec<u8>> = (0..got.len()).map(body).collect();
        assert_eq!(got, expected, "seed {seed}: a prefix of what was appended");
        let appended = store.append(&input("T", 0, b"next", b""), 1_000, 0).unwrap();
        assert_eq!(appended.queue_offset as usize, got.len(), "seed {seed}: offsets continue");
    }
}

#[test]
fn index_survives_read_errors_during_recovery() {
    for seed in 0..40 {
        let disk = SimDisk::new(seed, 1 << 30, SimDiskFaults::default());
        let root = Path::new("/store");
        let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
        for i in 0..30 {
            let mut props = Vec::new();
            put_property(&mut props, "KEYS", format!("k{i}"));
            store.append(&input("T", i % 2, b"x", &props), 1_000 + i as i64, 0).unwrap();
        }
        common::flush_and_dispatch(&store);
        drop(store);
        disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.2, ..SimDiskFaults::default() });
        let opened = Store::open(Arc::new(disk.clone()), config(root));
        disk.set_faults(SimDiskFaults::default());
        let Ok((store, _)) = opened else { continue };
        for i in 0..30 {
            let found = store.query_by_key("T", &format!("k{i}"), 4, 0, i64::MAX);
            assert_eq!(found.len(), 1, "seed {seed}: k{i} found {} times", found.len());
        }
    }
}

#[test]
fn query_by_key_and_unique_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(Arc::new(FsDisk), config(dir.path())).unwrap();
    for i in 0..40 {
        let mut props = Vec::new();
        put_property(&mut props, "KEYS", format!("order-{} customer-{}", i, i % 4));
        put_property(&mut props, "UNIQ_KEY", format!("7F0000010001{i:020X}"));
        store
            .append(&input("TopicTest", 0, &body(i), &props), 10_000 + i as i64 * 1_000, 0)
            .unwrap();
    }
    common::flush_and_dispatch(&store);
    let by_key = store.query_by_key("TopicTest", "order-7", 32, 0, i64::MAX);
    assert_eq!(by_key.len(), 1);
    let shared = store.query_by_key("TopicTest", "customer-1", 32, 0, i64::MAX);
    assert_eq!(shared.len(), 10, "keys are split on spaces");
    let in_window = store.query_by_key("TopicTest", "customer-1", 32, 20_000, 30_000);
    assert_eq!(in_window.len(), 2, "stored at 23 s and 27 s");
    let unique =
        store.query_by_key("TopicTest", &format!("7F0000010001{:020X}", 9), 32, 0, i64::MAX);
    assert_eq!(unique.len(), 1);
    assert!(store.query_by_key("OtherTopic", "order-7", 32, 0, i64::MAX).is_empty());
    let names = FsDisk.list(&dir.path().join("index")).unwrap();
    assert_eq!(names, vec!["19700101000010000"], "named by the first record's store time");
}

#[test]
fn cleanup_deletes_expired_files_and_refuses_writes_when_full() {
    let capacity = 400 * 1024;
    let disk = SimDisk::new(9, capacity, SimDiskFaults::default());
    let root = Path::new("/store");
    let mut config = config(root);
    config.file_reserved_hours = 1;
    config.delete_when = vec![];
    config.disk_max_used_ratio = 60;
    let (store, _) = Store::open(Arc::new(disk.clone()), config).unwrap();
    let hour = 3_600_000;
    for i in 0..120 {
        let b = vec![b'x'; 1500];
        store.append(&input("T", 0, &b, b""), i * 1000, 0).unwrap();
        common::flush_and_dispatch(&store);
    }
    let files_before = disk.list(Path::new("/store/commitlog")).unwrap().len();
    assert!(files_before >= 10);
    assert_eq!(store.clean(2 * hour, false).unwrap(), 0, "under 60% and not deleteWhen: nothing");
    store.delete_expired_manually();
    assert_eq!(store.clean(2 * hour, false).unwrap(), 10, "an operator's request deletes a batch");
    let (min, max) = store.queue_offsets("T", 0).unwrap();
    assert!(min > 0 && max == 120, "the queue's min offset follows the log: {min}..{max}");
    let read = store.get_messages("T", 0, 0, ReadLimits::default(), &|_| true);
    assert_eq!(read.status, GetStatus::OffsetTooSmall);
    assert_eq!(read.next_begin_offset, min);
    let read = store.get_messages("T", 0, min, ReadLimits::default(), &|_| true);
    assert_eq!(read.status, GetStatus::Found, "the first kept message reads");
    while store.append(&input("T", 0, &[b'y'; 1500], b""), 3 * hour, 0).is_ok() {
        common::flush_and_dispatch(&store);
        store.clean(3 * hour, false).unwrap();
    }
    let error = store.append(&input("T", 0, b"z", b""), 3 * hour, 0).unwrap_err();
    assert!(error.to_string().contains("writes are refused"), "{error}");
}

/// Whether a file has expired is read from the next file's first store timestamp, which
/// only the record CRC property covers (`enabledAppendPropCRC`, off here as in RocketMQ): a
/// misread one must not delete a file before its time.
#[test]
fn a_misread_timestamp_deletes_no_file_before_it_expires() {
    for seed in 0..10 {
        let disk = SimDisk::new(seed, 1 << 30, SimDiskFaults::default());
        let mut config = config(Path::new("/store"));
        config.append_record_crc = false;
        config.file_reserved_hours = 1;
        config.delete_when = vec![];
        let (store, _) = Store::open(Arc::new(disk.clone()), config).unwrap();
        let now = 1_700_000_000_000;
        for i in 0..400 {
            store.append(&input("T", 0, b"x", b""), now + i, 0).unwrap();
        }
        common::flush_and_dispatch(&store);
        disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.5, ..SimDiskFaults::default() });
        for _ in 0..500 {
            let deleted = store.clean(now + 60_000, true).unwrap();
            assert_eq!(deleted, 0, "seed {seed}: files of the last minute deleted");
        }
    }
}

/// A store stopped cleanly on a disk that then filled up opens read-only: no room for the
/// abort file is no reason to keep consumers from what it holds. Writes resume once a cleanup
/// pass finds room and writes the abort file (issue 22).
#[test]
fn a_full_disk_opens_read_only_and_writes_resume_when_there_is_room() {
    let capacity = 1 << 20;
    let disk = SimDisk::new(5, capacity, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    for i in 0..10 {
        store.append(&input("T", 0, &body(i), b""), i as i64, 0).unwrap();
    }
    common::flush_and_dispatch(&store);
    store.shutdown().unwrap();
    drop(store);
    disk.set_capacity(capacity - disk.space(root).unwrap().free_bytes);

    let (store, report) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    assert!(!report.plan.abnormal);
    assert!(!disk.exists(&root.join("abort")), "no room for it");
    assert_eq!(all(&store, "T", 0), (0..10).map(body).collect::<Vec<_>>(), "reads are served");
    let refused = store.append(&input("T", 0, b"more", b""), 100, 0).unwrap_err();
    assert!(refused.to_string().contains("writes are refused"), "{refused}");
    store.clean(1_000, false).unwrap();
    assert!(store.append(&input("T", 0, b"more", b""), 100, 0).is_err(), "still full");

    disk.set_capacity(capacity);
    store.clean(2_000, false).unwrap();
    assert!(disk.exists(&root.join("abort")), "written once there is room");
    let appended = store.append(&input("T", 0, b"more", b""), 100, 0).unwrap();
    assert_eq!(appended.queue_offset, 10);
}

#[test]
fn reads_are_checked_against_their_unit_and_retried() {
    let disk = SimDisk::new(3, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    for i in 0..10 {
        store.append(&input("T", 0, &body(i), b""), i as i64, 0).unwrap();
    }
    common::flush_and_dispatch(&store);
    // A read that flips a bit now and then: every message still comes whole.
    disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.2, ..SimDiskFaults::default() });
    for _ in 0..20 {
        assert_eq!(all(&store, "T", 0), (0..10).map(body).collect::<Vec<_>>());
    }
    disk.set_faults(SimDiskFaults::default());
    // Damage on the disk itself, in the body of the fourth message: the reader gets the three
    // before it, then is stopped there, never handed the damaged record.
    let fourth = store.get_messages("T", 0, 3, ReadLimits::default(), &|_| true).messages[0].len();
    let at = (0..3)
        .map(|i| {
            store.get_messages("T", 0, i, ReadLimits::default(), &|_| true).messages[0].len() as u64
        })
        .sum::<u64>();
    disk.corrupt(&root.join("commitlog/00000000000000000000"), (at + fourth as u64 - 3) * 8)
        .unwrap();
    let got = store.get_messages("T", 0, 0, ReadLimits::default(), &|_| true);
    assert_eq!((got.status, got.messages.len(), got.next_begin_offset), (GetStatus::Found, 3, 3));
    let got = store.get_messages("T", 0, 3, ReadLimits::default(), &|_| true);
    assert_eq!(
        (got.status, got.messages.len(), got.next_begin_offset),
        (GetStatus::ReadFailed, 0, 3)
    );
}

/// A search by time reads store timestamps, which carry no checksum: a misread one must not
/// move the answer past the first message stored at or after the time (a reset by time would
/// skip it).
#[test]
fn a_search_by_time_is_not_misled_by_misread_timestamps() {
    for seed in 0..50 {
        let disk = SimDisk::new(seed, 1 << 30, SimDiskFaults::default());
        let (store, _) = Store::open(Arc::new(disk.clone()), config(Path::new("/store"))).unwrap();
        for i in 0..40 {
            store.append(&input("T", 0, b"x", b""), 1_000 + 10 * i as i64, 0).unwrap();
        }
        common::flush_and_dispatch(&store);
        disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.5, ..SimDiskFaults::default() });
        for i in 0..40u64 {
            let found = store.offset_by_time("T", 0, 1_000 + 10 * i as i64 - 5);
            assert!(found <= i, "seed {seed}: the search for message {i}'s time answered {found}");
        }
    }
}

/// The runtime table's `earliestMessageTimeStamp` reads the log's first record, whose store
/// timestamp no checksum covers with `enabledAppendPropCRC` off: a misread one is no answer.
#[test]
fn the_earliest_message_time_is_not_misread_when_reads_flip_bits() {
    for seed in 0..20 {
        let disk = SimDisk::new(seed, 1 << 30, SimDiskFaults::default());
        let mut config = config(Path::new("/store"));
        config.append_record_crc = false;
        let (store, _) = Store::open(Arc::new(disk.clone()), config).unwrap();
        store.append(&input("T", 0, b"x", b""), 1_000, 0).unwrap();
        common::flush_and_dispatch(&store);
        disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.5, ..SimDiskFaults::default() });
        for _ in 0..200 {
            let read = store.earliest_message_time();
            assert!(read.is_none_or(|t| t == 1_000), "seed {seed}: read {read:?}");
        }
    }
}

#[test]
fn a_record_read_by_offset_is_whole_or_nothing_when_reads_flip_bits() {
    for seed in 0..50 {
        let disk = SimDisk::new(seed, 1 << 30, SimDiskFaults::default());
        let (store, _) = Store::open(Arc::new(disk.clone()), config(Path::new("/store"))).unwrap();
        let at: Vec<u64> = (0..40)
            .map(|i| store.append(&input("T", 0, &body(i), b""), 1_000, 0).unwrap().physical_offset)
            .collect();
        common::flush_and_dispatch(&store);
        let whole: Vec<_> = at.iter().map(|a| store.message_at(*a).unwrap()).collect();
        disk.set_faults(SimDiskFaults { read_bitflip_ratio: 0.5, ..SimDiskFaults::default() });
        for (i, offset) in at.iter().enumerate() {
            // A misread size must not make the answer run into the next record.
            if let Some(read) = store.message_at(*offset) {
                assert_eq!(read, whole[i], "seed {seed}: the record at {offset}");
            }
        }
    }
}

#[test]
fn a_batch_is_one_append_at_consecutive_offsets() {
    let disk = SimDisk::new(11, 1 << 30, SimDiskFaults::default());
    let (store, _) = Store::open(Arc::new(disk.clone()), config(Path::new("/store"))).unwrap();
    store.append(&input("T", 0, b"single", b""), 1, 0).unwrap();
    let bodies = [body(1), body(2), body(3)];
    let batch: Vec<_> = bodies.iter().map(|b| input("T", 0, b, b"")).collect();
    let mut starts = Vec::new();
    let appended = store.append_batch(&batch, 2, 0, &mut |at, _| starts.push(at)).unwrap();
    assert_eq!((appended.queue_offset, appended.count), (1, 3));
    assert_eq!(starts[0], appended.physical_offset);
    assert_eq!(appended.end_offset, appended.physical_offset + u64::from(appended.size));
    assert_eq!(store.append(&input("T", 0, b"after", b""), 3, 0).unwrap().queue_offset, 4);
    common::flush_and_dispatch(&store);
    let read = common::read_queue(&store, "T", 0);
    let got: Vec<Vec<u8>> = read.iter().map(|m| body_of(m)).collect();
    assert_eq!(got, [b"single".to_vec(), body(1), body(2), body(3), b"after".to_vec()]);
    // Each record of the batch starts where the callback said.
    let batch_starts: Vec<u64> = read[1..4]
        .iter()
        .map(|m| match scan_record(m, Checks { physical_offset: None, crc: true }) {
            Scanned::Record(record) => record.physical_offset as u64,
            _ => panic!("a record"),
        })
        .collect();
    assert_eq!(batch_starts, starts);

    // A unit of several queues (a transaction's commit and its op message): each dispatched
    // record takes its own queue's next offset; a prepared one takes none.
    let prepared =
        RecordInput { sys_flag: sys_flag::TRANSACTION_PREPARED, ..input("T", 0, b"p", b"") };
    let unit = [input("T", 0, b"a", b""), prepared, input("U", 2, b"b", b"")];
    let mut unit_starts = Vec::new();
    let appended =
        store.append_batch(&unit, 4, 0, &mut |at, queue| unit_starts.push((at, queue))).unwrap();
    assert_eq!((appended.queue_offset, appended.count), (5, 3));
    let queue_offsets: Vec<i64> = unit_starts.iter().map(|(_, queue)| *queue).collect();
    assert_eq!(queue_offsets, [5, 0, 0]);
    common::flush_and_dispatch(&store);
    assert_eq!(common::read_queue(&store, "T", 0).len(), 6);
    let other = common::read_queue(&store, "U", 2);
    assert_eq!(body_of(&other[0]), b"b");
    assert_eq!(store.queue_offsets("U", 2), Some((0, 1)));
    let written = store.written_offset();
    let huge = vec![b'h'; 2000];
    let too_big: Vec<_> = (0..9).map(|_| input("T", 0, &huge, b"")).collect();
    let error = store.append_batch(&too_big, 5, 0, &mut |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("larger than"), "{error}");
    assert_eq!(store.written_offset(), written, "a refused batch stores nothing");

    // A batch whose write fails stores none of it: the next append takes its offsets.
    disk.set_faults(SimDiskFaults { enospc_ratio: 1.0, ..SimDiskFaults::default() });
    assert!(store.append_batch(&batch, 6, 0, &mut |_, _| {}).is_err());
    disk.set_faults(SimDiskFaults::default());
    assert_eq!(store.written_offset(), written, "a failed batch stores nothing");
    assert_eq!(store.append(&input("T", 0, b"next", b""), 7, 0).unwrap().queue_offset, 6);
    store.check_invariants();
}

/// Units whose write failed are written by the next dispatch round, before it reports its
/// position: a dispatched offset names units a reader can see (it wakes held pulls).
#[test]
fn a_failed_dispatch_writes_its_units_in_the_next_round() {
    let disk = SimDisk::new(14, 1 << 30, SimDiskFaults::default());
    let (store, _) = Store::open(Arc::new(disk.clone()), config(Path::new("/store"))).unwrap();
    common::flush_and_dispatch(&store);
    for i in 0..3 {
        store.append(&input("T", 0, &body(i), b""), i as i64, 0).unwrap();
    }
    let flushed = store.flush_log().unwrap();
    store.confirm(flushed);
    disk.set_faults(SimDiskFaults { enospc_ratio: 1.0, ..SimDiskFaults::default() });
    assert!(store.dispatch().is_err());
    disk.set_faults(SimDiskFaults::default());
    assert_eq!(store.dispatch().unwrap(), flushed);
    assert_eq!(all(&store, "T", 0), (0..3).map(body).collect::<Vec<_>>());
    store.check_invariants();
}

/// A round that fails part of the way leaves the queues it wrote readable past the dispatched
/// offset, but never past the handed-over one: the timer wheel cuts the units it took from its
/// queue there (at the dispatched offset it lost messages, seed 337704023 of timer_failover).
#[test]
fn readable_units_never_pass_the_handed_over_offset() {
    let disk = SimDisk::new(21, 1 << 30, SimDiskFaults::default());
    let (store, _) = Store::open(Arc::new(disk.clone()), config(Path::new("/store"))).unwrap();
    let record_end = |message: &Vec<u8>| match scan_record(
        message,
        Checks { physical_offset: None, crc: false },
    ) {
        Scanned::Record(record) => record.physical_offset as u64 + message.len() as u64,
        _ => panic!("a read message fails its checks"),
    };
    let mut readable_past_dispatched = 0;
    for round in 0..100 {
        for queue in 0..3 {
            store.append(&input("T", queue, &body(round), b""), round as i64, 0).unwrap();
        }
        let flushed = store.flush_log().unwrap();
        store.confirm(flushed);
        disk.set_faults(SimDiskFaults { enospc_ratio: 0.2, ..SimDiskFaults::default() });
        let _ = store.dispatch();
        disk.set_faults(SimDiskFaults::default());
        let (dispatched, handed_over) = (store.dispatched_offset(), store.handed_over_offset());
        assert!(dispatched <= handed_over, "dispatched {dispatched} past {handed_over}");
        let read = (0..3).flat_map(|queue| common::read_queue(&store, "T", queue));
        let read_end = read.map(|message| record_end(&message)).max().unwrap_or(0);
        assert!(read_end <= handed_over, "round {round}: read to {read_end}, handed {handed_over}");
        if read_end > dispatched {
            readable_past_dispatched += 1;
        }
    }
    assert!(readable_past_dispatched > 0, "no round failed after writing a queue");
    let end = store.dispatch().unwrap();
    assert_eq!((store.dispatched_offset(), store.handed_over_offset()), (end, end));
    store.check_invariants();
}

/// The store host is the store's own, whatever the caller passed: an IPv6 one (12 bytes
/// longer) must not change the length reserved for the record, nor where the next one goes.
#[test]
fn a_record_is_stored_with_the_store_host_whatever_the_input_says() {
    let disk = SimDisk::new(13, 1 << 30, SimDiskFaults::default());
    let (store, _) = Store::open(Arc::new(disk), config(Path::new("/store"))).unwrap();
    let v6 = RecordInput { store_host: "[::1]:10911".parse().unwrap(), ..input("T", 0, b"a", b"") };
    let first = store.append(&v6, 1, 0).unwrap();
    assert_eq!(first.end_offset, first.physical_offset + u64::from(first.size));
    let batch = [v6, v6];
    store.append_batch(&batch, 2, 0, &mut |_, _| {}).unwrap();
    store.append(&input("T", 0, b"d", b""), 3, 0).unwrap();
    common::flush_and_dispatch(&store);
    let read = common::read_queue(&store, "T", 0);
    let got: Vec<Vec<u8>> = read.iter().map(|m| body_of(m)).collect();
    assert_eq!(got, [b"a".to_vec(), b"a".to_vec(), b"a".to_vec(), b"d".to_vec()]);
    store.check_invariants();
}

#[test]
fn appends_carry_their_epoch_and_an_older_one_is_refused() {
    let disk = SimDisk::new(12, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    assert_eq!(store.epochs(), []);
    store.append(&input("T", 0, b"a", b""), 1, 0).unwrap();
    let second = store.append(&input("T", 0, b"b", b""), 2, 2).unwrap();
    assert_eq!(second.epoch, 2);
    store.append(&input("T", 0, b"c", b""), 3, 2).unwrap();
    let epochs = store.epochs();
    assert_eq!(epochs.len(), 2);
    assert_eq!((epochs[0].epoch, epochs[0].start_offset), (0, 0));
    assert_eq!((epochs[1].epoch, epochs[1].start_offset), (2, second.physical_offset));
    let error = store.append(&input("T", 0, b"stale", b""), 4, 1).unwrap_err();
    assert!(error.to_string().contains("epoch 1 after epoch 2"), "{error}");
    store.check_invariants();
    // Epoch 2's first record was preceded by the epoch file, in RocketMQ's text form.
    let file = disk.image(&root.join("epochFileCheckpoint")).unwrap();
    let entries = format!("0-0\n2-{}\n", second.physical_offset);
    let crc = petrel_core::ha::epoch::masked_crc(entries.as_bytes());
    assert_eq!(String::from_utf8(file).unwrap(), format!("2\n{crc}\n{entries}"));
    let end = store.close().unwrap();
    store.confirm(end);
    store.shutdown().unwrap();
    drop(store);
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    assert_eq!(store.epochs(), epochs, "the epochs survive a restart");
    // A new epoch whose file was written but whose first record was not (a crash between the
    // two) holds nothing: the reopened store drops it.
    let end = store.written_offset();
    let entries = format!("0-0\n2-{}\n5-{end}\n", second.physical_offset);
    let crc = petrel_core::ha::epoch::masked_crc(entries.as_bytes());
    store.shutdown().unwrap();
    drop(store);
    let text = format!("3\n{crc}\n{entries}");
    petrel_storage::disk::write_atomically(
        &disk,
        &root.join("epochFileCheckpoint"),
        text.as_bytes(),
    )
    .unwrap();
    let (store, _) = Store::open(Arc::new(disk), config(root)).unwrap();
    assert_eq!(store.epochs(), epochs);
    store.append(&input("T", 0, b"d", b""), 5, 5).unwrap();
    assert_eq!(store.epochs().last().map(|e| (e.epoch, e.start_offset)), Some((5, end)));
    store.check_invariants();
}

/// A store of epoch 0 only (a broker outside controller mode) writes no epoch file, as
/// RocketMQ's brokers outside controller mode keep none.
#[test]
fn a_store_of_epoch_zero_writes_no_epoch_file() {
    let disk = SimDisk::new(14, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    store.append(&input("T", 0, b"a", b""), 1, 0).unwrap();
    assert!(!disk.exists(&root.join("epochFileCheckpoint")));
    assert_eq!(store.epochs().len(), 1);
}

/// A master's log copied file by file into a slave's store reads back the same in every queue,
/// byte for byte, and survives the slave's restart; a slave that starts empty may begin its
/// log at a later file (a new slave copies from the master's newest file).
#[test]
fn replicated_bytes_make_the_same_log_and_queues() {
    let root = Path::new("/store");
    let master_disk = SimDisk::new(21, 1 << 30, SimDiskFaults::default());
    let (master, _) = Store::open(Arc::new(master_disk), config(root)).unwrap();
    for i in 0..300 {
        let queue = (i % 3) as i32;
        master.append(&input("T", queue, &body(i), b""), i as i64, 0).unwrap();
    }
    common::flush_and_dispatch(&master);
    let end = master.written_offset();
    let file = config(root).commit_log_file_bytes;
    assert!(end > 3 * file, "the log spans files: {end}");
    let copy = |slave: &Store, from: u64| {
        let mut at = from;
        while at < end {
            let size = (file - at % file).min(end - at) as u32;
            let bytes = master.read_at(at, size).unwrap();
            at = slave.append_replicated(at, &bytes, None).unwrap();
        }
    };
    let slave_disk = SimDisk::new(22, 1 << 30, SimDiskFaults::default());
    let (slave, _) = Store::open(Arc::new(slave_disk.clone()), config(root)).unwrap();
    copy(&slave, 0);
    common::flush_and_dispatch(&slave);
    assert_eq!(slave.written_offset(), end);
    assert_eq!(slave.read_at(0, end as u32 / 2), master.read_at(0, end as u32 / 2));
    for queue in 0..3 {
        assert_eq!(all(&slave, "T", queue), all(&master, "T", queue), "queue {queue}");
    }
    slave.check_invariants();
    // Appended past the end, or into the middle: refused, nothing written.
    let error = slave.append_replicated(end + 1, b"x", None).unwrap_err();
    assert!(error.to_string().contains("do not start at the end"), "{error}");
    assert_eq!(slave.written_offset(), end);
    // The slave's own appends after the copy continue each queue.
    let next = slave.append(&input("T", 0, b"own", b""), 999, 0).unwrap();
    assert_eq!(next.queue_offset, 100);

    let late_disk = SimDisk::new(23, 1 << 30, SimDiskFaults::default());
    let (late, _) = Store::open(Arc::new(late_disk.clone()), config(root)).unwrap();
    let newest = end - end % file;
    copy(&late, newest);
    common::flush_and_dispatch(&late);
    assert_eq!(late.written_offset(), end);
    late.check_invariants();
    let (min, max) = late.queue_offsets("T", 0).unwrap();
    assert_eq!(max, 100, "the queue ends where the master's does");
    assert!(min > 0, "and begins in the copied file: {min}");
    let read = late.get_messages("T", 0, min, ReadLimits::default(), &|_| true);
    assert_eq!(read.status, GetStatus::Found);
    let closed = late.close().unwrap();
    late.confirm(closed);
    late.shutdown().unwrap();
    drop(late);
    let (reopened, _) = Store::open(Arc::new(late_disk), config(root)).unwrap();
    assert_eq!(reopened.written_offset(), end, "recovery keeps a log that begins past 0");
    assert_eq!(reopened.queue_offsets("T", 0), Some((min, max)));
    reopened.check_invariants();
}

/// The commit log from 0 to `end`, read file by file.
fn log_bytes(store: &Store, end: u64) -> Vec<u8> {
    let file = store.config().commit_log_file_bytes;
    let mut out = Vec::new();
    while (out.len() as u64) < end {
        let at = out.len() as u64;
        let size = (file - at % file).min(end - at) as u32;
        out.extend_from_slice(&store.read_at(at, size).unwrap());
    }
    out
}

/// A store of epochs 0 and 3 over several files, flushed and dispatched; returns the store and
/// where epoch 3 begins.
fn two_epochs(disk: &SimDisk, root: &Path) -> (Store, u64) {
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    let mut epoch_3 = 0;
    for i in 0..160 {
        let epoch = if i < 100 { 0 } else { 3 };
        let appended = store.append(&input("T", (i % 3) as i32, &body(i), b""), i as i64, epoch);
        if i == 100 {
            epoch_3 = appended.unwrap().physical_offset;
        }
    }
    common::flush_and_dispatch(&store);
    store.flush_queues().unwrap();
    (store, epoch_3)
}

/// Truncation cuts the log, the queues and the epochs back to a record boundary; appends go
/// on from there, and a restart keeps the cut. A point inside a record or outside the log is
/// refused and changes nothing.
#[test]
fn truncation_cuts_the_log_its_queues_and_its_epochs() {
    let disk = SimDisk::new(31, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, cut) = two_epochs(&disk, root);
    let end = store.written_offset();
    let file = config(root).commit_log_file_bytes;
    assert!(end - cut > file, "the cut removes whole files too: {cut}..{end}");
    let before: Vec<Vec<Vec<u8>>> = (0..3).map(|q| all(&store, "T", q)).collect();
    for bad in [cut + 1, end + 1] {
        let error = store.truncate_to(bad).unwrap_err();
        assert!(error.to_string().contains("cannot truncate"), "{error}");
    }
    assert_eq!(store.written_offset(), end, "a refused cut changes nothing");
    store.truncate_to(cut).unwrap();
    store.check_invariants();
    assert_eq!(store.written_offset(), cut);
    assert_eq!(
        store.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect::<Vec<_>>(),
        [(0, 0)]
    );
    for (queue, before) in before.iter().enumerate() {
        let kept: Vec<Vec<u8>> = (0..100).filter(|i| i % 3 == queue).map(body).collect();
        assert_eq!(all(&store, "T", queue as i32), kept, "queue {queue} keeps epoch 0's");
        assert_eq!(before.len(), (0..160).filter(|i| i % 3 == queue).count());
    }
    let next = store.append(&input("T", 1, b"after", b""), 500, 4).unwrap();
    assert_eq!((next.physical_offset, next.queue_offset), (cut, 33));
    common::flush_and_dispatch(&store);
    let closed = store.close().unwrap();
    store.confirm(closed);
    store.shutdown().unwrap();
    drop(store);
    let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
    assert_eq!(store.written_offset(), next.end_offset);
    let epochs: Vec<(u32, u64)> =
        store.epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(epochs, [(0, 0), (4, cut)]);
    assert_eq!(all(&store, "T", 1).last().map(Vec::as_slice), Some(&b"after"[..]));
    store.check_invariants();
}

/// A power loss after any sync of a truncation leaves a store that opens, whose log is the old
/// log cut somewhere between the cut point and the old end, whose queues and epochs match that
/// log; truncating again then gives what an uninterrupted truncation gives (RocketMQ #10666).
#[test]
fn a_power_loss_at_any_step_of_a_truncation_recovers() {
    let root = Path::new("/store");
    let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
    let mut steps_seen = 0;
    for seed in 0..6 {
        for syncs in 0..12 {
            let disk = SimDisk::new(seed * 100 + syncs, 1 << 30, faults);
            let (store, cut) = two_epochs(&disk, root);
            let end = store.written_offset();
            let log = log_bytes(&store, end);
            let epochs = store.epochs();
            disk.fail_syncs_after(Some(syncs));
            let finished = store.truncate_to(cut).is_ok();
            steps_seen += usize::from(!finished);
            drop(store);
            disk.fail_syncs_after(None);
            disk.crash();
            let (store, _) = Store::open(Arc::new(disk.clone()), config(root)).unwrap();
            let at = store.written_offset();
            let case = format!("seed {seed}, {syncs} syncs, recovered to {at}");
            assert!(at >= cut && at <= end, "{case}: between the cut and the old end");
            if finished {
                assert_eq!(at, cut, "{case}: a finished truncation is durable");
            }
            assert_eq!(log_bytes(&store, at), log[..at as usize], "{case}");
            let kept: Vec<_> = epochs.iter().filter(|e| e.start_offset < at).cloned().collect();
            assert_eq!(store.epochs(), kept, "{case}: the epochs of the recovered log");
            for queue in 0..3 {
                let read = all(&store, "T", queue);
                let expected: Vec<Vec<u8>> = (0..160)
                    .filter(|i| i % 3 == queue as usize)
                    .map(body)
                    .take(read.len())
                    .collect();
                assert_eq!(read, expected, "{case}: queue {queue} is a prefix");
            }
            store.check_invariants();
            store.truncate_to(cut).unwrap();
            assert_eq!(store.written_offset(), cut, "{case}");
            for queue in 0..3 {
                assert_eq!(
                    all(&store, "T", queue).len(),
                    (0..100).filter(|i| i % 3 == queue).count()
                );
            }
            store.check_invariants();
        }
    }
    assert!(steps_seen > 6 * 4, "the power losses fell inside the truncation: {steps_seen}");
}

/// A truncation whose checkpoint cannot be written (no space) changes nothing, and works once
/// the disk has room again.
#[test]
fn a_truncation_refused_by_a_full_disk_leaves_the_store_as_it_was() {
    let disk = SimDisk::new(41, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let (store, cut) = two_epochs(&disk, root);
    let (end, epochs) = (store.written_offset(), store.epochs());
    disk.set_faults(SimDiskFaults { enospc_ratio: 1.0, ..SimDiskFaults::default() });
    assert!(store.truncate_to(cut).is_err());
    assert_eq!((store.written_offset(), store.epochs()), (end, epochs));
    assert!(store.check_running().is_ok(), "nothing was cut: the store goes on");
    store.check_invariants();
    disk.set_faults(SimDiskFaults::default());
    store.truncate_to(cut).unwrap();
    assert_eq!(store.written_offset(), cut);
    store.check_invariants();
}

/// A cut above what was dispatched (a slave dispatches up to its master's confirm offset)
/// keeps the queue offsets of the records it keeps: the next append follows them.
#[test]
fn a_truncation_keeps_the_queue_offsets_of_records_not_dispatched_yet() {
    let disk = SimDisk::new(43, 1 << 30, SimDiskFaults::default());
    let (store, _) = Store::open(Arc::new(disk), config(Path::new("/store"))).unwrap();
    let mut starts = Vec::new();
    for i in 0..20 {
        starts.push(store.append(&input("T", 0, &body(i), b""), i as i64, 0).unwrap());
    }
    store.flush_log().unwrap();
    store.confirm(starts[5].physical_offset);
    store.dispatch().unwrap();
    assert_eq!(store.queue_offsets("T", 0), Some((0, 5)), "five dispatched");
    store.truncate_to(starts[15].physical_offset).unwrap();
    let next = store.append(&input("T", 0, b"next", b""), 99, 0).unwrap();
    assert_eq!(next.queue_offset, 15, "after the fifteen records kept");
    store.check_invariants();
}

/// In controller mode a restart confirms again only what was confirmed before it: the rest
/// stays in the log, unseen by consumers, its queue offsets taken, until it is confirmed.
/// RocketMQ #7689 lost such records: its recovery cut them, and new writes took their queue
/// offsets. Outside controller mode the whole recovered log is confirmed at once.
#[test]
fn a_controller_mode_restart_keeps_unconfirmed_records_unseen_and_in_place() {
    for controller_mode in [true, false] {
        let disk = SimDisk::new(47, 1 << 30, SimDiskFaults::default());
        let root = Path::new("/store");
        let mut config = config(root);
        config.controller_mode = controller_mode;
        let (store, _) = Store::open(Arc::new(disk.clone()), config.clone()).unwrap();
        let mut starts = Vec::new();
        for i in 0..20 {
            starts.push(store.append(&input("T", 0, &body(i), b""), i as i64, 0).unwrap());
        }
        let end = store.flush_log().unwrap();
        store.confirm(starts[8].physical_offset);
        store.dispatch().unwrap();
        store.flush_queues().unwrap();
        // Confirmed further, with units never flushed: the power loss takes them, and those
        // records are unseen again until confirmed again (but stay where they are).
        store.confirm(starts[10].physical_offset);
        store.dispatch().unwrap();
        drop(store);
        disk.crash();
        let (store, report) = Store::open(Arc::new(disk.clone()), config.clone()).unwrap();
        store.check_invariants();
        assert_eq!(store.written_offset(), end, "every flushed record is kept");
        let (confirmed, seen) = match controller_mode {
            true => (starts[8].physical_offset, 8),
            false => (end, 20),
        };
        assert_eq!((report.plan.confirmed, store.confirm_offset()), (confirmed, confirmed));
        store.dispatch().unwrap();
        assert_eq!(all(&store, "T", 0), (0..seen).map(body).collect::<Vec<_>>());
        let next = store.append(&input("T", 0, b"next", b""), 99, 0).unwrap();
        assert_eq!(
            next.queue_offset, 20,
            "after the records kept (controller mode {controller_mode})"
        );
        store.flush_log().unwrap();
        store.confirm(next.end_offset);
        store.dispatch().unwrap();
        let mut expected: Vec<Vec<u8>> = (0..20).map(body).collect();
        expected.push(b"next".to_vec());
        assert_eq!(all(&store, "T", 0), expected, "confirmed later, all in place");
        store.check_invariants();
    }
}

/// Cleanup that deletes a commit-log file also drops the epochs that ended in it, from the
/// cache and from the epoch file; the epoch the new first file begins in stays.
#[test]
fn deleting_expired_files_prunes_the_epochs_that_ended_in_them() {
    let disk = SimDisk::new(53, 1 << 30, SimDiskFaults::default());
    let root = Path::new("/store");
    let mut config = config(root);
    config.file_reserved_hours = 1;
    config.delete_when = vec![];
    config.delete_files_batch_max = 2;
    let (store, _) = Store::open(Arc::new(disk.clone()), config.clone()).unwrap();
    let file = config.commit_log_file_bytes;
    // Epoch 1 fills the first file; epoch 2 starts in the second and runs into the third;
    // epoch 3 starts after.
    let mut epoch = 1;
    for i in 0..60 {
        let end = store.written_offset();
        if (epoch == 1 && end > file) || (epoch == 2 && end > 2 * file + 1000) {
            epoch += 1;
        }
        store.append(&input("T", 0, &vec![b'x'; 1500], b""), i * 1000, epoch).unwrap();
        common::flush_and_dispatch(&store);
    }
    let starts = |store: &Store| store.epochs().iter().map(|e| e.epoch).collect::<Vec<_>>();
    assert_eq!(starts(&store), [1, 2, 3]);
    assert_eq!(store.clean(10 * 3_600_000, true).unwrap(), 2, "two files go");
    let min = store.min_physical_offset();
    assert_eq!(min, 2 * file);
    assert_eq!(starts(&store), [2, 3], "epoch 1 ended in the deleted files; 2 runs past them");
    store.check_invariants();
    drop(store);
    let (store, _) = Store::open(Arc::new(disk.clone()), config).unwrap();
    assert_eq!(starts(&store), [2, 3], "the epoch file was pruned too");
    let text = String::from_utf8(disk.image(&root.join("epochFileCheckpoint")).unwrap()).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("1-")), "{text}");
}

#[test]
fn a_unit_naming_no_possible_record_stops_the_reader_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(Arc::new(FsDisk), config(dir.path())).unwrap();
    for i in 0..3 {
        store.append(&input("T", 0, &body(i), b""), 1_000, 0).unwrap();
    }
    common::flush_and_dispatch(&store);
    // Unit 1's size with its top bit set, as a misread that two reads agreed on once gave.
    let queue_file = dir.path().join("consumequeue/T/0/00000000000000000000");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(queue_file).unwrap();
    let size = body_of(&common::read_queue(&store, "T", 0)[1]).len();
    assert!(size > 0);
    let mut raw = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut raw, 20 + 8).unwrap();
    raw[0] |= 0x80;
    std::os::unix::fs::FileExt::write_all_at(&file, &raw, 20 + 8).unwrap();

    let got = store.get_messages("T", 0, 0, ReadLimits::default(), &|_| true);
    assert_eq!((got.status, got.messages.len(), got.next_begin_offset), (GetStatus::Found, 1, 1));
    let got = store.get_messages("T", 0, 1, ReadLimits::default(), &|_| true);
    assert_eq!(
        (got.status, got.messages.len(), got.next_begin_offset),
        (GetStatus::ReadFailed, 0, 1),
        "the reader asks for unit 1 again rather than pass over the message it names"
    );
}

/// Appends `count` messages of about 1 KiB, flushes them, writes the checkpoint and loses
/// power; the store opened again and where its recovery began reading the log.
fn crash_after(disk: &SimDisk, config: &StoreConfig, store: Store, count: usize) -> (Store, u64) {
    let body = vec![b'x'; 1_000];
    for i in 0..count {
        store.append(&input("T", 0, &body, b""), i as i64, 0).unwrap();
    }
    common::flush_and_dispatch(&store);
    store.flush_queues().unwrap();
    drop(store);
    disk.crash();
    let (store, report) = Store::open(Arc::new(disk.clone()), config.clone()).unwrap();
    (store, report.plan.scan_from)
}

#[test]
fn a_held_recovery_start_is_read_again_after_a_second_crash() {
    let disk = SimDisk::new(7, 1 << 30, SimDiskFaults::default());
    for hold in [false, true] {
        let mut config = config(&Path::new("/store").join(format!("hold-{hold}")));
        config.hold_recovery_start = hold;
        let (store, _) = Store::open(Arc::new(disk.clone()), config.clone()).unwrap();
        store.release_recovery_start();
        // Files 0 to 2, then a crash: the recovery reads from the newest flushed file.
        let (store, first) = crash_after(&disk, &config, store, 40);
        assert_eq!(first, 2 * config.commit_log_file_bytes, "hold {hold}");
        // More files, then a second crash before the owner let go of what the first read.
        let (store, second) = crash_after(&disk, &config, store, 30);
        match hold {
            true => assert_eq!(second, first, "the held range is read again"),
            false => assert!(second > first, "without a hold the start moves on"),
        }
        // Once let go, the next recovery starts at the newest flushed file again.
        store.release_recovery_start();
        let (_, third) = crash_after(&disk, &config, store, 10);
        assert!(third > first, "hold {hold}: {third} after letting go of {first}");
    }
}
