//! PULL_MESSAGE (11): records of one queue from an offset (`PullMessageProcessor`), held
//! (long polling) when there are none yet. LITE_PULL_MESSAGE (361), which Java's
//! `DefaultLitePullConsumer` sends, is the same request, refused NO_PERMISSION while
//! `litePullMessageEnable` is off.
//!
//! A slave with `slaveReadEnable=false` refuses every pull before reading it (RocketMQ 5's
//! `rejectRequest`). Each answer suggests the broker for the consumer's next pull, and a slave
//! does not store the offsets pulls carry ([`petrel_core::broker::replica_read`]).
//!
//! Checks, in RocketMQ's order: broker readable, lite pulls enabled, subscription group (created when
//! `autoCreateSubscriptionGroup`), topic, topic readable, queue id, subscription (from the
//! request when it carries one, else from the group's heartbeats). The records go back as
//! slices of the commit log's mapped files, written with one vectored write.
//!
//! A pull that finds nothing new and may be suspended is held for `suspendTimeoutMillis`
//! (`shortPollingTimeMills` with long polling off): it wakes when dispatch hands the queue new
//! records, and answers at the deadline with whatever is there then. Held pulls are bounded by
//! `maxHeldPullRequests`; past that the broker answers SYSTEM_BUSY, which clients retry later.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::filter::{property_filter_disabled, MessageFilter};
use petrel_core::broker::replica_read::GroupPreference;
use petrel_core::model::perm;
use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_net::codec::codes::request::LITE_PULL_MESSAGE;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    pull_sys_flag, PullMessageRequestHeader, PullMessageResponseHeader,
};
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{GetStatus, ReadLimits};

use super::{answered, decode, lock, Broker, Outcome, Refusal};
use crate::clock::now_millis;

/// Gives back a held pull's (or pop's) slot however its future ends.
pub(super) struct HeldSlot(Arc<Broker>);

impl HeldSlot {
    /// A slot, unless `maxHeldPullRequests` are held already.
    pub(super) fn take(broker: &Arc<Broker>) -> Option<HeldSlot> {
        let held = broker.held_pulls.fetch_add(1, Ordering::AcqRel);
        let slot = HeldSlot(broker.clone());
        (held < broker.config.held_pulls_max).then_some(slot)
    }

