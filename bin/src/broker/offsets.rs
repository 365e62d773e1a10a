//! Consumer offsets and queue offsets: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15),
//! GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29),
//! GET_EARLIEST_MSG_STORETIME (32).

use std::sync::atomic::Ordering;

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    SearchOffsetRequestHeader, TimestampResponseHeader, TopicQueueRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};

use super::{answer, Broker, Reply};

fn offset_reply(offset: i64) -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None).with_header(&OffsetResponseHeader { offset })
}

/// The group's committed offset. A group that never committed one starts at 0 while the
/// queue still holds its first message, as RocketMQ answers; otherwise (an empty queue, or one
/// whose first files were deleted) QUERY_NOT_FOUND, and the client applies its
/// consume-from-where.
pub(super) fn query(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: QueryConsumerOffsetRequestHeader = request.header()?;
    let committed = broker.offsets().query(&header.topic, &header.consumer_group, header.queue_id);
    // A negative commit (ali-ons commits -1 for queues it never read) counts as none.
    if let Some(offset) = committed.filter(|o| *o >= 0) {
        return Ok(offset_reply(offset));
    }
    if header.set_zero_if_not_found == Some(false) {
        let why = "Not found, do not set to zero, maybe this group boot first";
        return Ok(answer(response::QUERY_NOT_FOUND, why));
    }
    let offsets = broker.store().queue_offsets(&header.topic, header.queue_id);
    if offsets.is_some_and(|(min, max)| min == 0 && max > 0) {
        return Ok(offset_reply(0));
    }
    Ok(answer(
        response::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    ))
}

/// Records the offset a group committed (clients mostly send this oneway).
pub(super) fn update(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: UpdateConsumerOffsetRequestHeader = request.header()?;
    let (topic, group) = (&header.topic, &header.consumer_group);
    if broker.groups().get(group).is_none() {
        return Ok(answer(
            response::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {group} not exist!"),
        ));
    }
    if broker.topic(topic).is_none() {
        return Ok(answer(response::TOPIC_NOT_EXIST, format!("Topic {topic} not exist!")));
    }
    if broker.offsets().commit(topic, group, header.queue_id, header.commit_offset) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    Ok(RemotingCommand::response(response::SUCCESS, None))
}

pub(super) fn max(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: GetMaxOffsetRequestHeader = request.header()?;
    let max =
        broker.store().queue_offsets(&header.topic, header.queue_id).map_or(0, |(_, max)| max);
    Ok(offset_reply(max as i64))
}

pub(super) fn min(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: TopicQueueRequestHeader = request.header()?;
    let min =
        broker.store().queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min);
    Ok(offset_reply(min as i64))
}

pub(super) fn by_time(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: SearchOffsetRequestHeader = request.header()?;
    let offset = broker.store().offset_by_time(&header.topic, header.queue_id, header.timestamp);
    Ok(offset_reply(offset as i64))
}

pub(super) fn earliest_time(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: TopicQueueRequestHeader = request.header()?;
    let timestamp = broker.store().earliest_time(&header.topic, header.queue_id).unwrap_or(-1);
    Ok(RemotingCommand::response(response::SUCCESS, None)
        .with_header(&TimestampResponseHeader { timestamp }))
}
