//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320): a producer's message
//! into the commit log (`SendMessageProcessor`).
//!
//! The send planner (`petrel_core::broker::send_plan`) decides: RocketMQ's checks in its order
//! (broker writable, topic name, topic known or created from the default topic it names,
//! queue id, topic writable, body size), then the redirects, to the dead-letter topic when a
//! retry has been tried too often, to the schedule topic when it asks for a delay level. This
//! shell creates what the plan names, appends (a batch as one append) and answers when the
//! confirm machine acknowledges: at once under ASYNC_FLUSH, after the group commit under
//! SYNC_FLUSH, or FLUSH_DISK_TIMEOUT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::batch::decode_batch;
use petrel_core::broker::property;
use petrel_core::broker::send_plan::{plan_send, SendPlan, SendRequest};
use petrel_core::record::{offset_msg_id, RecordInput};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use petrel_net::signal::Flag;
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{Appended, PutError, StoreError};

use super::config::BrokerRole;
use super::{answered, decode, lock, Broker, Outcome, Refusal};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let began = std::time::Instant::now();
    let header = match request.code {
        request::SEND_MESSAGE => decode::<SendMessageRequestHeader>(request)?,
        _ => decode::<SendMessageRequestHeaderV2>(request)?.into(),
    };
    let batch = request.code == request::SEND_BATCH_MESSAGE || header.batch == Some(true);
    let send = send_request(&header, request, conn, batch, now_millis() as i64);
    // In controller mode the role may change under the send: the append is fenced by it.
    let term = broker.config.controller.as_ref().map(|_| broker.term());
    if let Some(refused) = broker.write_refusal() {
        return Err(refused);
    }
    let plan = broker.plan(|view| plan_send(view, &send, broker.pick()))?;
    if let Some(slot) = plan.timer_slot() {
        broker.timer_flow_control(slot)?;
    }
    broker.apply_plan(&plan)?;
    let writing = term.as_ref().map(|_| broker.role_write());
    if term.as_ref().is_some_and(Flag::is_set) {
        let why = "the broker's role changed while the send was checked; send it again";
        return Err(Refusal::new(response::SERVICE_NOT_AVAILABLE, why));
    }
    let (appended, msg_ids) = match batch {
        true => append_batch(broker, conn, &header, &plan, &request.body)?,
        false => append_one(broker, conn, &header, &plan, &request.body)?,
    };
    drop(writing);
    let transaction_id = header
        .properties
        .as_deref()
        .and_then(|p| petrel_core::record::property(p.as_bytes(), property::UNIQ_KEY.as_bytes()))
        .map(|id| String::from_utf8_lossy(id).into_owned());
    let answer = Answer { msg_ids, queue_id: plan.sent_queue_id, transaction_id };
    if broker.store.is_acknowledged(&appended) {
        broker.stats.send_latency.record_us(began.elapsed().as_micros() as u64);
        return answered(answer.reply(response::SUCCESS, &appended));
    }
    if broker.config.controller.is_none()
        && broker.config.role == BrokerRole::SyncMaster
        && !broker.store.slave_ok(appended.end_offset, broker.config.ha_max_gap_bytes)
    {
        // Stored, but no slave to wait for (RocketMQ's isSlaveOK): say so at once.
        let mut out = answer.reply(response::SLAVE_NOT_AVAILABLE, &appended);
        out.remark = Some("stored on the master, but no slave is connected and in sync".into());
        return answered(out);
    }
    let broker = broker.clone();
    Ok(Handled::Later(Box::pin(async move {
        let waited = broker.store.wait_acknowledged(appended).await;
        broker.stats.send_latency.record_us(began.elapsed().as_micros() as u64);
        answer.after_wait(waited)
    })))
}

/// What the send planner reads of a send (or a reply) with `header`.
pub(super) fn send_request<'a>(
    header: &'a SendMessageRequestHeader,
    request: &RemotingCommand,
    conn: &Connection,
    batch: bool,
    now_ms: i64,
) -> SendRequest<'a> {
    SendRequest {
        topic: &header.topic,
        queue_id: header.queue_id,
        sys_flag: header.sys_flag,
        properties: header.properties.as_deref().unwrap_or("").as_bytes(),
        reconsume_times: header.reconsume_times.unwrap_or(0),
        max_reconsume_times: header.max_reconsume_times,
        default_topic: &header.default_topic,
        default_topic_queue_nums: header.default_topic_queue_nums,
        body_bytes: request.body.len(),
        batch,
        producer: conn.peer(),
        now_ms,
    }
}

/// What the answer to a send names besides where the message went.
struct Answer {
    msg_ids: String,
    queue_id: i32,
    transaction_id: Option<String>,
}

impl Answer {
    fn reply(self, code: i32, appended: &Appended) -> RemotingCommand {
        let header = SendMessageResponseHeader {
            msg_id: self.msg_ids,
            queue_id: self.queue_id,
            queue_offset: appended.queue_offset,
            transaction_id: self.transaction_id,
            batch_uniq_id: None,
        };
        let mut reply = RemotingCommand::response(code, None).with_header(&header);
        reply.ext_fields.insert("MSG_REGION", "DefaultRegion");
        reply.ext_fields.insert("TRACE_ON", "true");
        reply
    }

