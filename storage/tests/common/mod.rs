//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)] // Each test file uses some of these; tests may unwrap.

use petrel_core::record::{scan_record, Checks, RecordInput, Scanned};
use petrel_storage::{GetStatus, ReadLimits, Store};

/// A record for `topic`/`queue_id` from a fixed born host.
pub fn input<'a>(
    topic: &'a str,
    queue_id: i32,
    body: &'a [u8],
    props: &'a [u8],
) -> RecordInput<'a> {
    RecordInput {
        topic,
        queue_id,
        flag: 0,
        sys_flag: 0,
        born_timestamp: 1_000,
        born_host: "10.0.0.1:4000".parse().unwrap(),
        store_host: "0.0.0.0:0".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: props,
    }
}

/// Every record of a queue from offset 0, each checked (both CRCs) and with its queue offset
/// checked to follow the previous one.
pub fn read_queue(store: &Store, topic: &str, queue_id: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let got = store.get_messages(topic, queue_id, offset, ReadLimits::default(), &|_| true);
        if got.status != GetStatus::Found {
            return out;
        }
        for message in &got.messages {
            let Scanned::Record(record) =
                scan_record(message, Checks { physical_offset: None, crc: true })
            else {
                panic!("{topic}/{queue_id}: a read message fails its checks");
            };
            assert_eq!(record.queue_offset as usize, out.len(), "queue offsets are contiguous");
            out.push(message.to_vec());
        }
        offset = got.next_begin_offset;
    }
}

/// Flushes, confirms what the flush made durable (what a lone SYNC_FLUSH master's confirm
/// machine does) and dispatches it.
pub fn flush_and_dispatch(store: &Store) {
    let flushed = store.flush_log().unwrap();
    store.confirm(flushed);
    store.dispatch().unwrap();
}
