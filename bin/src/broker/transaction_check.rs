//! The transaction check service's shell (`TransactionalMessageCheckService`): binds the
//! check core (`petrel_core::broker::transaction_check`) to the store, the clock and the
//! producers' connections. It runs on a master only, from each time it becomes master; it
//! first writes the ops a crash tore off their commits (`transactions::repair`).
//!
//! A check copies the half message to the end of the half queue with its check count raised
//! and its transaction's first offset (`TRAN_PREPARED_QUEUE_OFFSET`), then sends
//! CHECK_TRANSACTION_STATE for the copy, oneway, to a producer of the message's group (round
//! robin over the group's connections; none connected: the check is counted and the next
//! pass asks again). The cursor reaches `consumerOffset.json` (group `CID_RMQ_SYS_TRANS`)
//! only after the commit log holding the copies it passed was flushed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use petrel_core::broker::topics::topic_config;
use petrel_core::broker::transaction::{
    self, CHECK_MAX_TIME_TOPIC, HALF_TOPIC, OP_HALF_TOPIC, SYSTEM_GROUP,
};
use petrel_core::broker::transaction_check::{
    CheckAction, CheckConfig, CheckEvent, CheckService, HalfHead,
};
use petrel_core::model::perm;
use petrel_core::record::{self, encode_record, offset_msg_id, Record, RecordInput, RecordPlace};
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::CheckTransactionStateRequestHeader;
use petrel_net::signal::Flag;
use petrel_storage::{Appended, GetStatus, ReadLimits};

use super::transactions::{self, scanned};
use super::{lock, Broker};
use crate::clock::{now_millis, sleep_until};

/// How long after a failed read or append the service tries again.
const RETRY_MS: u64 = 1_000;

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    if !repair(&broker, &stop).await {
        return;
    }
    let config = CheckConfig {
        timeout_ms: broker.config.transactions.timeout_ms as i64,
        interval_ms: broker.config.transactions.check_interval_ms,
        check_max: broker.config.transactions.check_max,
        file_reserved_ms: (broker.config.store.file_reserved_hours * 3_600_000) as i64,
        retry_ms: RETRY_MS,
    };
    let cursor = broker.offsets().query(HALF_TOPIC, SYSTEM_GROUP, 0).unwrap_or(0);
    let mut service = CheckService::new(config, cursor, now_millis());
    if !note_copies(&broker, &mut service, cursor, &stop).await {
        return;
    }
    // The half message read last, kept for its check or discard.
    let mut head: Option<Bytes> = None;
    loop {
        while let Some(action) = service.poll_action() {
            let event = execute(&broker, &mut head, action).await;
            service.handle(now_millis(), event);
            #[cfg(madsim)]
            service.check_invariants();
            // A pass over many half messages never waits otherwise: sends go first.
            tokio::task::yield_now().await;
        }
        tokio::select! {
            biased;
            _ = stop.wait() => break,
            () = sleep_until(service.poll_timeout()) => {}
        }
        service.tick(now_millis());
    }
}

/// Tells the service of every half message from `cursor` on, so that it passes over a copy
/// a newer one of its transaction supersedes; reads again after a failed read until it has
/// them all. False when the service stops first.
async fn note_copies(
    broker: &Broker,
    service: &mut CheckService,
    cursor: i64,
    stop: &Flag,
) -> bool {
    let mut offset = cursor.max(0) as u64;
    loop {
        let limits = ReadLimits { messages_max: 1_024, ..ReadLimits::default() };
        let got = broker.store().get_messages(HALF_TOPIC, 0, offset, limits, &|_| true);
        for record in got.messages.iter().filter_map(|bytes| scanned(bytes)) {
            let origin = transaction::origin(record.properties, record.queue_offset);
            service.note_copy(origin, record.queue_offset);
        }
        match got.status {
            GetStatus::ReadFailed => {}
            _ if got.next_begin_offset > offset => {
                offset = got.next_begin_offset;
                continue;
            }
            _ => return true,
        }
        if !retry_later(stop).await {
            return false;
        }
    }
}

/// Restores the ops a crash tore off commits before anything is checked, trying again
/// until it can; false when the service stops first. Until it has, the store's checkpoint
/// keeps the next recovery reading from where this run's began, so that a second crash
/// does not leave a torn commit out of the range its repair scans (transactions seed
/// 3342744392).
async fn repair(broker: &Broker, stop: &Flag) -> bool {
    loop {
        match transactions::repair(broker, broker.recovered_from) {
            Ok(repaired) => {
                if repaired > 0 {
                    tracing::warn!(repaired, "ops of committed transactions restored");
                }
                broker.store().release_recovery_start();
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, "ops lost in a crash not restored yet; will retry")
            }
        }
        if !retry_later(stop).await {
            return false;
        }
    }
}

