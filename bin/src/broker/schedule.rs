//! Delivery of delayed messages and retries (`ScheduleMessageService`): one cursor per delay
//! level walks its queue of `SCHEDULE_TOPIC_XXXX` and re-appends each message to its real
//! topic once due (the decisions are `petrel_core::broker::schedule`'s).
//!
//! A message is re-appended before its cursor moves, and the cursors reach
//! `config/delayOffset.json` only after the commit log holding those re-appends was flushed:
//! a crash can deliver a message twice, never lose one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::schedule::{due, restore, DelayLevels, Due};
use petrel_core::broker::SCHEDULE_TOPIC;
use petrel_core::record::{scan_record, Checks, RecordInput, Scanned};
use petrel_net::signal::Flag;
use petrel_storage::{GetStatus, ReadLimits};

use super::{lock, persist, Broker};
use crate::clock::now_millis;

/// How long a level with nothing due waits before looking again (RocketMQ's 100 ms).
const IDLE: Duration = Duration::from_millis(100);
/// How long after a failed re-append the level tries again.
const RETRY: Duration = Duration::from_secs(1);

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    let mut last_persist = tokio::time::Instant::now();
    let persist_every = Duration::from_millis(broker.config.flush_delay_offsets_interval_ms);
    loop {
        let now = now_millis() as i64;
        let mut wake = now + IDLE.as_millis() as i64;
        for level in 1..=broker.config.store.delay_levels.count() {
            wake = wake.min(deliver_level(&broker, level, now));
        }
        if last_persist.elapsed() >= persist_every {
            persist(&broker);
            last_persist = tokio::time::Instant::now();
        }
        let nap =
            Duration::from_millis(wake.saturating_sub(now_millis() as i64).clamp(1, 100) as u64);
        tokio::select! {
            biased;
            () = tokio::time::sleep(nap) => {}
            _ = stop.wait() => return,
        }
    }
}

/// Delivers what is due on one level; returns when to look again.
fn deliver_level(broker: &Broker, level: i32, now: i64) -> i64 {
    let levels = &broker.config.store.delay_levels;
    let queue_id = DelayLevels::queue_id(level);
    let mut offset = lock(&broker.delays).get(level).max(0) as u64;
    let limits = ReadLimits { messages_max: 32, ..ReadLimits::default() };
    let got = broker.store().get_messages(SCHEDULE_TOPIC, queue_id, offset, limits, &|_| true);
    let idle = now + IDLE.as_millis() as i64;
    match got.status {
        GetStatus::Found => {}
        GetStatus::OffsetTooSmall
        | GetStatus::OffsetOverflowBadly
        | GetStatus::NoMatchedMessage => {
            advance(broker, level, got.next_begin_offset);
            return now;
        }
        _ => return idle,
    }
    for bytes in &got.messages {
        // The store checked the record whole; it is scanned again only to read its fields.
        let Scanned::Record(record) =
            scan_record(bytes, Checks { physical_offset: None, crc: false })
        else {
            tracing::warn!(level, offset, "delayed message unreadable; will retry");
            return now + RETRY.as_millis() as i64;
        };
        let due_at = levels.due_time(level, record.store_timestamp);
        if let Due::At(at) = due(levels, level, due_at, now) {
            return at;
        }
        if let Err(e) = deliver(broker, &record, now) {
            tracing::warn!(level, offset = record.queue_offset, error = %e, "delayed message not delivered yet; will retry");
            return now + RETRY.as_millis() as i64;
        }
        offset = record.queue_offset.max(0) as u64 + 1;
        advance(broker, level, offset);
    }
    if got.next_begin_offset > offset {
        advance(broker, level, got.next_begin_offset);
    }
    now
}

fn advance(broker: &Broker, level: i32, next: u64) {
    if lock(&broker.delays).advance(level, next as i64) {
        broker.delays_dirty.store(true, Ordering::Release);
    }
}

/// Re-appends a due message to its real topic.
fn deliver(
    broker: &Broker,
    record: &petrel_core::record::Record<'_>,
    now: i64,
) -> Result<(), String> {
    let Some((topic, queue_id, properties)) = restore(record.properties) else {
        tracing::error!(
            offset = record.physical_offset,
            "delayed message without REAL_TOPIC dropped"
        );
        return Ok(());
    };
    let input = RecordInput {
        topic: &topic,
        queue_id,
        flag: record.flag,
        sys_flag: record.sys_flag,
        born_timestamp: record.born_timestamp,
        born_host: record.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: record.reconsume_times,
        prepared_transaction_offset: record.prepared_transaction_offset,
        body: record.body,
        properties: &properties,
    };
    broker.store.append(&input, now).map(|_| ()).map_err(|e| e.to_string())
}

/// Writes the cursors, after flushing the re-appends they account for.
pub(super) fn persist(broker: &Broker) {
    let _writing = lock(&broker.persisting);
    if !broker.delays_dirty.swap(false, Ordering::AcqRel) {
        return;
    }
    let snapshot = lock(&broker.delays).clone();
    if let Err(e) = broker.store.persist() {
        tracing::warn!(error = %e, "delay cursors not written: the commit log did not flush");
        broker.delays_dirty.store(true, Ordering::Release);
        return;
    }
    if !persist::save(broker, persist::DELAYS, &snapshot) {
        broker.delays_dirty.store(true, Ordering::Release);
    }
}
