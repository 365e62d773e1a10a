//! INVOKE_BROKER_TO_RESET_OFFSET (222): an operator moves a consumer group's offsets of a
//! topic (mqadmin resetOffsetByTime), as RocketMQ 5 does by default (its server-side reset,
//! `useServerSideResetOffset=true`): every readable queue to the first message stored at or
//! after `timestamp` (its end for a negative timestamp), or one `queueId` to `offset` (which
//! must lie in the queue) or to `timestamp`'s offset. Each queue's committed offset becomes
//! the reset one, and the group's next pull of the queue is told to move there
//! (PULL_OFFSET_MOVED); until then the members' own commits of it are ignored
//! (`petrel_core::broker::offsets`). The answer is the offsets set, by queue.
//!
//! Refused as RocketMQ refuses: on a slave (SYSTEM_ERROR), a topic (TOPIC_NOT_EXIST) or group
//! (SUBSCRIPTION_GROUP_NOT_EXIST) this broker lacks, an offset outside the queue
//! (SYSTEM_ERROR); and a queue the topic does not have (INVALID_PARAMETER, where RocketMQ
//! stores it, as for UPDATE_CONSUMER_OFFSET: decision 0008). `isForce` is ignored, as RocketMQ 5's server-side reset ignores it.
//!
//! With `useServerSideResetOffset=false` the reset is RocketMQ 4's, made by the members
//! (`Broker2Client.resetOffset`): for each of the topic's write queues the offset of
//! `timestamp` (the end for -1), or the group's committed offset where that is lower and
//! `isForce` is false, is sent to every member of the group (RESET_CONSUMER_CLIENT_OFFSET,
//! one way), which moves its queues there and commits; the broker's table is not touched. The
//! answer is the same table. Refused with TOPIC_NOT_EXIST, SYSTEM_ERROR for a queue the group
//! never committed or a member older than 3.0.7, and CONSUMER_NOT_ONLINE when no member is
//! connected. RocketMQ writes the C++ client's form of the body (a list) to every member when
//! the admin asking is C++, and the Java form otherwise; Petrel writes each member the form its
//! own language reads. RocketMQ's member-made reset moves every queue whatever `queueId` says;
//! Petrel's moves only the queue named, to `offset` when given (mqadmin's `-q -o`), as the
//! server-side reset does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::admin::{version_desc, MessageQueue};
use petrel_core::broker::Refusal;
use petrel_core::model::TopicConfig;
use petrel_net::bodies::{reset_offsets_for_c_to_json, reset_offsets_to_json};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::JsonStyle;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ResetOffsetRequestHeader;
use petrel_net::transport::{Connection, Handled};

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ResetOffsetRequestHeader = decode(request)?;
    if !lock(&broker.updated).0.server_side_reset {
        return by_members(broker, conn, &header);
    }
    let (topic, group) = (header.topic.as_str(), header.group.as_str());
    if !broker.is_master() {
        return Err(Refusal::new(response::SYSTEM_ERROR, "Can not reset offset in slave broker"));
    }
    let Some(config) = broker.topic(topic) else {
        let why = format!("Topic {topic} does not exist");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    if broker.groups().get(group).is_none() {
        let why = format!("Group {group} does not exist");
        return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
    }
    let targets = targets(broker, &header, &config, 0..config.read_queue_nums)?;
    if targets.is_empty() {
        return Err(Refusal::new(response::SYSTEM_ERROR, "No queues to reset."));
    }
    {
        let mut offsets = broker.offsets();
        for (id, offset) in &targets {
            offsets.reset(topic, group, *id, *offset);
        }
    }
    broker.offsets_dirty.store(true, Ordering::Release);
    tracing::info!(caller = %conn.peer(), %topic, %group, queues = ?targets, "consumer offsets reset");
    answered(
        success()
            .with_body(reset_offsets_to_json(&table(broker, topic, targets), JsonStyle::Fastjson)),
    )
}

/// The reset table of `topic`'s queues on this broker.
fn table(broker: &Broker, topic: &str, targets: Vec<(i32, i64)>) -> Vec<(MessageQueue, i64)> {
    let queue = |queue_id| MessageQueue {
        broker_name: broker.config.broker_name.clone(),
        queue_id,
        topic: topic.to_owned(),
    };
    targets.into_iter().map(|(queue_id, offset)| (queue(queue_id), offset)).collect()
}

/// `MQVersion.Version.V3_0_7_SNAPSHOT.ordinal()`: older clients cannot reset their offsets.
const V3_0_7_SNAPSHOT: i32 = 28;

