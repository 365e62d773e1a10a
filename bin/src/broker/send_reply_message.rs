//! SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325): a responder's reply to a request
//! (`ReplyMessageProcessor`). A requester (Java's `DefaultMQProducer.request`, the Rust SDK's
//! `Producer::request`) sends its request as a plain message carrying CORRELATION_ID,
//! REPLY_TO_CLIENT (its client id) and CLUSTER; the responder's reply goes to
//! `{cluster}_REPLY_TOPIC` carrying the same and `MSG_TYPE=reply`, which its client sends
//! under these codes. The broker passes the reply at once to the requester over the
//! connection its producer heartbeats came on last (PUSH_REPLY_MESSAGE_TO_CLIENT, answered
//! within 10 s) and, with `storeReplyMessageEnable` (the default), stores it in the reply
//! topic too.
//!
//! As RocketMQ: the send planner's checks first, those of any send; then the push, whose
//! failure (no REPLY_TO_CLIENT, the requester not connected to this broker, or its answer not
//! SUCCESS) is answered SYSTEM_ERROR with the reason, though the reply is stored; a reply
//! passed on but not stored is answered SUCCESS with message id "0".

use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::send_plan::{plan_send, SendPlan};
use petrel_core::record::{property, put_property, PROPERTY_SEPARATOR};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ReplyMessageRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
};
use petrel_net::signal::Flag;
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{Appended, PutError};

use super::{decode, lock, send_message, Broker, Outcome};
use crate::clock::now_millis;

/// How long the requester has to take the reply (`Broker2Client.callClient`).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The reply's property naming the requester's client id.
const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header = match request.code {
        request::SEND_REPLY_MESSAGE => decode::<SendMessageRequestHeader>(request)?,
        _ => decode::<SendMessageRequestHeaderV2>(request)?.into(),
    };
    let now = now_millis() as i64;
    let send = send_message::send_request(&header, request, conn, false, now);
    // In controller mode the role may change under the reply: its append is fenced by it.
    let term = broker.config.controller.as_ref().map(|_| broker.term());
    if let Some(refused) = broker.write_refusal() {
        return Err(refused);
    }
    let plan = broker.plan(|view| plan_send(view, &send, broker.pick()))?;
    broker.apply_plan(&plan)?;
    let push = push_request(broker, conn, &header, &request.body, now);
    let requester = requester(broker, &header);
    let (broker, conn, body) = (broker.clone(), conn.clone(), request.body.clone());
    Ok(Handled::Later(Box::pin(async move {
        let pushed = match requester {
            Ok((client, requester)) => match requester.invoke(push, PUSH_TIMEOUT).await {
                Ok(answer) if answer.code == response::SUCCESS => Ok(()),
                Ok(answer) => Err(format!(
                    "push reply message to {client} fail: it answered {} {}",
                    answer.code,
                    answer.remark.unwrap_or_default()
                )),
                Err(e) => Err(format!("push reply message to {client} fail: {e}")),
            },
            Err(why) => Err(why),
        };
        let stored = match broker.config.store_reply {
            true => store(&broker, &conn, (&header, &plan), &body, term).await,
            false => None,
        };
        let answer = SendMessageResponseHeader {
            msg_id: stored.as_ref().map_or_else(|| "0".to_owned(), Appended::msg_id),
            queue_id: plan.sent_queue_id,
            queue_offset: stored.as_ref().map_or(0, |a| a.queue_offset),
            transaction_id: None,
            batch_uniq_id: None,
        };
        let (code, remark) = match pushed {
            Ok(()) => (response::SUCCESS, None),
            Err(why) => {
                tracing::warn!(%why, "a reply was not passed to its requester");
                (response::SYSTEM_ERROR, Some(why))
            }
        };
        let mut reply = RemotingCommand::response(code, remark).with_header(&answer);
        reply.ext_fields.insert("MSG_REGION", "DefaultRegion");
        reply.ext_fields.insert("TRACE_ON", "true");
        reply
    })))
}

/// PUSH_REPLY_MESSAGE_TO_CLIENT of the reply: its send's fields, where and when the broker took
/// it, its properties with PUSH_REPLY_TIME added, its body.
fn push_request(
    broker: &Broker,
    conn: &Connection,
    header: &SendMessageRequestHeader,
    body: &[u8],
    now: i64,
) -> RemotingCommand {
    let mut properties = header.properties.clone().unwrap_or_default().into_bytes();
    if properties.last().is_some_and(|b| *b != PROPERTY_SEPARATOR) {
        properties.push(PROPERTY_SEPARATOR);
    }
    put_property(&mut properties, "PUSH_REPLY_TIME", now.to_string());
    let push = ReplyMessageRequestHeader {
        producer_group: header.producer_group.clone(),
        topic: header.topic.clone(),
        default_topic: header.default_topic.clone(),
        default_topic_queue_nums: header.default_topic_queue_nums,
        queue_id: header.queue_id,
        sys_flag: header.sys_flag,
        born_timestamp: header.born_timestamp,
        flag: header.flag,
        properties: Some(String::from_utf8_lossy(&properties).into_owned()),
        reconsume_times: header.reconsume_times,
        unit_mode: header.unit_mode,
        born_host: conn.peer().to_string(),
        store_host: broker.config.store.store_host.to_string(),
        store_timestamp: now,
    };
    RemotingCommand::request(request::PUSH_REPLY_MESSAGE_TO_CLIENT)
        .with_header(&push)
        .with_body(body.to_vec())
}

/// The requester's client id and connection, or why the reply cannot reach it.
fn requester(
    broker: &Broker,
    header: &SendMessageRequestHeader,
) -> Result<(String, Connection), String> {
    let properties = header.properties.as_deref().unwrap_or("").as_bytes();
    let Some(client) = property(properties, REPLY_TO_CLIENT.as_bytes()) else {
        return Err(format!("reply message properties[{REPLY_TO_CLIENT}] is null"));
    };
    let client = String::from_utf8_lossy(client).into_owned();
    let conn = lock(&broker.clients).producer_conn_of(&client);
    match conn.and_then(|conn| broker.server.connection(conn)) {
        Some(conn) => Ok((client, conn)),
        None => Err(format!("push reply message fail, channel of <{client}> not found.")),
    }
}

/// Stores the reply in its topic, as a send would; where, once the confirm machine answered
/// (durable or not: RocketMQ counts a flush timeout as stored); `None` if it was not stored.
async fn store(
    broker: &Broker,
    conn: &Connection,
    (header, plan): (&SendMessageRequestHeader, &SendPlan),
    body: &[u8],
    term: Option<Flag>,
) -> Option<Appended> {
    // A crowded timer slot refuses the copy, not the reply, which was pushed already.
    if plan.timer_slot().is_some_and(|slot| broker.timer_flow_control(slot).is_err()) {
        return None;
    }
    let appended = {
        let _writing = term.as_ref().map(|_| broker.role_write());
        if term.as_ref().is_some_and(Flag::is_set) {
            return None;
        }
        send_message::append_one(broker, conn, header, plan, body).ok()?.0
    };
    match broker.store.wait_acknowledged(appended).await {
        Ok(appended)
        | Err(PutError::FlushTimeout { appended, .. })
        | Err(PutError::SlaveTimeout { appended, .. })
        | Err(PutError::NotDurable { appended, .. }) => Some(appended),
        Err(PutError::Store(_)) => None,
    }
}
