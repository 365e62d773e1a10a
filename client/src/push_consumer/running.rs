//! GET_CONSUMER_RUNNING_INFO (307), which a broker sends to a member on an admin's behalf
//! (mqadmin consumerStatus, the dashboard's client view): the member's settings, its
//! subscriptions and each queue it holds (`ConsumerRunningInfo`, fastjson's form).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use petrel_core::admin::{
    version_desc, ConsumeDirectlyStatus, ConsumeMessageDirectlyResult, MessageQueue,
    ProcessQueueInfo,
};
use petrel_net::bodies::reset_offsets_from_json;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::command::VERSION_CURRENT;
use petrel_net::codec::json::{to_json, write_object_keyed, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
    ResetOffsetRequestHeader,
};
use petrel_net::transport::{Connection, Handled, RequestHandler};

use super::{lock, subscriptions, Consume, ConsumeResult, Inner, Process};
use crate::group::Notices;
use crate::orderly::{OrderlyContext, OrderlyResult};
use crate::pull_consumer::decode_each;

/// Serves what brokers send a push consumer: group change notices, running info, resets of
/// its offsets, and messages to consume at once.
pub(super) struct PushHandler {
    pub notices: Notices,
    /// The consumer, once started (the handler is made before it).
    pub inner: Arc<OnceLock<Weak<Inner>>>,
}

impl RequestHandler for PushHandler {
    fn handle(&self, conn: &Connection, request: RemotingCommand) -> Handled {
        let inner = self.inner.get().and_then(Weak::upgrade);
        if request.code == request::RESET_CONSUMER_CLIENT_OFFSET {
            return reset_offsets(inner, &request);
        }
        if request.code == request::CONSUME_MESSAGE_DIRECTLY {
            // The listener runs on a task of its own, not on the connection's reader.
            return Handled::Later(Box::pin(async move { consume_directly(inner, &request) }));
        }
        if request.code != request::GET_CONSUMER_RUNNING_INFO {
            return self.notices.handle(conn, request);
        }
        let header = request.header::<GetConsumerRunningInfoRequestHeader>();
        let answer = match (inner, header) {
            (Some(inner), Ok(header)) if header.consumer_group == inner.config.group => {
                RemotingCommand::response(response::SUCCESS, None).with_body(running_info(&inner))
            }
            (_, Ok(header)) => RemotingCommand::response(
                response::SYSTEM_ERROR,
                format!(
                    "The Consumer Group <{}> not exist in this consumer",
                    header.consumer_group
                ),
            ),
            (_, Err(e)) => RemotingCommand::response(response::SYSTEM_ERROR, e.to_string()),
        };
        Handled::Now(answer)
    }
}

/// RESET_CONSUMER_CLIENT_OFFSET (220), one way: a broker whose operator reset the group's
/// offsets the way RocketMQ 4 did sends each member the new offsets of a topic's queues. One
/// that is not this member's group, or does not parse, is logged and dropped.
fn reset_offsets(inner: Option<Arc<Inner>>, request: &RemotingCommand) -> Handled {
    let done = || Handled::Now(RemotingCommand::response(response::SUCCESS, None));
    let header = match request.header::<ResetOffsetRequestHeader>() {
        Ok(header) => header,
        Err(e) => {
            tracing::warn!(error = %e, "a reset of offsets without its header; dropped");
            return done();
        }
    };
    let table = match reset_offsets_from_json(&request.body) {
        Ok(table) => table,
        Err(e) => {
            tracing::warn!(error = %e, topic = %header.topic, "a reset of offsets whose table does not parse; dropped");
            return done();
        }
    };
    match inner {
        Some(inner) if inner.config.group == header.group => Handled::Later(Box::pin(async move {
            super::reset(&inner, &header.topic, table).await;
            RemotingCommand::response(response::SUCCESS, None)
        })),
        _ => {
            tracing::warn!(group = %header.group, "a reset of offsets for another group; dropped");
            done()
        }
    }
}

