//! The revive service's shell (`PopReviveService`; docs/pop.md): on a master, every second,
//! each queue of the revive topic is read on from where the group `CID_RMQ_SYS_REVIVE_GROUP`
//! left it into its core (`petrel_core::broker::revive::ReviveQueue`); each checkpoint the
//! core judges has its unacknowledged messages put into the group's pop retry topic
//! (`%RETRY%{group}_{topic}`, one queue, reconsume times + 1, `1ST_POP_TIME` kept or set);
//! a message that cannot be put gets a checkpoint of its own, due later, and one that gets
//! neither is tried again at the next pass. The revive offset is committed once a
//! checkpoint's messages are all put (or written again).
//!
//! A queue is taken as read no further than the timer wheel has put what was due (its read
//! time, or where its enqueue last caught up) and dispatch made readable: a checkpoint is not
//! judged while its acks may still wait in the wheel's backlog (RocketMQ checks the timer's
//! dequeue and enqueue lag before it moves its end time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::pop::{
    pop_retry_topic, AckMsg, PopCheckPoint, ACK_TIME_INTERVAL_MS, CK_TAG, REVIVE_GROUP,
};
use petrel_core::broker::revive::{rewrite, Revive, ReviveQueue, ReviveRecord};
use petrel_core::broker::RETRY_PREFIX;
use petrel_core::record::{self, scan_record, Checks, RecordInput, Scanned};
use petrel_net::signal::Flag;
use petrel_storage::{GetStatus, ReadLimits};

use super::pop::{ck_json, ensure_revive_topic, ensure_topic, put_revive, REVIVE_QUEUES};
use super::Broker;
use crate::clock::now_millis;

/// RocketMQ's `reviveInterval`.
const REVIVE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    let topic = loop {
        match ensure_revive_topic(&broker) {
            Ok(topic) => break topic,
            Err(refusal) => {
                tracing::warn!(remark = %refusal.remark, "revive topic not created; trying again")
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(REVIVE_INTERVAL) => {}
        }
    };
    let name = broker.config.broker_name.clone();
    let mut queues: Vec<ReviveQueue> = (0..REVIVE_QUEUES)
        .map(|q| {
            ReviveQueue::new(&name, broker.offsets().query(&topic, REVIVE_GROUP, q).unwrap_or(-1))
        })
        .collect();
    // How far the timer wheel's puts are readable here.
    let mut timer_done = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(REVIVE_INTERVAL) => {}
        }
        let (done, end) = *super::lock(&broker.timer_done);
        if broker.store().dispatched_offset() >= end {
            timer_done = done;
        }
        for (queue_id, queue) in (0..REVIVE_QUEUES).zip(queues.iter_mut()) {
            queue.timer_done(timer_done);
            read(&broker, (&topic, queue_id), queue);
            for revive in queue.due() {
                let left = put_again(&broker, &revive, queue_id);
                if !left.is_empty() {
                    queue.retry(revive.at, &left);
                    continue;
                }
                if let Some(committed) = queue.revived(revive.at) {
                    if broker.offsets().commit(&topic, REVIVE_GROUP, queue_id, committed) {
                        broker.offsets_dirty.store(true, Ordering::Release);
                    }
                }
            }
            #[cfg(madsim)]
            queue.check_invariants();
            tokio::task::yield_now().await;
        }
    }
}

/// Reads the revive queue on into its core, until it has nothing more or wants no more.
fn read(broker: &Broker, (topic, queue_id): (&str, i32), queue: &mut ReviveQueue) {
    while queue.wants_more() {
        let next = u64::try_from(queue.next()).unwrap_or(0);
        let got =
            broker.store().get_messages(topic, queue_id, next, ReadLimits::default(), &|_| true);
        if got.status == GetStatus::OffsetTooSmall {
            // Expired revive records: nothing to judge below the queue's first offset.
            let first = got.next_begin_offset as i64;
            queue.read(first - 1, 0, ReviveRecord::Other);
            continue;
        }
        if got.messages.is_empty() {
            queue.idle(now_millis() as i64);
            return;
        }
        for bytes in &got.messages {
            let Scanned::Record(record) =
                scan_record(bytes, Checks { physical_offset: None, crc: false })
            else {
                continue;
            };
            let deliver = record
                .property(b"TIMER_DELIVER_MS")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(record.store_timestamp);
            queue.read(record.queue_offset, deliver, parse(&record));
        }
    }
}

