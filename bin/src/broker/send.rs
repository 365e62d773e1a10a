//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320): a producer's message
//! into the commit log (`SendMessageProcessor`).
//!
//! Checks, in RocketMQ's order: broker writable, topic name, topic known (or created from the
//! default topic it names), queue id, topic writable, body size. Then the message may be
//! redirected: to the dead-letter topic when a retry has been tried too often, to the schedule
//! topic when it asks for a delay level. Under ASYNC_FLUSH the answer goes at once; under
//! SYNC_FLUSH after the group commit covered the record, or FLUSH_DISK_TIMEOUT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::batch::decode_batch;
use petrel_core::broker::schedule::{redirect, DelayLevels};
use petrel_core::broker::{dlq_topic, property, RETRY_PREFIX, SCHEDULE_TOPIC};
use petrel_core::model::perm;
use petrel_core::record::{is_valid_topic, offset_msg_id, put_property, sys_flag, RecordInput};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{Appended, PutError, StoreError};

use super::{rejected, Broker, Refusal};
use crate::clock::now_millis;

/// Topics producers may not send to (`TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
const NOT_ALLOWED_TO_SEND: [&str; 6] = [
    SCHEDULE_TOPIC,
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// RocketMQ's remark for a topic name it refuses (`TopicValidator.validateTopic`).
pub(super) fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.trim().is_empty() {
        Some("The specified topic is blank.")
    } else if topic.len() > petrel_core::record::TOPIC_BYTES_MAX {
        Some("The specified topic is longer than topic max length.")
    } else if !is_valid_topic(topic.as_bytes()) {
        Some("The specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$")
    } else {
        None
    }
}

/// Where a message goes once checked.
struct Target {
    topic: String,
    queue_id: i32,
    properties: Vec<u8>,
}

pub(super) fn handle(broker: &Arc<Broker>, conn: &Connection, request: RemotingCommand) -> Handled {
    let header = match decode_header(&request) {
        Ok(header) => header,
        Err(e) => return Handled::Now(rejected(&request, &e)),
    };
    let batch = request.code == request::SEND_BATCH_MESSAGE || header.batch == Some(true);
    let checked = check(broker, conn, &header, request.body.len());
    let queue_id = match checked {
        Ok(queue_id) => queue_id,
        Err(refusal) => return Handled::Now(refusal.into()),
    };
    let appended = if batch {
        append_batch(broker, conn, &header, queue_id, &request.body)
    } else {
        append_one(broker, conn, &header, queue_id, &request.body)
    };
    let (appended, msg_ids) = match appended {
        Ok(done) => done,
        Err(refusal) => return Handled::Now(refusal.into()),
    };
    let transaction_id = header
        .properties
        .as_deref()
        .and_then(|p| petrel_core::record::property(p.as_bytes(), property::UNIQ_KEY.as_bytes()))
        .map(|id| String::from_utf8_lossy(id).into_owned());
    let reply = move |code: i32, appended: &Appended| {
        let answer = SendMessageResponseHeader {
            msg_id: msg_ids.clone(),
            queue_id,
            queue_offset: appended.queue_offset,
            transaction_id: transaction_id.clone(),
            batch_uniq_id: None,
        };
        let mut reply = RemotingCommand::response(code, None).with_header(&answer);
        reply.ext_fields.insert("MSG_REGION".into(), "DefaultRegion".into());
        reply.ext_fields.insert("TRACE_ON".into(), "true".into());
        reply
    };
    if broker.store.is_acknowledged(&appended) {
        return Handled::Now(reply(response::SUCCESS, &appended));
    }
    let broker = broker.clone();
    Handled::Later(Box::pin(async move {
        match broker.store.wait_acknowledged(appended).await {
            Ok(appended) => reply(response::SUCCESS, &appended),
            Err(PutError::FlushTimeout { appended, timeout_ms }) => {
                let mut out = reply(response::FLUSH_DISK_TIMEOUT, &appended);
                out.remark = Some(format!(
                    "stored but not flushed within syncFlushTimeout={timeout_ms} ms; it may yet be delivered"
                ));
                out
            }
            Err(PutError::NotDurable { appended, reason }) => {
                let mut out = reply(response::FLUSH_DISK_TIMEOUT, &appended);
                out.remark = Some(format!(
                    "stored but not durable: {reason}; the broker stops and the message is delivered only if it survives"
                ));
                out
            }
            Err(PutError::Store(e)) => store_error(&e).into(),
        }
    }))
}

