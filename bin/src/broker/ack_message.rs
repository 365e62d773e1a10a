//! ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151) and CHANGE_MESSAGE_INVISIBLETIME (200053)
//! for POP consumers (`AckMessageProcessor`, `ChangeInvisibleTimeProcessor`; docs/pop.md).
//!
//! An ack is a record in the revive queue its handle names, due at the handle's revive time,
//! so that the revive service reads it before it judges the checkpoint. A change of invisible
//! time writes a new checkpoint for the one message, due at the new time, then acks the old
//! one. As RocketMQ's, neither checks that the handle is still current: a late ack matches no
//! checkpoint (the message was already put again), and the answer is SUCCESS.

use std::sync::Arc;

use petrel_core::broker::pop::{
    AckMsg, BatchAckBody, ExtraInfo, PopCheckPoint, TopicKind, ACK_TAG, ACK_TIME_INTERVAL_MS,
    BATCH_ACK_TAG, CK_TAG,
};
use petrel_net::codec::codes::response;
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
};
use petrel_net::transport::{Connection, Handled};
use petrel_storage::Appended;

use super::pop::{ck_json, put_refusal, put_revive, REVIVE_QUEUES};
use super::pop_order;
use super::{decode, success, Broker, Outcome, Refusal};
use crate::clock::now_millis;

pub(super) fn handle_ack(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: AckMessageRequestHeader = decode(request)?;
    let info = handle_of(
        broker,
        (&header.topic, header.queue_id),
        header.offset,
        &header.extra_info,
        true,
    )?;
    let place = (header.topic.as_str(), header.queue_id);
    if info.is_orderly() {
        return pop_order::ack(broker, &header.consumer_group, place, header.offset, &info);
    }
    let ack = ack_of(&info, &header.consumer_group, place, header.offset);
    let appended = put_ack(broker, &info, ACK_TAG, &ack)?;
    Ok(durable(broker, appended, success()))
}

pub(super) fn handle_batch_ack(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let body: BatchAckBody = from_json(&request.body).map_err(|e| {
        let why = format!("BatchAckMessageRequestBody is not valid JSON: {e}");
        Refusal::new(response::SYSTEM_ERROR, why)
    })?;
    if body.acks.is_empty() {
        return Err(Refusal::new(response::NO_MESSAGE, "the batch names no ack"));
    }
    let mut last = None;
    for batch in &body.acks {
        let kind = TopicKind::parse(&batch.r).map_err(bad_handle)?;
        let topic = kind.real_topic(&batch.c, &batch.t);
        let Some((min, max)) = broker.store().queue_offsets(&topic, batch.q) else { continue };
        let offsets: Vec<i64> = batch.offsets().map_err(bad_handle)?;
        let offsets: Vec<i64> =
            offsets.into_iter().filter(|o| *o >= min as i64 && *o <= max as i64).collect();
        if offsets.is_empty() {
            continue;
        }
        let info = ExtraInfo {
            start_offset: batch.so,
            pop_time: batch.pt,
            invisible_time: batch.it,
            revive_qid: batch.rq,
            kind,
            broker_name: body.broker_name.clone(),
            queue_id: batch.q,
            offset: -1,
        };
        if info.is_orderly() {
            for offset in &offsets {
                pop_order::ack(broker, &batch.c, (&topic, batch.q), *offset, &info)?;
            }
            continue;
        }
        revive_queue_of(&info)?;
        let ack = AckMsg {
            ao: -1,
            so: batch.so,
            c: batch.c.clone(),
            t: topic,
            q: batch.q,
            pt: batch.pt,
            bn: Some(body.broker_name.clone()),
            aol: Some(offsets),
        };
        last = Some(put_ack(broker, &info, BATCH_ACK_TAG, &ack)?);
    }
    match last {
        Some(appended) => Ok(durable(broker, appended, success())),
        None => Ok(Handled::Now(success())),
    }
}

