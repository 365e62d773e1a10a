//! Request-reply (RocketMQ 4.6's RPC over messages): [`Producer::request`](crate::Producer::request)
//! sends a message carrying CORRELATION_ID, REPLY_TO_CLIENT (the producer's client id), TTL
//! and CLUSTER, and waits for the reply; a responder makes the reply with [`reply_to`] and
//! sends it with any producer, which sends a message whose `MSG_TYPE` is `reply` as
//! SEND_REPLY_MESSAGE_V2. The broker passes the reply to the requester's connection
//! (PUSH_REPLY_MESSAGE_TO_CLIENT), where [`ReplyHandler`] hands it to the request waiting for
//! its correlation id, as Java's `ClientRemotingProcessor.receiveReplyMessage` does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use petrel_core::client::MessageQueue;
use petrel_core::record::properties;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ReplyMessageRequestHeader;
use petrel_net::transport::{not_supported, Connection, Handled, RequestHandler};
use tokio::sync::oneshot;

use crate::message::body_as_sent;
use crate::producer::now_millis;
use crate::{ClientError, Message, ReceivedMessage};

/// The request's id, which its reply carries back.
pub const CORRELATION_ID: &str = "CORRELATION_ID";
/// The requester's client id: where the broker passes the reply.
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
/// How long the requester waits, in milliseconds.
pub const TTL: &str = "TTL";
/// The requester's cluster: the reply goes to its `{cluster}_REPLY_TOPIC`.
pub const CLUSTER: &str = "CLUSTER";
/// `reply` on a reply (`MSG_TYPE`).
pub const MSG_TYPE: &str = "MSG_TYPE";
/// When the reply reached the requester (`ARRIVE_TIME`), added on arrival.
pub const ARRIVE_TIME: &str = "ARRIVE_TIME";

/// The reply to `request` with `body` (RocketMQ's `MessageUtil.createReplyMessage`): to the
/// requester's cluster's reply topic, carrying the request's correlation id, requester and
/// TTL. Refused when the request carries no CLUSTER (it was not sent as a request).
pub fn reply_to(request: &ReceivedMessage, body: impl Into<Bytes>) -> Result<Message, ClientError> {
    let property = |name: &str| request.properties.get(name).cloned();
    let Some(cluster) = property(CLUSTER) else {
        return Err(ClientError::Invalid(format!(
            "create reply message fail, requestMessage error, property[{CLUSTER}] is null."
        )));
    };
    let mut reply = Message::new(format!("{cluster}_REPLY_TOPIC"), body);
    reply.properties.insert(MSG_TYPE.to_owned(), "reply".to_owned());
    for name in [CORRELATION_ID, REPLY_TO_CLIENT, TTL] {
        if let Some(value) = property(name) {
            reply.properties.insert(name.to_owned(), value);
        }
    }
    Ok(reply)
}

/// Whether `message` is a reply ([`reply_to`]'s), sent as SEND_REPLY_MESSAGE_V2.
pub(crate) fn is_reply(message: &Message) -> bool {
    message.properties.get(MSG_TYPE).is_some_and(|t| t == "reply")
}

/// Requests waiting for their replies, by correlation id.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<String, oneshot::Sender<ReceivedMessage>>>);

impl Waiting {
    /// Waits for the reply carrying `correlation_id`, until the guard goes.
    pub(crate) fn wait_for<'a>(&'a self, correlation_id: &str) -> Awaited<'a> {
        let (send, receive) = oneshot::channel();
        self.lock().insert(correlation_id.to_owned(), send);
        Awaited { waiting: self, correlation_id: correlation_id.to_owned(), receive: Some(receive) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<ReceivedMessage>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request waiting for its reply; dropped, it waits no more (a reply then is dropped).
pub(crate) struct Awaited<'a> {
    waiting: &'a Waiting,
    correlation_id: String,
    receive: Option<oneshot::Receiver<ReceivedMessage>>,
}

impl Awaited<'_> {
    /// The reply, once it comes; `None` if none can (asked before).
    pub(crate) async fn reply(&mut self) -> Option<ReceivedMessage> {
        self.receive.take()?.await.ok()
    }
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.correlation_id);
    }
}

/// A producer's connections' handler: replies go to the request waiting for them; every other
/// request to `other` (a transaction producer's checks), or is not supported.
pub(crate) struct ReplyHandler {
    pub waiting: Arc<Waiting>,
    pub other: Option<Arc<dyn RequestHandler>>,
}

impl RequestHandler for ReplyHandler {
    fn handle(&self, conn: &Connection, command: RemotingCommand) -> Handled {
        if command.code != request::PUSH_REPLY_MESSAGE_TO_CLIENT {
            return match &self.other {
                Some(other) => other.handle(conn, command),
                None => Handled::Now(not_supported(command.code)),
            };
        }
        let header: ReplyMessageRequestHeader = match command.header() {
            Ok(header) => header,
            Err(e) => {
                let why = format!("process reply message fail: {e}");
                return Handled::Now(RemotingCommand::response(response::SYSTEM_ERROR, why));
            }
        };
        let stored = command.body_bytes();
        let body = match body_as_sent(header.sys_flag, &stored, &stored) {
            Ok(body) => body,
            Err(e) => {
                let why = format!("process reply message fail: {e}");
                return Handled::Now(RemotingCommand::response(response::SYSTEM_ERROR, why));
            }
        };
        let reply = received(&header, body);
        let correlation = reply.properties.get(CORRELATION_ID).cloned().unwrap_or_default();
        match self.waiting.lock().remove(&correlation) {
            // The request may have given up just now: the reply is dropped, as Java's is.
            Some(waiter) => drop(waiter.send(reply)),
            None => tracing::warn!(%correlation, "a reply that no request waits for"),
        }
        Handled::Now(RemotingCommand::response(response::SUCCESS, None))
    }

    fn connection_closed(&self, conn: &Connection) {
        if let Some(other) = &self.other {
            other.connection_closed(conn);
        }
    }
}

/// The reply as a received message (no queue offset: it was passed on, not read).
fn received(header: &ReplyMessageRequestHeader, body: Bytes) -> ReceivedMessage {
    let mut props: std::collections::BTreeMap<String, String> =
        properties(header.properties.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| {
                (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())
            })
            .collect();
    props.insert(ARRIVE_TIME.to_owned(), now_millis().to_string());
    ReceivedMessage {
        topic: header.topic.clone(),
        queue: MessageQueue::new(&header.topic, "", header.queue_id),
        queue_offset: 0,
        msg_id: props.get("UNIQ_KEY").cloned().unwrap_or_default(),
        offset_msg_id: String::new(),
        body,
        properties: props,
        reconsume_times: header.reconsume_times.unwrap_or(0),
        born_timestamp: header.born_timestamp,
        store_timestamp: header.store_timestamp,
        commit_log_offset: 0,
    }
}