/// CONSUME_MESSAGE_DIRECTLY (309): an admin has this member's listener consume the message
/// the broker sent as the body, now and outside its queues (nothing is committed, sent back
/// or counted), and is answered how it went (`ConsumeMessageDirectlyResult`), as RocketMQ's
/// `consumeMessageDirectly` answers: a failure is CR_LATER, a panic CR_THROW_EXCEPTION.
fn consume_directly(inner: Option<Arc<Inner>>, request: &RemotingCommand) -> RemotingCommand {
    let header = match request.header::<ConsumeMessageDirectlyResultRequestHeader>() {
        Ok(header) => header,
        Err(e) => return RemotingCommand::response(response::SYSTEM_ERROR, e.to_string()),
    };
    let inner = match inner {
        Some(inner) if inner.config.group == header.consumer_group => inner,
        _ => {
            let why = format!(
                "The Consumer Group <{}> not exist in this consumer",
                header.consumer_group
            );
            return RemotingCommand::response(response::SYSTEM_ERROR, why);
        }
    };
    let broker_name = header.broker_name.unwrap_or_default();
    let queue_of = |topic: &str, queue_id| MessageQueue::new(topic, &broker_name, queue_id);
    let message = match decode_each(&request.body, queue_of).map(|m| m.into_iter().next()) {
        Ok(Some(message)) => message,
        Ok(None) => {
            return RemotingCommand::response(
                response::SYSTEM_ERROR,
                "no message in the request".to_owned(),
            )
        }
        Err(e) => return RemotingCommand::response(response::SYSTEM_ERROR, e.to_string()),
    };
    let started = inner.clock.now();
    let consumed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &inner.consume {
            Consume::Concurrent(listener) => match listener.consume(&message) {
                ConsumeResult::Success => ConsumeDirectlyStatus::CrSuccess,
                ConsumeResult::Later => ConsumeDirectlyStatus::CrLater,
            },
            Consume::Orderly(listener) => {
                let context = OrderlyContext {
                    queue: message.queue.clone(),
                    suspensions: 0,
                    lock_asked_at: None,
                    lock_answered_at: None,
                };
                match listener.consume(&message, &context) {
                    OrderlyResult::Success => ConsumeDirectlyStatus::CrSuccess,
                    OrderlyResult::Suspend => ConsumeDirectlyStatus::CrLater,
                }
            }
        }));
    let (status, remark) = match consumed {
        Ok(status) => (status, None),
        Err(panic) => {
            let said = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the listener panicked".to_owned());
            (ConsumeDirectlyStatus::CrThrowException, Some(said))
        }
    };
    let result = ConsumeMessageDirectlyResult {
        auto_commit: true,
        consume_result: Some(status),
        order: matches!(inner.consume, Consume::Orderly(_)),
        remark,
        spent_time_mills: inner.clock.now().saturating_sub(started) as i64,
    };
    RemotingCommand::response(response::SUCCESS, None)
        .with_body(to_json(&result, JsonStyle::Fastjson))
}

/// The `ConsumerRunningInfo` body, its fields in fastjson's order; `mqTable` keyed by queue
/// objects as fastjson writes them. Status and user info are empty; no jstack.
fn running_info(inner: &Inner) -> Vec<u8> {
    let config = &inner.config;
    let now = inner.clock.now();
    // In MessageQueue's order (topic, broker, queue id), as fastjson writes a TreeMap.
    let queues: Vec<(MessageQueue, ProcessQueueInfo)> = lock(&inner.owned)
        .iter()
        .map(|(queue, owned)| (queue.clone(), queue_info(inner, &owned.process, now)))
        .collect();
    let orderly = matches!(inner.consume, super::Consume::Orderly(_));
    let properties: BTreeMap<&str, String> = BTreeMap::from([
        ("PROP_CLIENT_VERSION", version_desc(VERSION_CURRENT)),
        ("PROP_CONSUMEORDERLY", orderly.to_string()),
        ("PROP_CONSUMER_START_TIMESTAMP", inner.started_ms.to_string()),
        ("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY".to_owned()),
        ("PROP_NAMESERVER_ADDR", config.namesrv_addrs.join(";")),
        ("PROP_THREADPOOL_CORE_SIZE", config.workers.to_string()),
        ("consumeFromWhere", config.consume_from.rocketmq_name().to_owned()),
        ("consumerGroup", config.group.clone()),
        ("messageModel", config.message_model.rocketmq_name().to_owned()),
    ]);
    let subscriptions: Vec<_> =
        subscriptions(config).iter().map(|(topic, sub)| sub.data(topic)).collect();
    let style = JsonStyle::Fastjson;
    let mut out = b"{\"mqPopTable\":{},\"mqTable\":".to_vec();
    write_object_keyed(&mut out, &queues, style);
    out.extend_from_slice(b",\"properties\":");
    out.extend_from_slice(&to_json(&properties, style));
    out.extend_from_slice(b",\"statusTable\":{},\"subscriptionSet\":");
    out.extend_from_slice(&to_json(&subscriptions, style));
    out.extend_from_slice(b",\"userConsumerInfo\":{}}");
    out
}

/// One held queue: what is cached, the offset it would commit, and for an orderly member its
/// lock. Pull and consume times are not tracked (0).
fn queue_info(inner: &Inner, process: &Process, now: u64) -> ProcessQueueInfo {
    let (cached, commit_offset, lock) = match process {
        Process::Concurrent(queue, _) => {
            let queue = lock(queue);
            (queue.cached(), queue.commit_offset(), None)
        }
        Process::Orderly(shared) => {
            let state = shared.state();
            let lock = (state.lock_valid(now), state.lock_answered_at());
            (state.cached(), state.commit_offset(), Some(lock))
        }
    };
    let (locked, answered) = lock.unwrap_or((false, None));
    let wall = |at: u64| inner.started_ms.saturating_add(at) as i64;
    ProcessQueueInfo {
        cached_msg_count: cached.count as i32,
        cached_msg_max_offset: cached.max_offset,
        cached_msg_min_offset: cached.min_offset,
        cached_msg_size_in_mib: (cached.bytes / (1024 * 1024)) as i32,
        commit_offset,
        locked,
        last_lock_timestamp: answered.map_or(0, wall),
        ..ProcessQueueInfo::default()
    }
}