    pub(super) fn broker(&self) -> &Arc<Broker> {
        &self.0
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.0.held_pulls.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    if let Some(refused) = broker.read_policy().refuse_pull() {
        return Err(refused);
    }
    let header: PullMessageRequestHeader = decode(request)?;
    let lite = request.code == LITE_PULL_MESSAGE;
    let (filter, group) = check(broker, conn, &header, lite)?;
    let reader = Reader { filter, group };
    let (group, topic) = (&header.consumer_group, &header.topic);
    let reset = broker.offsets().take_reset(topic, group, header.queue_id);
    if let Some(offset) = reset {
        return answered(moved_by_reset(broker, &header, offset));
    }
    let commits = header.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && header.commit_offset >= 0;
    if commits && broker.read_policy().stores_pull_offsets() {
        let mut offsets = broker.offsets();
        if offsets.commit_unless_reset(topic, group, header.queue_id, header.commit_offset) {
            broker.offsets_dirty.store(true, Ordering::Release);
        }
    }
    let reply = read(broker, &header, &reader);
    let suspend = header.sys_flag & pull_sys_flag::SUSPEND != 0;
    if reply.code != response::PULL_NOT_FOUND || !suspend {
        return answered(reply);
    }
    let Some(slot) = HeldSlot::take(broker) else {
        let why = format!(
            "{} pull requests are already held (maxHeldPullRequests); pull again later",
            broker.config.held_pulls_max
        );
        return Err(Refusal::new(response::SYSTEM_BUSY, why));
    };
    let hold_ms = if broker.config.long_polling {
        u64::try_from(header.suspend_timeout_millis).unwrap_or(0)
    } else {
        broker.config.short_polling_ms
    };
    let conn = conn.clone();
    Ok(Handled::Later(Box::pin(async move {
        let broker = slot.0.clone();
        hold(&broker, &conn, &header, &reader, Duration::from_millis(hold_ms)).await
    })))
}

/// The answer to the first pull of a queue after an operator reset the group's offset in it:
/// PULL_OFFSET_MOVED to the reset offset (RocketMQ's OFFSET_RESET status), nothing read.
fn moved_by_reset(
    broker: &Broker,
    header: &PullMessageRequestHeader,
    offset: i64,
) -> RemotingCommand {
    let (min, max) = broker.store().queue_offsets(&header.topic, header.queue_id).unwrap_or((0, 0));
    let answer = PullMessageResponseHeader {
        suggest_which_broker_id: petrel_core::model::MASTER_ID,
        next_begin_offset: offset,
        min_offset: min as i64,
        max_offset: max as i64,
        ..PullMessageResponseHeader::default()
    };
    let remark = "OFFSET_RESET".to_owned();
    RemotingCommand::response(response::PULL_OFFSET_MOVED, Some(remark)).with_header(&answer)
}

/// Waits for records past the requested offset, or the deadline, then reads again.
async fn hold(
    broker: &Arc<Broker>,
    conn: &Connection,
    header: &PullMessageRequestHeader,
    reader: &Reader,
    wait: Duration,
) -> RemotingCommand {
    let deadline = tokio::time::Instant::now() + wait;
    let dispatched = broker.store.dispatched();
    let offset = u64::try_from(header.queue_offset).unwrap_or(0);
    loop {
        let seen = dispatched.get();
        let arrived = broker
            .store()
            .queue_offsets(&header.topic, header.queue_id)
            .is_some_and(|(_, max)| max > offset);
        if arrived {
            let reply = read(broker, header, reader);
            if reply.code != response::PULL_NOT_FOUND {
                return reply;
            }
        }
        if !dispatched_past(&dispatched, seen, deadline, conn).await {
            break;
        }
    }
    read(broker, header, reader)
}

/// Waits until dispatch moves past `seen`: true then; false at `deadline`, when `conn`
/// closes, or when dispatch stops. Held pulls, pops and notifications wait with it.
pub(super) async fn dispatched_past(
    dispatched: &petrel_storage::service::Progress,
    seen: u64,
    deadline: tokio::time::Instant,
    conn: &Connection,
) -> bool {
    tokio::select! {
        biased;
        going = dispatched.wait_for(|now| now != seen) => going,
        () = tokio::time::sleep_until(deadline) => false,
        () = conn.closed() => false,
    }
}

/// What a pull reads with: its filter, and its group's settings (which broker to suggest).
struct Reader {
    filter: MessageFilter,
    group: GroupPreference,
}

/// The checks; the filter to read with and the group's settings, or the answer.
fn check(
    broker: &Broker,
    conn: &Connection,
    header: &PullMessageRequestHeader,
    lite: bool,
) -> Result<(MessageFilter, GroupPreference), Refusal> {
    if !perm::is_readable(broker.permission()) {
        let why = format!("the broker[{}] pulling message is forbidden", broker.addr);
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if lite && !broker.read_policy().lite_pull_enable {
        let why = format!(
            "the broker[{}] for lite pull consumer is forbidden (litePullMessageEnable=false)",
            broker.addr
        );
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let group = &header.consumer_group;
    let (settings, created) = {
        let mut groups = broker.groups();
        match groups.find_or_create(group, broker.auto_create_group(), now_millis()) {
            Ok((config, created)) if config.consume_enable => {
                (GroupPreference::from(config), created)
            }
            Ok(_) => {
                let why = format!("subscription group no permission, {group}");
                return Err(Refusal::new(response::NO_PERMISSION, why));
            }
            Err(_) => {
                let why = format!(
                    "subscription group [{group}] does not exist; create it (updateSubGroup) or enable autoCreateSubscriptionGroup"
                );
                return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
            }
        }
    };
    if created {
        broker.groups_changed();
    }
    let topic = &header.topic;
    let Some(config) = broker.topic(topic) else {
        let why = format!("topic[{topic}] not exist, apply first please!");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    if !perm::is_readable(config.perm) {
        let why = format!("the topic[{topic}] pulling message is forbidden");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if header.queue_id < 0 || header.queue_id >= config.read_queue_nums {
        let why = format!(
            "queueId[{}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}] consumer:[{}]",
            header.queue_id,
            config.read_queue_nums,
            conn.peer()
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    Ok((subscription_filter(broker, header)?, settings))
}

/// The pull's filter: its own expression when it carries one, else its group's registered
/// subscription (and for SQL92 the group's registered filter). An SQL92 filter is refused
/// while `enablePropertyFilter` is off, a class filter always.
fn subscription_filter(
    broker: &Broker,
    header: &PullMessageRequestHeader,
) -> Result<MessageFilter, Refusal> {
    if header.sys_flag & pull_sys_flag::CLASS_FILTER != 0 {
        return Err(petrel_core::broker::filter::class_filter_refused());
    }
    let filter = if header.sys_flag & pull_sys_flag::SUBSCRIPTION != 0 {
        let expression = header.subscription.as_deref().unwrap_or("*");
        MessageFilter::parse(header.expression_type.as_deref(), expression)
            .map_err(|e| e.refusal(expression))?
    } else {
        registered_filter(broker, header)?
    };
    if filter.needs_properties() && !broker.config.property_filter {
        return Err(property_filter_disabled(petrel_core::broker::filter::SQL92));
    }
    Ok(filter)
}

fn registered_filter(
    broker: &Broker,
    header: &PullMessageRequestHeader,
) -> Result<MessageFilter, Refusal> {
    let (group, topic) = (&header.consumer_group, &header.topic);
    let clients = super::lock(&broker.clients);
    let Some(consumers) = clients.consumer_group(group) else {
        let why =
            format!("the consumer's group info not exist, group: {group}; send a heartbeat first");
        return Err(Refusal::new(response::SUBSCRIPTION_NOT_EXIST, why));
    };
    let Some(sub) = consumers.subscriptions.get(topic.as_str()) else {
        let why = format!("the consumer's subscription not exist, group: {group} topic: {topic}");
        return Err(Refusal::new(response::SUBSCRIPTION_NOT_EXIST, why));
    };
    if sub.sub_version < header.sub_version {
        let why = format!(
            "the consumer's subscription not latest, group: {group} topic: {topic}; send a heartbeat"
        );
        return Err(Refusal::new(response::SUBSCRIPTION_NOT_LATEST, why));
    }
    let kind = sub.expression_type.as_deref();
    if petrel_core::broker::filter::is_tag_type(kind) {
        return MessageFilter::parse(kind, &sub.sub_string).map_err(|e| e.refusal(&sub.sub_string));
    }
    let filters = super::lock(&broker.filters);
    let Some(data) = filters.get(topic, group) else {
        let why = format!(
            "The broker's consumer filter data is not exist! Your expression may be wrong! group: {group} topic: {topic}"
        );
        return Err(Refusal::new(response::FILTER_DATA_NOT_EXIST, why));
    };
    if data.client_version < header.sub_version {
        let why = format!(
            "the consumer's consumer filter data not latest, group: {group} topic: {topic}; send a heartbeat"
        );
        return Err(Refusal::new(response::FILTER_DATA_NOT_LATEST, why));
    }
    let compiled = data.compiled.clone().expect("a registered filter is compiled");
    Ok(MessageFilter::Sql92(compiled))
}

/// Reads the queue and answers with RocketMQ's status mapping.
fn read(broker: &Broker, header: &PullMessageRequestHeader, reader: &Reader) -> RemotingCommand {
    let filter = &reader.filter;
    let offset = u64::try_from(header.queue_offset).unwrap_or(0);
    let messages_max =
        usize::try_from(header.max_msg_nums).unwrap_or(0).clamp(1, broker.config.pull_messages_max);
    let bytes_max = header
        .max_msg_bytes
        .and_then(|b| usize::try_from(b).ok())
        .filter(|b| *b > 0)
        .map_or(broker.config.pull_bytes_max, |b| b.min(broker.config.pull_bytes_max));
    let limits = ReadLimits { messages_max, bytes_max, ..ReadLimits::default() };
    let got = read_filtered(broker, (&header.topic, header.queue_id), offset, limits, filter);
    let code = match got.status {
        GetStatus::Found => response::SUCCESS,
        GetStatus::NoMatchedMessage => response::PULL_RETRY_IMMEDIATELY,
        GetStatus::ReadFailed => response::SYSTEM_ERROR,
        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue if offset != 0 => {
            response::PULL_OFFSET_MOVED
        }
        GetStatus::NoMatchedLogicQueue | GetStatus::NoMessageInQueue => response::PULL_NOT_FOUND,
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => response::PULL_NOT_FOUND,
        GetStatus::OffsetOverflowBadly | GetStatus::OffsetTooSmall => response::PULL_OFFSET_MOVED,
    };
    let next = match got.status {
        GetStatus::NoMatchedLogicQueue
        | GetStatus::NoMessageInQueue
        | GetStatus::OffsetTooSmall
        | GetStatus::OffsetOverflowBadly => {
            broker.read_policy().next_offset(offset, got.next_begin_offset)
        }
        _ => got.next_begin_offset,
    };
    let answer = PullMessageResponseHeader {
        suggest_which_broker_id: broker.read_policy().suggest(reader.group, got.behind_bytes),
        next_begin_offset: next as i64,
        min_offset: got.min_offset as i64,
        max_offset: got.max_offset as i64,
        ..PullMessageResponseHeader::default()
    };
    let count = got.messages.len() as u64;
    broker.stats.messages_got.fetch_add(count, Ordering::Relaxed);
    // Counted whether or not metrics are on: GROUP_GET_NUMS and consume TPS read it too.
    if count > 0 {
        let bytes = got.messages.iter().map(|m| m.len() as u64).sum();
        lock(&broker.stats.traffic).got(&header.topic, &header.consumer_group, count, bytes);
    }
    let remark = match got.status {
        GetStatus::ReadFailed => format!(
            "the message at offset {} of {}:{} could not be read whole (it fails its CRC \
             check, or its consume-queue entry was misread); pull again: while it stays so, \
             this queue cannot be read past it until the group's offset is reset beyond it",
            got.next_begin_offset, header.topic, header.queue_id
        ),
        status => status_name(status).to_owned(),
    };
    RemotingCommand::response(code, Some(remark)).with_header(&answer).with_body_parts(got.messages)
}

/// RocketMQ puts the store's status name in the remark.
fn status_name(status: GetStatus) -> &'static str {
    match status {
        GetStatus::Found => "FOUND",
        GetStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
        GetStatus::ReadFailed => "READ_FAILED",
    }
}

/// Reads a queue through `filter`: by tag code in the consume queue, and for SQL92 by each
/// record's properties as well.
pub(super) fn read_filtered(
    broker: &Broker,
    (topic, queue_id): (&str, i32),
    offset: u64,
    limits: ReadLimits,
    filter: &MessageFilter,
) -> petrel_storage::GetMessages {
    let by_code = |code| filter.by_code(code);
    let by_record =
        |record: &[u8]| match scan_record(record, Checks { physical_offset: None, crc: false }) {
            Scanned::Record(record) => filter.by_properties(record.properties),
            _ => false,
        };
    let by_record: Option<petrel_storage::RecordFilter<'_>> = match filter.needs_properties() {
        true => Some(&by_record),
        false => None,
    };
    broker.store().get_messages_matching(topic, queue_id, offset, limits, &by_code, by_record)
}