pub(super) fn handle_change_invisible(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ChangeInvisibleTimeRequestHeader = decode(request)?;
    let place = (header.topic.as_str(), header.queue_id);
    let info = handle_of(broker, place, header.offset, &header.extra_info, false)?;
    if info.is_orderly() {
        let change = (header.offset, header.invisible_time);
        return pop_order::change_invisible(broker, &header.consumer_group, place, change, &info);
    }
    let now = now_millis() as i64;
    let ck = PopCheckPoint {
        so: header.offset,
        pt: now,
        it: header.invisible_time.max(0),
        n: 1,
        q: header.queue_id,
        t: header.topic.clone(),
        c: header.consumer_group.clone(),
        d: Some(vec![0]),
        bn: Some(info.broker_name.clone()),
        ..PopCheckPoint::default()
    };
    let due = ck.revive_time() - ACK_TIME_INTERVAL_MS;
    put_revive(broker, info.revive_qid, CK_TAG, &ck.unique_key(), &ck_json(&ck), due)?;
    let place = (header.topic.as_str(), header.queue_id);
    let ack = ack_of(&info, &header.consumer_group, place, header.offset);
    let appended = put_ack(broker, &info, ACK_TAG, &ack)?;
    let answer = ChangeInvisibleTimeResponseHeader {
        pop_time: now,
        invisible_time: ck.it,
        revive_qid: info.revive_qid,
    };
    Ok(durable(broker, appended, success().with_header(&answer)))
}

/// The handle of the message at `offset` of `place`, checked: the queue exists, the offset
/// is in it (`at_end`: the queue's end offset too, as RocketMQ's ack allows), the handle
/// parses and names a revive queue.
fn handle_of(
    broker: &Broker,
    (topic, queue_id): (&str, i32),
    offset: i64,
    extra_info: &str,
    at_end: bool,
) -> Result<ExtraInfo, Refusal> {
    let Some(config) = broker.topic(topic) else {
        let why = format!("topic[{topic}] not exist, apply first please!");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    if queue_id < 0 || queue_id >= config.read_queue_nums {
        let why = format!(
            "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
            config.read_queue_nums
        );
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    let (min, max) = broker.store().queue_offsets(topic, queue_id).unwrap_or((0, 0));
    let (min, max) = (min as i64, max as i64);
    if offset < min || offset > max || (offset == max && !at_end) {
        let why = format!(
            "offset is illegal, key:{topic}@{queue_id}, commit:{offset}, store:{min},{max}"
        );
        return Err(Refusal::new(response::NO_MESSAGE, why));
    }
    let info = ExtraInfo::parse(extra_info).map_err(bad_handle)?;
    if !info.is_orderly() {
        revive_queue_of(&info)?;
    }
    Ok(info)
}

fn revive_queue_of(info: &ExtraInfo) -> Result<i32, Refusal> {
    if (0..REVIVE_QUEUES).contains(&info.revive_qid) {
        return Ok(info.revive_qid);
    }
    let why =
        format!("extraInfo names revive queue {}, not one of 0..{REVIVE_QUEUES}", info.revive_qid);
    Err(Refusal::new(response::MESSAGE_ILLEGAL, why))
}

fn bad_handle(e: petrel_core::broker::pop::PopError) -> Refusal {
    Refusal::new(response::SYSTEM_ERROR, e.to_string())
}

/// The ack of the message at `offset` of `place` whose handle is `info`.
fn ack_of(info: &ExtraInfo, group: &str, (topic, queue_id): (&str, i32), offset: i64) -> AckMsg {
    AckMsg {
        ao: offset,
        so: info.start_offset,
        c: group.to_owned(),
        t: topic.to_owned(),
        q: queue_id,
        pt: info.pop_time,
        bn: Some(info.broker_name.clone()),
        aol: None,
    }
}

/// Appends `ack` to the handle's revive queue, due at the handle's revive time.
fn put_ack(
    broker: &Broker,
    info: &ExtraInfo,
    tag: &str,
    ack: &AckMsg,
) -> Result<Appended, Refusal> {
    let body = serde_json::to_vec(ack).expect("an ack always serializes");
    put_revive(broker, info.revive_qid, tag, &ack.unique_key(), &body, info.revive_time())
}

/// `reply` once `appended` is stored as a send would be.
fn durable(broker: &Arc<Broker>, appended: Appended, reply: RemotingCommand) -> Handled {
    if broker.store.is_acknowledged(&appended) {
        return Handled::Now(reply);
    }
    let broker = broker.clone();
    Handled::Later(Box::pin(async move {
        match broker.store.wait_acknowledged(appended).await {
            Ok(_) => reply,
            Err(e) => put_refusal(&e, "the ack").into(),
        }
    }))
}
