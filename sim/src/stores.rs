//! Checks that read replicas' stores directly, beside the history: whether their logs are
//! one log, and every message each one holds, as deliveries the history checkers read.

use std::sync::Arc;

use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_storage::{GetStatus, ReadLimits, Store};

use crate::checkers::Verdict;
use crate::history::{body_hash, Entry, Event, Place};
use crate::workload;

/// Each slave's commit log is the master's (the first store's), byte for byte, from the
/// slave's first offset to the master's end.
pub fn logs_match(stores: &[Arc<Store>]) -> Verdict {
    let master = &stores[0];
    let end = master.written_offset();
    for (i, slave) in stores.iter().enumerate().skip(1) {
        let from = slave.min_physical_offset();
        let matches = match end.checked_sub(from) {
            // Nothing to compare: a store that never wrote has no file to read even nothing from.
            Some(0) => true,
            Some(len) => {
                let ours = master.read_at(from, len as u32);
                ours.is_some() && ours == slave.read_at(from, len as u32)
            }
            None => false,
        };
        if !matches {
            let why = format!("replica {i}'s log from {from} to {end} is not the master's");
            return Verdict::new("logs_match", Err(why));
        }
    }
    let held = format!("the {} slaves hold the master's {end} bytes", stores.len() - 1);
    Verdict::new("logs_match", Ok(held))
}

/// The commit-log offset and message id of each workload record in `[from, to)` of `store`'s
/// log, `from` a record boundary; up to the first record that does not read whole (the
/// scenarios' logs fit one file, so no filler ends one).
pub fn records_in(store: &Store, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let Some(bytes) = store.message_at(at) else { break };
        out.extend(id_in(&bytes, at).map(|id| (at, id)));
        at += bytes.len() as u64;
    }
    out
}

/// The id of the workload message whose record starts at `at` in `store`'s log.
pub fn id_at(store: &Store, at: u64) -> Option<u64> {
    id_in(&store.message_at(at)?, at)
}

/// The id of the workload message in `record`, read at `at`.
fn id_in(record: &[u8], at: u64) -> Option<u64> {
    match scan_record(record, Checks { physical_offset: Some(at as i64), crc: true }) {
        Scanned::Record(record) => workload::body_id(record.body),
        _ => None,
    }
}

/// Every message of queues `0..queues` of `topic` in `store`, as deliveries to `reader`, each
/// placed in broker group `group`.
pub fn read_all(store: &Store, reader: &str, group: &str, topic: &str, queues: i32) -> Vec<Entry> {
    let at = tokio::time::Instant::now();
    let mut out = Vec::new();
    for queue in 0..queues {
        let mut offset = store.queue_offsets(topic, queue).map_or(0, |(min, _)| min);
        loop {
            let got = store.get_messages(topic, queue, offset, ReadLimits::default(), &|_| true);
            if got.status != GetStatus::Found {
                break;
            }
            for message in &got.messages {
                let checks = Checks { physical_offset: None, crc: true };
                let Scanned::Record(record) = scan_record(message, checks) else {
                    panic!("{reader} holds a damaged record in queue {queue}");
                };
                let id = workload::body_id(record.body).expect("a simulated body");
                let place = Place {
                    broker: group.into(),
                    topic: topic.into(),
                    queue,
                    offset: record.queue_offset,
                };
                out.push(Entry {
                    at,
                    event: Event::Delivered {
                        consumer: reader.to_owned(),
                        place,
                        id,
                        body_hash: body_hash(record.body),
                        stored_wall: record.store_timestamp,
                    },
                });
            }
            offset = got.next_begin_offset;
        }
    }
    out
}

/// Every copy the transaction check service made in `store`'s half queue (a record with a
/// check count): its message id, its check count and when it was stored (wall ms).
pub fn check_copies(store: &Store) -> Vec<(u64, i32, i64)> {
    use petrel_core::broker::transaction::{self, HALF_TOPIC};
    let mut out = Vec::new();
    let mut offset = store.queue_offsets(HALF_TOPIC, 0).map_or(0, |(min, _)| min);
    loop {
        let got = store.get_messages(HALF_TOPIC, 0, offset, ReadLimits::default(), &|_| true);
        if got.status != GetStatus::Found {
            return out;
        }
        for message in &got.messages {
            let checks = Checks { physical_offset: None, crc: true };
            let Scanned::Record(record) = scan_record(message, checks) else {
                panic!("the half queue holds a damaged record");
            };
            // A copy carries a count of 1 or more; the first half message carries none.
            let times = transaction::check_times(record.properties);
            if let (true, Some(id)) = (times > 0, workload::body_id(record.body)) {
                out.push((id, times, record.store_timestamp));
            }
        }
        offset = got.next_begin_offset;
    }
}
