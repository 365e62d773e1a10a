//! CONSUMER_SEND_MSG_BACK (36): a consumer gives back a message it failed to consume
//! (`SendMessageProcessor.consumerSendMsgBack`).
//!
//! The message is copied from the commit log into the group's retry topic `%RETRY%group`,
//! through the schedule topic at delay level `3 + reconsumeTimes` (10 s, 30 s, 1 min, ... 2 h)
//! unless the consumer asked for a level, with its reconsume count one higher. After
//! `retryMaxTimes` tries (16), or when the consumer asks for a negative level, it goes to
//! the dead-letter topic `%DLQ%group` instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::schedule::{redirect, DelayLevels};
use petrel_core::broker::{dlq_topic, property, retry_topic, SCHEDULE_TOPIC};
use petrel_core::model::perm;
use petrel_core::record::{
    offset_msg_id, properties, put_property, scan_record, sys_flag, Checks, RecordInput, Scanned,
};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerSendMsgBackRequestHeader;
use petrel_net::transport::{Connection, Handled};
use petrel_storage::PutError;

use super::send::store_error;
use super::{rejected, Broker, Refusal};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: RemotingCommand,
) -> Handled {
    let header: ConsumerSendMsgBackRequestHeader = match request.header() {
        Ok(header) => header,
        Err(e) => return Handled::Now(rejected(&request, &e)),
    };
    match send_back(broker, &header) {
        Ok(None) => Handled::Now(RemotingCommand::response(response::SUCCESS, None)),
        Ok(Some(appended)) => {
            if broker.store.is_acknowledged(&appended) {
                return Handled::Now(RemotingCommand::response(response::SUCCESS, None));
            }
            let broker = broker.clone();
            Handled::Later(Box::pin(async move {
                match broker.store.wait_acknowledged(appended).await {
                    Ok(_) => RemotingCommand::response(response::SUCCESS, None),
                    Err(PutError::FlushTimeout { timeout_ms, .. }) => Refusal::new(
                        response::FLUSH_DISK_TIMEOUT,
                        format!("retry stored but not flushed within {timeout_ms} ms"),
                    )
                    .into(),
                    Err(PutError::NotDurable { reason, .. }) => Refusal::new(
                        response::FLUSH_DISK_TIMEOUT,
                        format!("retry stored but not durable: {reason}"),
                    )
                    .into(),
                    Err(PutError::Store(e)) => store_error(&e).into(),
                }
            }))
        }
        Err(refusal) => Handled::Now(refusal.into()),
    }
}

/// Appends the retry (or dead letter); `None` when the group keeps no retries.
fn send_back(
    broker: &Broker,
    header: &ConsumerSendMsgBackRequestHeader,
) -> Result<Option<petrel_storage::Appended>, Refusal> {
    let group = &header.group;
    let found = broker
        .groups()
        .find_or_create(group, broker.config.auto_create_group, now_millis())
        .map(|(config, created)| (config.clone(), created));
    let Ok((config, created)) = found else {
        let why = format!("subscription group not exist, {group}");
        return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
    };
    if created {
        broker.groups_changed();
    }
    if !perm::is_writeable(broker.config.broker_permission) {
        let why = format!("the broker[{}] sending message is forbidden", broker.addr);
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if config.retry_queue_nums <= 0 {
        return Ok(None);
    }
    let record_bytes = u64::try_from(header.offset).ok().and_then(|o| broker.store().message_at(o));
    let Some(record_bytes) = record_bytes else {
        let why = format!("look message by offset failed, {}", header.offset);
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let Scanned::Record(record) =
        scan_record(&record_bytes, Checks { physical_offset: None, crc: false })
    else {
        let why = format!("the record at offset {} does not decode", header.offset);
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let max = header.max_reconsume_times.unwrap_or(config.retry_max_times);
    let dead = record.reconsume_times >= max || header.delay_level < 0;
    let rw = perm::READ | perm::WRITE;
    let now = now_millis();
    let (topic, queues) =
        if dead { (dlq_topic(group), 1) } else { (retry_topic(group), config.retry_queue_nums) };
    let (_, created) = broker.topics().create_if_absent(&topic, queues, rw, 0, now);
    if created {
        broker.topics_changed();
    }
    broker.topics_durable()?;
    let queue_id = (broker.stats.messages_put.load(Ordering::Relaxed) % queues as u64) as i32;
    let mut props = retry_properties(&record);
    put_property(&mut props, property::WAIT, "false");
    let (store_topic, store_queue) = if dead {
        (topic.clone(), 0)
    } else {
        let level =
            if header.delay_level == 0 { 3 + record.reconsume_times } else { header.delay_level };
        let level = broker.config.store.delay_levels.clamp(level).unwrap_or(1);
        props = redirect(&props, &topic, queue_id, level);
        (SCHEDULE_TOPIC.to_owned(), DelayLevels::queue_id(level))
    };
    let input = RecordInput {
        topic: &store_topic,
        queue_id: store_queue,
        flag: record.flag,
        sys_flag: record.sys_flag & !sys_flag::HOSTS_V6,
        born_timestamp: record.born_timestamp,
        born_host: record.born_host,
        store_host: broker.config.store.store_host,
        reconsume_times: record.reconsume_times + 1,
        prepared_transaction_offset: 0,
        body: record.body,
        properties: &props,
    };
    let appended = broker.store.append(&input, now as i64).map_err(|e| store_error(&e))?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    if dead {
        tracing::info!(%group, offset = header.offset, "message moved to the dead-letter topic");
    }
    Ok(Some(appended))
}

/// The record's properties for its next try: RETRY_TOPIC (its first topic) and
/// ORIGIN_MESSAGE_ID (its first id) kept or set, WAIT and DELAY dropped.
fn retry_properties(record: &petrel_core::record::Record<'_>) -> Vec<u8> {
    let mut props = Vec::with_capacity(record.properties.len() + 96);
    let mut origin = None;
    let mut retry_topic_set = false;
    for (name, value) in properties(record.properties) {
        match name {
            b"ORIGIN_MESSAGE_ID" => origin = Some(String::from_utf8_lossy(value).into_owned()),
            b"RETRY_TOPIC" => retry_topic_set = true,
            b"WAIT" | b"DELAY" => continue,
            _ => {}
        }
        props.extend_from_slice(name);
        props.push(petrel_core::record::NAME_VALUE_SEPARATOR);
        props.extend_from_slice(value);
        props.push(petrel_core::record::PROPERTY_SEPARATOR);
    }
    if !retry_topic_set {
        put_property(&mut props, property::RETRY_TOPIC, record.topic_str());
    }
    if origin.is_none() {
        let id = offset_msg_id(record.store_host, record.physical_offset);
        put_property(&mut props, property::ORIGIN_MESSAGE_ID, &id);
    }
    props
}