/// How long a member's connection may take to accept its reset.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a reset moves queues: the one `queueId` names to `offset` (which must lie in the
/// queue) or to `timestamp`'s offset; with no queue named, each of `all` to `timestamp`'s.
fn targets(
    broker: &Broker,
    header: &ResetOffsetRequestHeader,
    config: &TopicConfig,
    all: std::ops::Range<i32>,
) -> Result<Vec<(i32, i64)>, Refusal> {
    let topic = header.topic.as_str();
    let queues = config.read_queue_nums.max(config.write_queue_nums);
    let one = header.queue_id.filter(|id| *id >= 0);
    if let Some(id) = one.filter(|id| *id >= queues) {
        let why = format!("queue {id} of topic {topic} does not exist: it has {queues}");
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    Ok(match (one, header.offset.filter(|o| *o != -1)) {
        (Some(id), Some(offset)) => vec![(id, offset_in_range(broker, topic, id, offset)?)],
        (Some(id), None) => vec![(id, by_time(broker, topic, id, header.timestamp))],
        (None, _) => all.map(|id| (id, by_time(broker, topic, id, header.timestamp))).collect(),
    })
}

/// The queues a member-made reset moves and where: [`targets`] over the topic's write queues,
/// a time's offset kept at the group's committed offset where that is lower unless `isForce`.
fn member_targets(
    broker: &Broker,
    header: &ResetOffsetRequestHeader,
) -> Result<Vec<(i32, i64)>, Refusal> {
    let (topic, group) = (header.topic.as_str(), header.group.as_str());
    let Some(config) = broker.topic(topic) else {
        let why =
            format!("[reset-offset] reset offset failed, no topic in this broker. topic={topic}");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    let exact = header.queue_id.is_some_and(|id| id >= 0) && header.offset.is_some_and(|o| o != -1);
    let mut moved = Vec::new();
    for (id, target) in targets(broker, header, &config, 0..config.write_queue_nums)? {
        let committed = broker.offsets().query(topic, group, id).ok_or_else(|| {
            let why = format!("The consumer group <{group}> has no offset of queue {id} of topic {topic}: it never consumed it");
            Refusal::new(response::SYSTEM_ERROR, why)
        })?;
        let keep = !exact && !header.is_force && target >= committed;
        moved.push((id, if keep { committed } else { target }));
    }
    Ok(moved)
}

/// RocketMQ 4's reset: the members are sent the offsets and move there themselves.
fn by_members(
    broker: &Arc<Broker>,
    conn: &Connection,
    header: &ResetOffsetRequestHeader,
) -> Outcome {
    let (topic, group) = (header.topic.as_str(), header.group.as_str());
    let targets = member_targets(broker, header)?;
    let table = table(broker, topic, targets);
    let members: Vec<_> = lock(&broker.clients)
        .consumer_group(group)
        .map(|g| g.members.iter().map(|(c, m)| (*c, m.clone())).collect())
        .unwrap_or_default();
    if members.is_empty() {
        let why = format!("Consumer not online, so can not reset offset, Group: {group} Topic: {topic} Timestamp: {}", header.timestamp);
        return Err(Refusal::new(response::CONSUMER_NOT_ONLINE, why));
    }
    if let Some((_, old)) = members.iter().find(|(_, m)| m.version < V3_0_7_SNAPSHOT) {
        let why = format!(
            "the client does not support this feature. version={}",
            version_desc(old.version)
        );
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let tell = ResetOffsetRequestHeader {
        group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id: None,
        offset: None,
        timestamp: header.timestamp,
        is_force: false,
    };
    let (java, cpp) =
        (reset_offsets_to_json(&table, JsonStyle::Fastjson), reset_offsets_for_c_to_json(&table));
    let sends: Vec<_> = members
        .iter()
        .filter_map(|(id, member)| Some((broker.server.connection(*id)?, member.clone())))
        .map(|(connection, member)| {
            let body = if member.language == "CPP" { cpp.clone() } else { java.clone() };
            let ask = RemotingCommand::request(request::RESET_CONSUMER_CLIENT_OFFSET)
                .with_header(&tell)
                .with_body(body);
            (connection, member.client_id, ask)
        })
        .collect();
    tracing::info!(caller = %conn.peer(), %topic, %group, offsets = ?table, "consumer offsets sent to the group's members to reset");
    let answer = success().with_body(reset_offsets_to_json(&table, JsonStyle::Fastjson));
    Ok(Handled::Later(Box::pin(async move {
        for (connection, client_id, ask) in sends {
            // As RocketMQ's one-way call: a member whose connection takes nothing for 5 s is
            // passed over rather than holding up the others.
            match tokio::time::timeout(SEND_TIMEOUT, connection.invoke_oneway(ask)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%client_id, error = %e, "a member was not sent its reset")
                }
                Err(_) => tracing::warn!(%client_id, "a member was not sent its reset within 5 s"),
            }
        }
        answer
    })))
}

/// The queue's first offset stored at or after `timestamp`; its end for a negative one.
fn by_time(broker: &Broker, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
    match timestamp < 0 {
        true => broker.store().queue_offsets(topic, queue_id).map_or(0, |(_, max)| max as i64),
        false => broker.store().offset_by_time(topic, queue_id, timestamp) as i64,
    }
}

/// `offset`, when it lies in the queue (from its first offset to one past its end).
fn offset_in_range(
    broker: &Broker,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<i64, Refusal> {
    let (min, max) = broker.store().queue_offsets(topic, queue_id).unwrap_or((0, 0));
    let (min, max) = (min as i64, max as i64);
    if offset < min || offset > max {
        let why = format!("Target offset {offset} not in consume queue range [{min}-{max}]");
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    Ok(offset)
}