/// Waits [`RETRY_MS`]; false when the service stops first.
async fn retry_later(stop: &Flag) -> bool {
    tokio::select! {
        biased;
        _ = stop.wait() => false,
        () = tokio::time::sleep(std::time::Duration::from_millis(RETRY_MS)) => true,
    }
}

async fn execute(broker: &Broker, head: &mut Option<Bytes>, action: CheckAction) -> CheckEvent {
    match action {
        CheckAction::Read { offset } => read(broker, head, offset),
        CheckAction::Check { offset, check_times } => match head.take() {
            Some(bytes) => match check(broker, &bytes, check_times).await {
                Ok(Some(copy)) => CheckEvent::Copied { offset, copy },
                Ok(None) => CheckEvent::Done { offset },
                Err(error) => {
                    tracing::warn!(offset, %error, "half message not checked yet; will retry");
                    CheckEvent::Failed { offset }
                }
            },
            None => CheckEvent::Failed { offset },
        },
        CheckAction::Discard { offset } => match head.take() {
            Some(bytes) => match discard(broker, &bytes) {
                Ok(()) => CheckEvent::Done { offset },
                Err(error) => {
                    tracing::warn!(offset, %error, "half message not discarded yet; will retry");
                    CheckEvent::Failed { offset }
                }
            },
            None => CheckEvent::Failed { offset },
        },
        CheckAction::Persist { cursor } => CheckEvent::Persisted { written: save(broker, cursor) },
    }
}

/// Reads the first half message at or after `offset`, keeping it for its check.
fn read(broker: &Broker, head: &mut Option<Bytes>, offset: i64) -> CheckEvent {
    let limits = ReadLimits { messages_max: 1, ..ReadLimits::default() };
    let got = broker.store().get_messages(HALF_TOPIC, 0, offset as u64, limits, &|_| true);
    let Some(bytes) = got.messages.into_iter().next() else {
        return match got.status {
            GetStatus::ReadFailed => CheckEvent::Failed { offset },
            _ => CheckEvent::Empty { next: got.next_begin_offset as i64 },
        };
    };
    let Some(record) = scanned(&bytes) else { return CheckEvent::Failed { offset } };
    let origin = transaction::origin(record.properties, record.queue_offset);
    let Ok(resolved) = broker.transactions().resolved(record.queue_offset, origin) else {
        return CheckEvent::Failed { offset };
    };
    let event = CheckEvent::Head(HalfHead {
        offset: record.queue_offset,
        origin,
        born_timestamp: record.born_timestamp,
        store_timestamp: record.store_timestamp,
        check_times: transaction::check_times(record.properties),
        immunity_ms: transaction::immunity_ms(record.properties),
        resolved,
    });
    *head = Some(bytes);
    event
}

/// The half message stored again under `topic` and `queue_id` with `properties`.
fn copy<'a>(
    broker: &Broker,
    half: &Record<'a>,
    topic: &'a str,
    queue_id: i32,
    properties: &'a [u8],
) -> RecordInput<'a> {
    RecordInput {
        topic,
        queue_id,
        flag: half.flag,
        sys_flag: half.sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: 0,
        body: half.body,
        properties,
    }
}

/// Copies the half message with its check count and, once the store acknowledges the copy
/// (as it would a send: flushed under SYNC_FLUSH), asks a producer of its group about it.
/// The producer's answer names the copy, which must be there to read. The copy's queue
/// offset; none when the transaction was resolved meanwhile.
async fn check(broker: &Broker, bytes: &[u8], check_times: i32) -> Result<Option<i64>, String> {
    let half = scanned(bytes).ok_or("the half message read no longer decodes")?;
    let props = transaction::copy_properties(half.properties, half.queue_offset, check_times);
    let input = copy(broker, &half, HALF_TOPIC, 0, &props);
    let Some((appended, place)) = append_copy(broker, &half, &input)? else { return Ok(None) };
    if !broker.store.is_acknowledged(&appended) {
        let waited = broker.store.wait_acknowledged(appended).await;
        waited.map_err(|e| format!("the copy was not made durable: {e}"))?;
    }
    let group = record::property(half.properties, b"PGROUP").unwrap_or_default();
    send_check(broker, &String::from_utf8_lossy(group), &half, &input, place);
    Ok(Some(place.queue_offset))
}