fn parse(record: &record::Record<'_>) -> ReviveRecord {
    match record.property(b"TAGS") {
        Some(tag) if tag == CK_TAG.as_bytes() => {
            serde_json::from_slice::<PopCheckPoint>(record.body)
                .map_or(ReviveRecord::Other, ReviveRecord::Ck)
        }
        Some(b"ack") | Some(b"bAck") => serde_json::from_slice::<AckMsg>(record.body)
            .map_or(ReviveRecord::Other, ReviveRecord::Ack),
        _ => ReviveRecord::Other,
    }
}

/// Puts the judged checkpoint's unacknowledged messages into the pop retry topic; one that
/// cannot be put gets a checkpoint of its own, due later (`rePutCK`). The messages it could
/// do neither for, to try again at the next pass.
fn put_again(broker: &Broker, revive: &Revive, queue_id: i32) -> Vec<i64> {
    let mut left = Vec::new();
    let ck = &revive.ck;
    let retry = match ck.t.starts_with(RETRY_PREFIX) {
        true => ck.t.clone(),
        false => pop_retry_topic(&ck.c, &ck.t, false),
    };
    for offset in &revive.offsets {
        match put_one(broker, ck, *offset, &retry) {
            Ok(()) => {
                tracing::debug!(topic = %ck.t, queue = ck.q, offset, pop_time = ck.pt, "put again")
            }
            Err(why) => {
                tracing::warn!(topic = %ck.t, queue = ck.q, offset, %why, "not put again; its checkpoint is written again");
                let again = rewrite(ck, *offset, now_millis() as i64);
                let due = again.revive_time() - ACK_TIME_INTERVAL_MS;
                let (key, body) = (again.unique_key(), ck_json(&again));
                if let Err(refusal) = put_revive(broker, queue_id, CK_TAG, &key, &body, due) {
                    tracing::warn!(remark = %refusal.remark, "a checkpoint could not be written again; both are tried again at the next pass");
                    left.push(*offset);
                }
            }
        }
    }
    left
}

/// Reads message `offset` of the checkpoint's queue and appends it to `retry`. A message no
/// longer in its queue (expired) is passed over.
fn put_one(broker: &Broker, ck: &PopCheckPoint, offset: i64, retry: &str) -> Result<(), String> {
    let limits = ReadLimits { messages_max: 1, ..ReadLimits::default() };
    let got = broker.store().get_messages(&ck.t, ck.q, offset as u64, limits, &|_| true);
    let Some(bytes) = got.messages.first() else {
        return match got.status {
            GetStatus::ReadFailed => Err("the message could not be read".to_owned()),
            _ => Ok(()),
        };
    };
    let Scanned::Record(record) = scan_record(bytes, Checks { physical_offset: None, crc: false })
    else {
        return Err("the message read is not a record".to_owned());
    };
    if record.queue_offset != offset {
        return Ok(());
    }
    ensure_topic(broker, retry, 1).map_err(|r| r.remark)?;
    let first_pop = ck.pt.to_string();
    let keep_first = record.reconsume_times > 0 && record.property(b"1ST_POP_TIME").is_some();
    let set: Vec<(&str, &str)> =
        if keep_first { Vec::new() } else { vec![("1ST_POP_TIME", &first_pop)] };
    let properties = record::replaced(record.properties, &set, &["__CRC32#"]);
    let input = RecordInput {
        topic: retry,
        queue_id: 0,
        flag: record.flag,
        sys_flag: record.sys_flag,
        born_timestamp: record.born_timestamp,
        born_host: record.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: record.reconsume_times.saturating_add(1),
        prepared_transaction_offset: 0,
        body: record.body,
        properties: &properties,
    };
    broker.store.append(&input, now_millis() as i64).map_err(|e| e.to_string())?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