    /// The answer once the confirm machine acknowledged the message, or did not in time.
    fn after_wait(self, waited: Result<Appended, PutError>) -> RemotingCommand {
        match waited {
            Ok(appended) => self.reply(response::SUCCESS, &appended),
            Err(PutError::FlushTimeout { appended, timeout_ms }) => {
                let mut out = self.reply(response::FLUSH_DISK_TIMEOUT, &appended);
                out.remark = Some(format!(
                    "stored but not flushed within syncFlushTimeout={timeout_ms} ms; it may yet be delivered"
                ));
                out
            }
            Err(PutError::SlaveTimeout { appended, timeout_ms }) => {
                let mut out = self.reply(response::FLUSH_SLAVE_TIMEOUT, &appended);
                out.remark = Some(format!(
                    "stored on the master, but no slave reported it within syncFlushTimeout={timeout_ms} ms"
                ));
                out
            }
            Err(PutError::NotDurable { appended, reason }) => {
                let mut out = self.reply(response::FLUSH_DISK_TIMEOUT, &appended);
                out.remark = Some(format!(
                    "stored but not durable: {reason}; the broker stops and the message is delivered only if it survives"
                ));
                out
            }
            Err(PutError::Store(e)) => store_refusal(&e).into(),
        }
    }
}

pub(super) fn append_one(
    broker: &Broker,
    conn: &Connection,
    header: &SendMessageRequestHeader,
    plan: &SendPlan,
    body: &[u8],
) -> Result<(Appended, String), Refusal> {
    let sent = header.properties.as_deref().unwrap_or("").as_bytes();
    let properties = plan.stored_properties(sent, || broker.unique_key());
    let input = RecordInput {
        topic: &plan.topic,
        queue_id: plan.queue_id,
        flag: header.flag,
        sys_flag: plan.sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: conn.peer(),
        store_host: broker.config.store.store_host,
        reconsume_times: plan.reconsume_times,
        prepared_transaction_offset: 0,
        body,
        properties: &properties,
    };
    let appended =
        broker.store.append(&input, now_millis() as i64).map_err(|e| store_error(broker, &e))?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    if broker.config.metrics.prom {
        lock(&broker.stats.traffic).put(&plan.topic, 1, body.len() as u64);
    }
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
    plan: &SendPlan,
    body: &[u8],
) -> Result<(Appended, String), Refusal> {
    let items = decode_batch(body, broker.config.batch_messages_max).map_err(|e| {
        Refusal::new(response::MESSAGE_ILLEGAL, format!("batch body is malformed: {e}"))
    })?;
    if items.is_empty() {
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, "empty batch"));
    }
    let properties: Vec<Vec<u8>> = items
        .iter()
        .map(|item| plan.stored_properties(item.properties, || broker.unique_key()))
        .collect();
    let inputs: Vec<RecordInput<'_>> = items
        .iter()
        .zip(&properties)
        .map(|(item, properties)| RecordInput {
            topic: &plan.topic,
            queue_id: plan.queue_id,
            flag: item.flag,
            sys_flag: plan.sys_flag,
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
        .append_batch(&inputs, now_millis() as i64, &mut |offset, _| offsets.push(offset))
        .map_err(|e| store_error(broker, &e))?;
    broker.stats.messages_put.fetch_add(inputs.len() as u64, Ordering::Relaxed);
    if broker.config.metrics.prom {
        let bytes = items.iter().map(|item| item.body.len() as u64).sum();
        lock(&broker.stats.traffic).put(&plan.topic, inputs.len() as u64, bytes);
    }
    let ids: Vec<String> =
        offsets.iter().map(|o| offset_msg_id(appended.store_host, *o as i64)).collect();
    Ok((appended, ids.join(",")))
}

/// The answer to a store that refused a message; a refusal for want of space is logged (at
/// most once in ten seconds per broker).
pub(super) fn store_error(broker: &Broker, error: &StoreError) -> Refusal {
    if matches!(error, StoreError::Io { .. }) && error.is_no_space() {
        no_space_left(broker, error);
    }
    store_refusal(error)
}

/// The code and remark a store's refusal is answered with.
pub(super) fn store_refusal(error: &StoreError) -> Refusal {
    let code = match error {
        StoreError::MessageTooLarge { .. }
        | StoreError::Record(_)
        | StoreError::InvalidTopic(_) => response::MESSAGE_ILLEGAL,
        StoreError::DiskFull { .. } | StoreError::Stopped(_) | StoreError::SyncFailed { .. } => {
            response::SERVICE_NOT_AVAILABLE
        }
        StoreError::Io { .. } if error.is_no_space() => response::SERVICE_NOT_AVAILABLE,
        _ => response::SYSTEM_ERROR,
    };
    Refusal::new(code, error.to_string())
}

/// Logs a write that failed for want of space when it happens, at most once in ten seconds:
/// the cleanup pass that refuses writes on a full disk measures it only every ten seconds.
fn no_space_left(broker: &Broker, error: &StoreError) {
    let now = now_millis();
    let last = broker.stats.no_space_logged_ms.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 10_000 {
        return;
    }
    broker.stats.no_space_logged_ms.store(now, Ordering::Relaxed);
    tracing::error!(
        %error,
        "a write failed: no space left on the device. The message was not stored and its \
         producer was told SERVICE_NOT_AVAILABLE; free space on the store's disk"
    );
}