/// Appends `copy` of `half` unless its transaction was resolved meanwhile; where it went.
fn append_copy(
    broker: &Broker,
    half: &Record<'_>,
    copy: &RecordInput<'_>,
) -> Result<Option<(Appended, RecordPlace)>, String> {
    let origin = transaction::origin(half.properties, half.queue_offset);
    let transactions = broker.transactions();
    if transactions.resolved(half.queue_offset, origin)? {
        return Ok(None);
    }
    let mut at = (0, 0);
    let appended = broker
        .store
        .append_batch(std::slice::from_ref(copy), now_millis() as i64, &mut |physical, queue| {
            at = (physical, queue)
        })
        .map_err(|e| e.to_string())?;
    drop(transactions);
    let place = RecordPlace {
        queue_offset: at.1,
        physical_offset: at.0 as i64,
        store_timestamp: appended.store_timestamp,
    };
    Ok(Some((appended, place)))
}

/// Sends CHECK_TRANSACTION_STATE for the copy at `place`: its body the copy as a record in
/// its real topic and queue (`MessageDecoder.encode`).
fn send_check(
    broker: &Broker,
    group: &str,
    half: &Record<'_>,
    copy: &RecordInput<'_>,
    place: RecordPlace,
) {
    let producers = lock(&broker.clients).producer_conns(group);
    let connection = (0..producers.len().min(3)).find_map(|_| {
        let pick = broker.checks_sent.fetch_add(1, Ordering::Relaxed) % producers.len();
        broker.server.connection(producers[pick])
    });
    let Some(connection) = connection else {
        tracing::debug!(group, "no producer of the group is connected: checked next pass");
        return;
    };
    let real_topic = transaction::real_topic(half.properties).unwrap_or(HALF_TOPIC);
    let real_queue = transaction::real_queue_id(half.properties).unwrap_or(0);
    let mut body = Vec::with_capacity(copy.body.len() + copy.properties.len() + 128);
    let shown = RecordInput { topic: real_topic, queue_id: real_queue, ..*copy };
    if let Err(error) = encode_record(&shown, place, false, &mut body) {
        tracing::warn!(%error, "a check's message cannot be encoded");
        return;
    }
    let unique = record::property(half.properties, b"UNIQ_KEY")
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let header = CheckTransactionStateRequestHeader {
        topic: Some(HALF_TOPIC.to_owned()),
        tran_state_table_offset: place.queue_offset,
        commit_log_offset: place.physical_offset,
        msg_id: unique.clone(),
        transaction_id: unique,
        offset_msg_id: Some(offset_msg_id(broker.config.store.store_host, place.physical_offset)),
    };
    let mut check = RemotingCommand::request(request::CHECK_TRANSACTION_STATE).with_header(&header);
    check.ext_fields.insert("bname", &broker.config.broker_name);
    check.body = Bytes::from(body);
    tokio::spawn(async move {
        if let Err(e) = connection.invoke_oneway(check).await {
            tracing::debug!(error = %e, "transaction check not sent");
        }
    });
}

/// Stores the half message in `TRANS_CHECK_MAX_TIME_TOPIC` (created when missing): its
/// transaction is given up.
fn discard(broker: &Broker, bytes: &[u8]) -> Result<(), String> {
    let half = scanned(bytes).ok_or("the half message read no longer decodes")?;
    let rw = perm::READ | perm::WRITE;
    if broker.topics().ensure([topic_config(CHECK_MAX_TIME_TOPIC, 1, rw)], now_millis()) {
        broker.topics_changed();
    }
    broker.topics_durable().map_err(|refusal| refusal.remark)?;
    let input = copy(broker, &half, CHECK_MAX_TIME_TOPIC, 0, half.properties);
    broker.store.append(&input, now_millis() as i64).map_err(|e| e.to_string())?;
    tracing::info!(half = half.queue_offset, "transaction checked too often: discarded");
    Ok(())
}

/// Flushes the commit log holding the copies the cursor passed, then notes the cursor (and
/// how far the op queue was read) as `CID_RMQ_SYS_TRANS`'s offsets; whether it did.
fn save(broker: &Broker, cursor: i64) -> bool {
    if let Err(error) = broker.store.persist() {
        tracing::warn!(%error, "check progress not saved: the commit log did not flush");
        return false;
    }
    let ops = broker.transactions().ops_read();
    let mut offsets = broker.offsets();
    let moved = offsets.commit(HALF_TOPIC, SYSTEM_GROUP, 0, cursor)
        | offsets.commit(OP_HALF_TOPIC, SYSTEM_GROUP, 0, ops);
    drop(offsets);
    if moved {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    true
}