fn decode_header(
    request: &RemotingCommand,
) -> Result<SendMessageRequestHeader, petrel_net::codec::header::HeaderError> {
    match request.code {
        request::SEND_MESSAGE => request.header::<SendMessageRequestHeader>(),
        _ => request.header::<SendMessageRequestHeaderV2>().map(Into::into),
    }
}

/// The checks before anything is written; the queue id to write to, or the answer.
fn check(
    broker: &Broker,
    conn: &Connection,
    header: &SendMessageRequestHeader,
    body_len: usize,
) -> Result<i32, Refusal> {
    if !perm::is_writeable(broker.config.broker_permission) {
        let why = format!("the broker[{}] sending message is forbidden", broker.addr);
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let topic = header.topic.as_str();
    if let Some(why) = topic_problem(topic) {
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if NOT_ALLOWED_TO_SEND.contains(&topic) {
        let why = format!("Sending message to topic[{topic}] is forbidden.");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let config = topic_for_send(broker, header)?;
    let queue_id = if header.queue_id < 0 {
        let count = broker.stats.messages_put.load(Ordering::Relaxed);
        (count % config.write_queue_nums.max(1) as u64) as i32
    } else {
        header.queue_id
    };
    if queue_id >= config.write_queue_nums.max(config.read_queue_nums) {
        let why = format!(
            "request queueId[{queue_id}] is illegal, topic:[{topic}] writeQueueNums:[{}] readQueueNums:[{}] Producer: {}",
            config.write_queue_nums,
            config.read_queue_nums,
            conn.peer()
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if !perm::is_writeable(config.perm) {
        let why = format!("the topic[{topic}] sending message is forbidden");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let max = broker.config.store.message_bytes_max;
    if body_len > max {
        let why = format!("message body is {body_len} bytes, larger than maxMessageSize={max}");
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    if header.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED {
        let why = "transaction messages are not supported by this broker yet; send it as a normal message";
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    broker.topics_durable()?;
    Ok(queue_id)
}

/// The topic's config, creating it from the default topic (or as a retry topic) if needed.
fn topic_for_send(
    broker: &Broker,
    header: &SendMessageRequestHeader,
) -> Result<petrel_core::model::TopicConfig, Refusal> {
    let topic = header.topic.as_str();
    if let Some(config) = broker.topic(topic) {
        return Ok(config);
    }
    let now = now_millis();
    let created = if let Some(group) = topic.strip_prefix(RETRY_PREFIX) {
        let queues = broker.groups().get(group).map_or(1, |g| g.retry_queue_nums);
        let rw = perm::READ | perm::WRITE;
        let mut topics = broker.topics();
        Ok(topics.create_if_absent(topic, queues, rw, 0, now).0.clone())
    } else {
        let mut topics = broker.topics();
        let queues = header.default_topic_queue_nums;
        topics
            .create_from_default(topic, &header.default_topic, queues, 0, now)
            .map(|(config, _)| config.clone())
    };
    match created {
        Ok(config) => {
            tracing::info!(topic, queues = config.write_queue_nums, "topic created on first send");
            broker.topics_changed();
            Ok(config)
        }
        Err(why) => Err(Refusal::new(response::TOPIC_NOT_EXIST, why)),
    }
}

/// The message's final topic, queue and properties: to the dead-letter topic when a retry
/// was tried too often, to the schedule topic when it asks for a delay.
fn route(
    broker: &Broker,
    header: &SendMessageRequestHeader,
    queue_id: i32,
    properties: &[u8],
) -> Result<Target, Refusal> {
    let mut target = Target {
        topic: header.topic.clone(),
        queue_id,
        properties: broker_properties(broker, properties),
    };
    if let Some(group) = header.topic.strip_prefix(RETRY_PREFIX) {
        let retry_max = match broker.groups().get(group) {
            Some(config) => config.retry_max_times,
            None => {
                let why = format!("subscription group not exist, {group}");
                return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
            }
        };
        let max = header.max_reconsume_times.unwrap_or(retry_max);
        if header.reconsume_times.unwrap_or(0) > max {
            target.topic = dlq_topic(group);
            target.queue_id = 0;
            let rw = perm::READ | perm::WRITE;
            let (_, created) =
                broker.topics().create_if_absent(&target.topic, 1, rw, 0, now_millis());
            if created {
                broker.topics_changed();
            }
            return Ok(target);
        }
    }
    let level = petrel_core::record::property(properties, property::DELAY.as_bytes())
        .and_then(|l| std::str::from_utf8(l).ok()?.parse::<i32>().ok());
    if let Some(level) = level.and_then(|l| broker.config.store.delay_levels.clamp(l)) {
        target.properties = redirect(&target.properties, &target.topic, target.queue_id, level);
        target.topic = SCHEDULE_TOPIC.to_owned();
        target.queue_id = DelayLevels::queue_id(level);
    }
    Ok(target)
}

/// The producer's properties plus what the broker adds to every message: MSG_REGION,
/// TRACE_ON, CLUSTER, and a UNIQ_KEY when the producer sent none.
fn broker_properties(broker: &Broker, sent: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.len() + 96);
    out.extend_from_slice(sent);
    if !out.is_empty() && out.last() != Some(&petrel_core::record::PROPERTY_SEPARATOR) {
        out.push(petrel_core::record::PROPERTY_SEPARATOR);
    }
    let has = |name: &str| {
        petrel_core::record::property(sent, name.as_bytes()).is_some_and(|v| !v.is_empty())
    };
    for (name, value) in [("MSG_REGION", "DefaultRegion"), ("TRACE_ON", "true")] {
        if !has(name) {
            put_property(&mut out, name, value);
        }
    }
    if !has(property::CLUSTER) {
        put_property(&mut out, property::CLUSTER, &broker.config.cluster_name);
    }
    if !has(property::UNIQ_KEY) {
        put_property(&mut out, property::UNIQ_KEY, &broker.unique_key());
    }
    out
}

fn append_one(
    broker: &Broker,
    conn: &Connection,
    header: &SendMessageRequestHeader,
    queue_id: i32,
    body: &[u8],
) -> Result<(Appended, String), Refusal> {
    let properties = header.properties.as_deref().unwrap_or("").as_bytes();
    let target = route(broker, header, queue_id, properties)?;
    let input = RecordInput {
        topic: &target.topic,
        queue_id: target.queue_id,
        flag: header.flag,
        sys_flag: header.sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: conn.peer(),
        store_host: broker.config.store.store_host,
        reconsume_times: header.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
        body,
        properties: &target.properties,
    };
    let appended = broker.store.append(&input, now_millis() as i64).map_err(|e| store_error(&e))?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    let id = appended.msg_id();
    Ok((appended, id))
}

/// The messages of a batch, appended as one unit: one lock, one write, consecutive queue
/// offsets from the one the answer names; all stored or none answered as stored. Every
/// message's id goes back, comma-separated.
fn append_batch(
    broker: &Broker,
    conn: &Connection,
    header: &SendMessageRequestHeader,
    queue_id: i32,
    body: &[u8],
) -> Result<(Appended, String), Refusal> {
    if header.topic.starts_with(RETRY_PREFIX) {
        let why = "batch request does not support retry group topics";
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    let items = decode_batch(body, broker.config.batch_messages_max).map_err(|e| {
        Refusal::new(response::MESSAGE_ILLEGAL, format!("batch body is malformed: {e}"))
    })?;
    if items.is_empty() {
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, "empty batch"));
    }
    let properties: Vec<Vec<u8>> =
        items.iter().map(|item| broker_properties(broker, item.properties)).collect();
    let inputs: Vec<RecordInput<'_>> = items
        .iter()
        .zip(&properties)
        .map(|(item, properties)| RecordInput {
            topic: &header.topic,
            queue_id,
            flag: item.flag,
            sys_flag: header.sys_flag,
            born_timestamp: header.born_timestamp,
            born_host: conn.peer(),
            store_host: broker.config.store.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: item.body,
            properties,
        })
        .collect();
    let mut offsets = Vec::with_capacity(inputs.len());
    let appended = broker
        .store
        .append_batch(&inputs, now_millis() as i64, &mut |offset| offsets.push(offset))
        .map_err(|e| store_error(&e))?;
    broker.stats.messages_put.fetch_add(inputs.len() as u64, Ordering::Relaxed);
    let ids: Vec<String> =
        offsets.iter().map(|o| offset_msg_id(appended.store_host, *o as i64)).collect();
    Ok((appended, ids.join(",")))
}

/// The answer to a store that refused a message.
pub(super) fn store_error(error: &StoreError) -> Refusal {
    let code = match error {
        StoreError::MessageTooLarge { .. }
        | StoreError::Record(_)
        | StoreError::InvalidTopic(_) => response::MESSAGE_ILLEGAL,
        StoreError::DiskFull { .. } | StoreError::Stopped(_) | StoreError::SyncFailed { .. } => {
            response::SERVICE_NOT_AVAILABLE
        }
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            response::SERVICE_NOT_AVAILABLE
        }
        _ => response::SYSTEM_ERROR,
    };
    Refusal::new(code, error.to_string())
}
