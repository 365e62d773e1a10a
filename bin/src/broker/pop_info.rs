//! PEEK_MESSAGE (200052), NOTIFICATION (200054) and POLLING_INFO (200055) for POP consumers
//! (`PeekMessageProcessor`, `NotificationProcessor`, `PollingInfoProcessor`; docs/pop.md):
//! what a pop would find, without taking it.
//!
//! - PEEK reads from where the group's next pop would (the pop retry topic first one peek in
//!   five), hides nothing and moves nothing: SUCCESS with the records, or PULL_NOT_FOUND (19).
//! - NOTIFICATION answers whether a pop would find a message, held up to `pollTime` while
//!   none would (SUCCESS with `hasMsg`; `pollingFull` when too many requests are held).
//! - POLLING_INFO answers how many pops of the group are held for the queue asked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use petrel_core::broker::pop::{pop_retry_topic, POP_MAX_MESSAGES};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    NotificationRequestHeader, NotificationResponseHeader, PeekMessageRequestHeader,
    PollingInfoRequestHeader, PollingInfoResponseHeader, PopMessageResponseHeader,
};
use petrel_net::transport::{Connection, Handled};
use petrel_storage::ReadLimits;

use super::pop::{position, queues_to_read};
use super::pull_message::{dispatched_past, HeldSlot};
use super::{answered, decode, lock, success, Broker, Outcome, Refusal};
use crate::clock::now_millis;

pub(super) fn handle_peek(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: PeekMessageRequestHeader = decode(request)?;
    if header.max_msg_nums > POP_MAX_MESSAGES {
        let why = format!("the broker[{}] peek message size over {POP_MAX_MESSAGES}", broker.addr);
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    let (topic, group) = (header.topic.as_str(), header.consumer_group.as_str());
    let queues = queues_to_read(broker, topic, header.queue_id, group)?;
    let want = usize::try_from(header.max_msg_nums).unwrap_or(1).max(1);
    let (mut messages, mut rest) = (Vec::new(), 0);
    for (read, queue_id) in reading_order(broker, topic, group, &queues) {
        let left = want.saturating_sub(messages.len());
        rest += peek_queue(broker, (&read, group, queue_id), left, &mut messages);
    }
    let answer = PopMessageResponseHeader { rest_num: rest, ..PopMessageResponseHeader::default() };
    let code = if messages.is_empty() { response::PULL_NOT_FOUND } else { response::SUCCESS };
    answered(RemotingCommand::response(code, None).with_header(&answer).with_body_parts(messages))
}

/// The queues a pop of `queues` reads, in order: the pop retry topic's one first one time in
/// five, else last.
fn reading_order(broker: &Broker, topic: &str, group: &str, queues: &[i32]) -> Vec<(String, i32)> {
    let mut order: Vec<(String, i32)> = queues.iter().map(|q| (topic.to_owned(), *q)).collect();
    let retry = pop_retry_topic(group, topic, false);
    if broker.topic(&retry).is_some() {
        match broker.pop.count.fetch_add(1, Ordering::Relaxed).is_multiple_of(5) {
            true => order.insert(0, (retry, 0)),
            false => order.push((retry, 0)),
        }
    }
    order
}

/// Reads up to `left` messages of a queue from where the group's next pop would, into
/// `messages`; how many are left there after them.
fn peek_queue(
    broker: &Broker,
    (topic, group, queue_id): (&str, &str, i32),
    left: usize,
    messages: &mut Vec<Bytes>,
) -> i64 {
    let Some((min, max)) = broker.store().queue_offsets(topic, queue_id) else { return 0 };
    let (min, max) = (min as i64, max as i64);
    let key = (topic.to_owned(), group.to_owned(), queue_id);
    let offset = position(broker, &lock(&broker.pop.offsets), &key, (min, max), false);
    if left == 0 {
        return max.saturating_sub(offset);
    }
    let limits = ReadLimits { messages_max: left, ..ReadLimits::default() };
    let got = broker.store().get_messages(topic, queue_id, offset as u64, limits, &|_| true);
    let next = (got.next_begin_offset as i64).max(offset);
    messages.extend(got.messages);
    max.saturating_sub(next)
}

/// Whether a pop of the group would find a message in any of `queues` or its retry topic.
fn has_message(broker: &Broker, topic: &str, group: &str, queues: &[i32]) -> bool {
    reading_order(broker, topic, group, queues).into_iter().any(|(read, queue_id)| {
        let Some((min, max)) = broker.store().queue_offsets(&read, queue_id) else { return false };
        let key = (read, group.to_owned(), queue_id);
        let (min, max) = (min as i64, max as i64);
        max > position(broker, &lock(&broker.pop.offsets), &key, (min, max), false)
    })
}

pub(super) fn handle_notification(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: NotificationRequestHeader = decode(request)?;
    let (topic, group) = (header.topic.as_str(), header.consumer_group.as_str());
    let queues = queues_to_read(broker, topic, header.queue_id, group)?;
    let answer = |has_msg: bool, polling_full: bool| {
        success().with_header(&NotificationResponseHeader { has_msg, polling_full })
    };
    let found = has_message(broker, topic, group, &queues);
    if found || header.poll_time <= 0 {
        return answered(answer(found, false));
    }
    let Some(slot) = HeldSlot::take(broker) else { return answered(answer(false, true)) };
    let now = now_millis() as i64;
    let deadline = header.born_time.unwrap_or(now).saturating_add(header.poll_time);
    let wait = Duration::from_millis(u64::try_from(deadline - now).unwrap_or(0));
    let conn = conn.clone();
    Ok(Handled::Later(Box::pin(async move {
        let broker = slot.broker().clone();
        let until = tokio::time::Instant::now() + wait;
        let dispatched = broker.store.dispatched();
        loop {
            let seen = dispatched.get();
            if !dispatched_past(&dispatched, seen, until, &conn).await {
                break;
            }
            if has_message(&broker, &header.topic, &header.consumer_group, &queues) {
                return answer(true, false);
            }
        }
        answer(false, false)
    })))
}

pub(super) fn handle_polling_info(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: PollingInfoRequestHeader = decode(request)?;
    let (topic, group) = (header.topic.as_str(), header.consumer_group.as_str());
    queues_to_read(broker, topic, header.queue_id, group)?;
    let key = (header.topic.clone(), header.consumer_group.clone(), header.queue_id.max(-1));
    let polling_num = lock(&broker.pop.held).get(&key).copied().unwrap_or(0);
    answered(success().with_header(&PollingInfoResponseHeader { polling_num }))
}
