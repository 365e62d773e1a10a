//! CONSUMER_SEND_MSG_BACK (36): a consumer gives back a message it failed to consume
//! (`SendMessageProcessor.consumerSendMsgBack`).
//!
//! The message is copied from the commit log into the group's retry topic `%RETRY%group`,
//! through the schedule topic at delay level `3 + reconsumeTimes` (10 s, 30 s, 1 min, ... 2 h)
//! unless the consumer asked for a level, with its reconsume count one higher. After
//! `retryMaxTimes` tries (16), or when the consumer asks for a negative level, it goes to
//! the dead-letter topic `%DLQ%group` instead. The send planner decides
//! (`petrel_core::broker::send_plan::plan_send_back`); this shell reads the record, creates
//! what the plan names and appends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_core::broker::send_plan::{plan_send_back, FailedRecord, SendBackRequest};
use petrel_core::record::{offset_msg_id, scan_record, Checks, Scanned};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerSendMsgBackRequestHeader;
use petrel_net::transport::{Connection, Handled};
use petrel_storage::PutError;

use super::send_message::{store_error, store_refusal};
use super::{answered, decode, success, Broker, Outcome, Refusal};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ConsumerSendMsgBackRequestHeader = decode(request)?;
    let Some(appended) = send_back(broker, &header)? else {
        return answered(success());
    };
    if broker.store.is_acknowledged(&appended) {
        return answered(success());
    }
    let broker = broker.clone();
    Ok(Handled::Later(Box::pin(async move {
        let refusal = match broker.store.wait_acknowledged(appended).await {
            Ok(_) => return success(),
            Err(PutError::FlushTimeout { timeout_ms, .. }) => Refusal::new(
                response::FLUSH_DISK_TIMEOUT,
                format!("retry stored but not flushed within {timeout_ms} ms"),
            ),
            Err(PutError::SlaveTimeout { timeout_ms, .. }) => Refusal::new(
                response::FLUSH_SLAVE_TIMEOUT,
                format!("retry stored but not replicated within {timeout_ms} ms"),
            ),
            Err(PutError::NotDurable { reason, .. }) => Refusal::new(
                response::FLUSH_DISK_TIMEOUT,
                format!("retry stored but not durable: {reason}"),
            ),
            Err(PutError::Store(e)) => store_refusal(&e),
        };
        refusal.into()
    })))
}

/// Appends the retry (or dead letter) the planner decides; `None` when the group keeps no
/// retries.
fn send_back(
    broker: &Broker,
    header: &ConsumerSendMsgBackRequestHeader,
) -> Result<Option<petrel_storage::Appended>, Refusal> {
    let record_bytes = u64::try_from(header.offset).ok().and_then(|o| broker.store().message_at(o));
    let checks = Checks { physical_offset: None, crc: false };
    let record = match record_bytes.as_deref().map(|bytes| scan_record(bytes, checks)) {
        Some(Scanned::Record(record)) => Some(record),
        _ => None,
    };
    let msg_id = record.as_ref().map(|r| offset_msg_id(r.store_host, r.physical_offset));
    let failed = record.as_ref().zip(msg_id.as_deref()).map(|(record, msg_id)| FailedRecord {
        topic: record.topic_str(),
        reconsume_times: record.reconsume_times,
        properties: record.properties,
        sys_flag: record.sys_flag,
        msg_id,
    });
    let request = SendBackRequest {
        group: &header.group,
        delay_level: header.delay_level,
        max_reconsume_times: header.max_reconsume_times,
        offset: header.offset,
        record: failed,
    };
    let Some(plan) = broker.plan(|view| plan_send_back(view, &request, broker.pick()))? else {
        return Ok(None);
    };
    broker.apply_plan(&plan)?;
    let record = record.expect("a plan is made only with the record");
    let properties = plan.stored_properties(record.properties, || broker.unique_key());
    let input = plan.copy_of(&record, &properties, broker.config.store.store_host);
    let appended =
        broker.store.append(&input, now_millis() as i64).map_err(|e| store_error(broker, &e))?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    if plan.dead_letter {
        let group = &header.group;
        tracing::info!(%group, offset = header.offset, "message moved to the dead-letter topic");
    }
    Ok(Some(appended))
}
