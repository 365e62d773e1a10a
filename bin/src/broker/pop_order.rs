//! Orderly POP (`order=true`; RocketMQ's `ConsumerOrderInfoManager` paths of
//! `PopMessageProcessor`, `AckMessageProcessor` and `ChangeInvisibleTimeProcessor`;
//! docs/pop.md): no checkpoint and no retry topic. A pop reads each queue not blocked by an
//! earlier pop of the group from the group's committed offset, and the core
//! (`petrel_core::broker::pop_order`) records what it handed out; its handles name revive
//! queue 999. An ack commits the group's offset up to the first message of that pop not
//! acknowledged; a change of invisible time moves when one message shows again. What is not
//! acknowledged in time is handed out again from the committed offset, in order, with its
//! count of earlier hand-outs in `orderCountInfo`.
//!
//! The state is written to `config/consumerOrderInfo.json` with the consumer offsets (every
//! `flushConsumerOffsetInterval`, and at shutdown) and read at start: a queue blocked before a
//! restart stays blocked until its messages' invisible time ran out. What a crash loses of it
//! since the last write unblocks queues early (their messages are handed out again: at least
//! once).

use std::sync::atomic::Ordering;

use petrel_core::broker::pop::{ExtraInfo, QueueRead, TopicKind};
use petrel_core::broker::pop_order::{OrderAck, OrderKey};
use petrel_net::codec::codes::response;
use petrel_net::headers::broker::ChangeInvisibleTimeResponseHeader;
use petrel_net::transport::Handled;

use super::pop::{position, read_queue, Pop, PopOffsets, Popped};
use super::{lock, success, Broker, Outcome, Refusal};
use crate::clock::now_millis;

/// Pops `queues` of the topic in turn into `popped`, passing over blocked ones.
pub(super) fn pop_queues(broker: &Broker, pop: &Pop<'_>, queues: &[i32], popped: &mut Popped) {
    for queue_id in queues {
        pop_queue(broker, pop, *queue_id, popped);
    }
}

fn pop_queue(broker: &Broker, pop: &Pop<'_>, queue_id: i32, popped: &mut Popped) {
    let Some((min, max)) = broker.store().queue_offsets(pop.topic, queue_id) else { return };
    let (min, max) = (min as i64, max as i64);
    let left = pop.want.saturating_sub(popped.messages.len());
    // Held while the queue is judged and read: the queue lock of RocketMQ's pop and ack.
    let _queue = lock(&broker.pop.offsets);
    let key: OrderKey = (pop.topic.to_owned(), pop.group.to_owned(), queue_id);
    let mut order = lock(&broker.pop.order);
    if left == 0 || order.blocked(&key, pop.attempt_id, pop.pop_time) {
        return;
    }
    let committed = broker.offsets().query(pop.topic, pop.group, queue_id);
    // From the committed offset alone: what was out and not acknowledged is read again.
    let offset = position(broker, &PopOffsets::new(), &key, (min, max), pop.init_last);
    let (offset, got) = read_queue(broker, pop, (pop.topic, queue_id), offset, left);
    let next = (got.next_begin_offset as i64).max(offset);
    popped.rest += max.saturating_sub(next);
    if got.messages.is_empty() {
        // Messages the filter passed over are consumed.
        if next > offset || committed.is_none() {
            popped.commits.push((pop.topic.to_owned(), queue_id, next));
        }
        return;
    }
    let offsets: Vec<i64> =
        got.messages.iter().filter_map(|m| super::pop::queue_offset(m)).collect();
    let times = (pop.pop_time, pop.invisible_time);
    let counts = order.popped(key, pop.attempt_id, times, &offsets);
    broker.pop.order_dirty.store(true, Ordering::Release);
    let counted = offsets.iter().copied().zip(counts).collect();
    popped.order_counts.push((TopicKind::Normal, queue_id, counted));
    let start_offset = offset;
    popped.reads.push(QueueRead { kind: TopicKind::Normal, queue_id, start_offset, offsets });
    popped.messages.extend(got.messages);
    popped.commits.push((pop.topic.to_owned(), queue_id, start_offset));
}

/// The ack of `offset` of `(topic, queue_id)` from the orderly pop `info` names.
pub(super) fn ack(
    broker: &Broker,
    group: &str,
    (topic, queue_id): (&str, i32),
    offset: i64,
    info: &ExtraInfo,
) -> Outcome {
    let _queue = lock(&broker.pop.offsets);
    let key: OrderKey = (topic.to_owned(), group.to_owned(), queue_id);
    let mut offsets = broker.offsets();
    let current = offsets.query(topic, group, queue_id).unwrap_or(-1);
    if offset < current {
        return Ok(Handled::Now(success()));
    }
    match lock(&broker.pop.order).ack(&key, offset, info.pop_time) {
        OrderAck::Commit(next) => {
            broker.pop.order_dirty.store(true, Ordering::Release);
            if next > current && offsets.commit(topic, group, queue_id, next) {
                broker.offsets_dirty.store(true, Ordering::Release);
            }
            Ok(Handled::Now(success()))
        }
        OrderAck::Unknown => {
            if offset == current && offsets.commit(topic, group, queue_id, offset + 1) {
                broker.offsets_dirty.store(true, Ordering::Release);
            }
            Ok(Handled::Now(success()))
        }
        OrderAck::Stale => Ok(Handled::Now(success())),
        OrderAck::NotHandedOut => {
            let why = format!(
                "offset is illegal, key:{topic}@{queue_id}@{group}, commit:{offset}: the orderly \
                 pop at {} did not hand it out; ack with the handle the pop returned",
                info.pop_time
            );
            Err(Refusal::new(response::MESSAGE_ILLEGAL, why))
        }
    }
}

/// A change of invisible time of `offset` of `(topic, queue_id)` from the orderly pop `info`
/// names: it shows again `invisible_time` ms from now. The answer keeps the pop time (the
/// handle stays that pop's) with the invisible time counted from it.
pub(super) fn change_invisible(
    broker: &Broker,
    group: &str,
    (topic, queue_id): (&str, i32),
    (offset, invisible_time): (i64, i64),
    info: &ExtraInfo,
) -> Outcome {
    let _queue = lock(&broker.pop.offsets);
    let key: OrderKey = (topic.to_owned(), group.to_owned(), queue_id);
    let next_visible = (now_millis() as i64).saturating_add(invisible_time.max(0));
    let current = broker.offsets().query(topic, group, queue_id).unwrap_or(-1);
    if offset >= current
        && lock(&broker.pop.order).change_invisible(&key, (offset, info.pop_time), next_visible)
    {
        broker.pop.order_dirty.store(true, Ordering::Release);
    }
    let answer = ChangeInvisibleTimeResponseHeader {
        pop_time: info.pop_time,
        invisible_time: next_visible - info.pop_time,
        revive_qid: info.revive_qid,
    };
    Ok(Handled::Now(success().with_header(&answer)))
}
