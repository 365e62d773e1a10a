//! POP_MESSAGE (200050): up to 32 messages of a topic for a consumer group, made invisible for
//! the request's `invisibleTime` (`PopMessageProcessor`; docs/pop.md). For each queue it reads,
//! the broker writes a checkpoint into the revive topic as a timer message due a second before
//! the invisible time runs out (`petrel_core::broker::pop::PopCheckPoint`), then moves the
//! group's offset of that queue past what it handed out; the revive service
//! (`revive.rs`) puts what was not acknowledged by then into the group's pop retry topic.
//!
//! The group's pop retry topic (`%RETRY%{group}_{topic}`) is read before the topic one pop in
//! five, after it otherwise when the answer is not full. Its messages are answered under
//! their retry topic's name (RocketMQ's `popResponseReturnActualRetryTopic=true`); the
//! client's handle says which (retry field 1). A pop that finds nothing waits up to its
//! `pollTime` for new messages, then answers POLLING_TIMEOUT. An orderly pop (`order=true`)
//! writes no checkpoint and reads no retry topic (`pop_order.rs`). An SQL92 expression filters
//! the topic and the pop retry topic alike, as RocketMQ's does (docs/filter.md).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use petrel_core::broker::filter::MessageFilter;
use petrel_core::broker::pop::{
    self, msg_offset_info, pop_retry_topic, start_offset_info, PopCheckPoint, QueueRead, TopicKind,
    ACK_TIME_INTERVAL_MS, ORDER_REVIVE_QUEUE, POP_MAX_MESSAGES,
};
use petrel_core::broker::pop_order::{order_count_info, QueueCounts};
use petrel_core::broker::send_plan::plan_wait;
use petrel_core::broker::topics::topic_config;
use petrel_core::model::perm;
use petrel_core::record::{scan_record, Checks, Scanned};
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{PopMessageRequestHeader, PopMessageResponseHeader};
use petrel_net::transport::{Connection, Handled};
use petrel_storage::{Appended, GetMessages, GetStatus, PutError, ReadLimits};

use super::{decode, lock, Broker, Outcome, Refusal};
use crate::clock::now_millis;

/// RocketMQ's `popFromRetryProbability`: the share of pops (in %) that read the retry topic
/// first.
const RETRY_FIRST_PERCENT: u64 = 20;
/// `reviveQueueNum`: queues of the revive topic.
pub(super) const REVIVE_QUEUES: i32 = 8;

/// What one pop asks, checked.
pub(super) struct Pop<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub filter: MessageFilter,
    pub want: usize,
    pub pop_time: i64,
    pub invisible_time: i64,
    pub revive_qid: i32,
    pub init_last: bool,
    /// An orderly pop (`pop_order.rs`), and the client's attempt it is.
    pub order: bool,
    pub attempt_id: Option<&'a str>,
}

impl<'a> Pop<'a> {
    /// The pop `header` asks for, the `pick`-th of this broker (which picks its revive queue).
    /// RocketMQ's POP filters by SQL92 whatever `enablePropertyFilter` says, and so does this;
    /// with no expression (or an empty one) it takes everything, whatever the type.
    fn of(header: &'a PopMessageRequestHeader, pick: u64) -> Result<Pop<'a>, Refusal> {
        let (kind, expression) = match header.exp.as_deref() {
            Some(exp) if !exp.is_empty() => (header.exp_type.as_deref(), exp),
            _ => (None, "*"),
        };
        let filter = MessageFilter::parse(kind, expression).map_err(|e| e.refusal(expression))?;
        Ok(Pop {
            group: &header.consumer_group,
            topic: &header.topic,
            filter,
            want: usize::try_from(header.max_msg_nums).unwrap_or(1).max(1),
            pop_time: now_millis() as i64,
            invisible_time: header.invisible_time.max(0),
            revive_qid: match header.order {
                Some(true) => ORDER_REVIVE_QUEUE,
                _ => (pick % REVIVE_QUEUES as u64) as i32,
            },
            init_last: header.init_mode == 1,
            order: header.order == Some(true),
            attempt_id: header.attempt_id.as_deref(),
        })
    }
}

/// What one pop found.
#[derive(Default)]
pub(super) struct Popped {
    pub reads: Vec<QueueRead>,
    pub messages: Vec<Bytes>,
    pub rest: i64,
    /// The last checkpoint appended: the answer waits until it is acknowledged.
    pub last_checkpoint: Option<Appended>,
    /// (topic, queue, offset) the group's offsets move to once it is.
    pub commits: Vec<(String, i32, i64)>,
    /// An orderly pop's count of earlier hand-outs of each message, by queue read.
    pub order_counts: Vec<QueueCounts>,
}

impl Popped {
    fn header(&self, pop: &Pop<'_>) -> PopMessageResponseHeader {
        PopMessageResponseHeader {
            pop_time: pop.pop_time,
            invisible_time: pop.invisible_time,
            revive_qid: pop.revive_qid,
            rest_num: self.rest,
            start_offset_info: Some(start_offset_info(&self.reads)),
            msg_offset_info: Some(msg_offset_info(&self.reads)),
            order_count_info: (!self.order_counts.is_empty())
                .then(|| order_count_info(&self.order_counts)),
        }
    }
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: PopMessageRequestHeader = decode(request)?;
    let queues = check(broker, &header)?;
    let pick = broker.pop.count.fetch_add(1, Ordering::Relaxed);
    let pop = Pop::of(&header, pick)?;
    let retry_first = pick.is_multiple_of(100 / RETRY_FIRST_PERCENT);
    let popped = pop_all(broker, &pop, &queues, retry_first)?;
    let answer_header = popped.header(&pop);
    if !popped.messages.is_empty() {
        let broker = broker.clone();
        let group = header.consumer_group.clone();
        return Ok(Handled::Later(Box::pin(async move {
            answer(&broker, &group, popped, &answer_header).await
        })));
    }
    if header.poll_time <= 0 {
        return Err(nothing());
    }
    let deadline = header.born_time.unwrap_or(pop.pop_time).saturating_add(header.poll_time);
    let wait = Duration::from_millis(u64::try_from(deadline - pop.pop_time).unwrap_or(0));
    // Held pops share the held pulls' bound (`maxHeldPullRequests`).
    let slot = super::pull_message::HeldSlot::take(broker).ok_or_else(|| {
        let why = format!(
            "{} requests are held already (maxHeldPullRequests); pop again later",
            broker.config.held_pulls_max
        );
        Refusal::new(response::POLLING_FULL, why)
    })?;
    let conn = conn.clone();
    Ok(Handled::Later(Box::pin(async move {
        let broker = slot.broker().clone();
        hold(&broker, &conn, &header, queues, retry_first, wait).await
    })))
}

/// The answer once the checkpoints of what it hands out are stored as a send would be; then
/// the group's offsets move past it.
async fn answer(
    broker: &Broker,
    group: &str,
    popped: Popped,
    header: &PopMessageResponseHeader,
) -> RemotingCommand {
    if let Some(appended) = popped.last_checkpoint {
        if let Err(e) = broker.store.wait_acknowledged(appended).await {
            return put_refusal(&e, "the pop's checkpoint").into();
        }
    }
    let mut offsets = broker.offsets();
    for (topic, queue_id, next) in &popped.commits {
        let current = offsets.query(topic, group, *queue_id).unwrap_or(-1);
        if *next > current && offsets.commit(topic, group, *queue_id, *next) {
            broker.offsets_dirty.store(true, Ordering::Release);
        }
    }
    drop(offsets);
    RemotingCommand::response(response::SUCCESS, Some("FOUND".to_owned()))
        .with_header(header)
        .with_body_parts(popped.messages)
}

fn nothing() -> Refusal {
    Refusal::new(response::POLLING_TIMEOUT, "NO_MESSAGE_IN_QUEUE")
}

/// Waits for new messages (or the poll time's end, or the connection's), popping again at
/// each dispatch.
async fn hold(
    broker: &Arc<Broker>,
    conn: &Connection,
    header: &PopMessageRequestHeader,
    queues: Vec<i32>,
    retry_first: bool,
    wait: Duration,
) -> RemotingCommand {
    let deadline = tokio::time::Instant::now() + wait;
    let dispatched = broker.store.dispatched();
    let _counted = Polling::count(broker, (&header.topic, &header.consumer_group, header.queue_id));
    loop {
        let seen = dispatched.get();
        if !super::pull_message::dispatched_past(&dispatched, seen, deadline, conn).await {
            break;
        }
        let pick = broker.pop.count.fetch_add(1, Ordering::Relaxed);
        let Ok(pop) = Pop::of(header, pick) else {
            break;
        };
        match pop_all(broker, &pop, &queues, retry_first) {
            Ok(popped) if popped.messages.is_empty() => continue,
            Ok(popped) => {
                let answer_header = popped.header(&pop);
                return answer(broker, &header.consumer_group, popped, &answer_header).await;
            }
            Err(refusal) => return refusal.into(),
        }
    }
    nothing().into()
}

/// The checks, in RocketMQ's order; the queues to read (all, from a random one, or the one
/// asked for).
fn check(broker: &Broker, header: &PopMessageRequestHeader) -> Result<Vec<i32>, Refusal> {
    if !perm::is_readable(broker.permission()) {
        let why = format!("the broker[{}] peeking message is forbidden", broker.addr);
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if header.max_msg_nums > POP_MAX_MESSAGES {
        let why = format!("the broker[{}] pop message size over {POP_MAX_MESSAGES}", broker.addr);
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    let orderly = header.order == Some(true);
    if !orderly && !broker.send_config.read().unwrap_or_else(|p| p.into_inner()).timer.enabled {
        let why = "POP needs the timer wheel for its checkpoints; set timerWheelEnable=true";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    queues_to_read(broker, &header.topic, header.queue_id, &header.consumer_group)
}

/// The checks every POP request shares (topic, its permission, the queue id, the group); the
/// queues to read: all, from one that turns with each pop, or the one asked for.
pub(super) fn queues_to_read(
    broker: &Broker,
    topic: &str,
    queue_id: i32,
    group: &str,
) -> Result<Vec<i32>, Refusal> {
    let Some(config) = broker.topic(topic) else {
        let why = format!("topic[{topic}] not exist, apply first please!");
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    if !perm::is_readable(config.perm) {
        let why = format!("the topic[{topic}] peeking message is forbidden");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if queue_id >= config.read_queue_nums {
        let why = format!(
            "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
            config.read_queue_nums
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    check_group(broker, group)?;
    if queue_id >= 0 {
        return Ok(vec![queue_id]);
    }
    let count = config.read_queue_nums.max(0);
    let start = (broker.pop.count.load(Ordering::Relaxed) % u64::from(count.max(1) as u32)) as i32;
    Ok((0..count).map(|i| (start + i) % count).collect())
}

/// The group exists (created when `autoCreateSubscriptionGroup`) and may consume.
pub(super) fn check_group(broker: &Broker, group: &str) -> Result<(), Refusal> {
    let found = {
        let mut groups = broker.groups();
        let found = groups.find_or_create(group, broker.auto_create_group(), now_millis());
        found.map(|(config, created)| (config.consume_enable, created))
    };
    match found {
        Ok((true, created)) => {
            if created {
                broker.groups_changed();
            }
            Ok(())
        }
        Ok(_) => {
            let why = format!("subscription group no permission, {group}");
            Err(Refusal::new(response::NO_PERMISSION, why))
        }
        Err(_) => {
            let why = format!(
                "subscription group [{group}] does not exist; create it (updateSubGroup) or enable autoCreateSubscriptionGroup"
            );
            Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why))
        }
    }
}

/// Reads the retry topic (first or last) and the topic's queues until the pop is full.
fn pop_all(
    broker: &Broker,
    pop: &Pop<'_>,
    queues: &[i32],
    retry_first: bool,
) -> Result<Popped, Refusal> {
    let mut popped = Popped::default();
    if pop.order {
        super::pop_order::pop_queues(broker, pop, queues, &mut popped);
        return Ok(popped);
    }
    let retry = pop_retry_topic(pop.group, pop.topic, false);
    let has_retry = broker.topic(&retry).is_some();
    if has_retry && retry_first {
        pop_queue(broker, pop, (&retry, TopicKind::RetryV1, 0), &mut popped)?;
    }
    for queue_id in queues {
        pop_queue(broker, pop, (pop.topic, TopicKind::Normal, *queue_id), &mut popped)?;
    }
    if has_retry && !retry_first {
        pop_queue(broker, pop, (&retry, TopicKind::RetryV1, 0), &mut popped)?;
    }
    Ok(popped)
}

/// Pops one queue into `popped`: from the group's offset (or the last pop's end), messages
/// passing the filter, and a checkpoint for them. The group's offset moves past them once the
/// checkpoint is stored (`answer`); until then the last pop's end, kept here, is where the
/// next pop reads (a restart forgets it: what was popped and not committed comes again).
fn pop_queue(
    broker: &Broker,
    pop: &Pop<'_>,
    (topic, kind, queue_id): (&str, TopicKind, i32),
    popped: &mut Popped,
) -> Result<(), Refusal> {
    let Some((min, max)) = broker.store().queue_offsets(topic, queue_id) else { return Ok(()) };
    let (min, max) = (min as i64, max as i64);
    let left = pop.want.saturating_sub(popped.messages.len());
    if left == 0 {
        popped.rest +=
            max.saturating_sub(broker.offsets().query(topic, pop.group, queue_id).unwrap_or(min));
        return Ok(());
    }
    // Held while the queue is read and its offset moved: two pops never hand out one message.
    let mut latest = lock(&broker.pop.offsets);
    let key = (topic.to_owned(), pop.group.to_owned(), queue_id);
    let init_last = pop.init_last && kind == TopicKind::Normal;
    let offset = position(broker, &latest, &key, (min, max), init_last);
    let (offset, got) = read_queue(broker, pop, (topic, queue_id), offset, left);
    let next = (got.next_begin_offset as i64).max(offset);
    if !got.messages.is_empty() {
        let offsets: Vec<i64> = got.messages.iter().filter_map(|m| queue_offset(m)).collect();
        let ck = PopCheckPoint {
            so: offset,
            pt: pop.pop_time,
            it: pop.invisible_time,
            n: offsets.len() as i32,
            q: queue_id,
            t: topic.to_owned(),
            c: pop.group.to_owned(),
            d: Some(offsets.iter().map(|o| (o - offset) as i32).collect()),
            bn: Some(broker.config.broker_name.clone()),
            ..PopCheckPoint::default()
        };
        let due = ck.revive_time() - ACK_TIME_INTERVAL_MS;
        let appended =
            put_revive(broker, pop.revive_qid, pop::CK_TAG, &ck.unique_key(), &ck_json(&ck), due)?;
        popped.last_checkpoint = Some(appended);
        popped.reads.push(QueueRead { kind, queue_id, start_offset: offset, offsets });
        popped.messages.extend(got.messages);
        popped.commits.push((topic.to_owned(), queue_id, next));
    }
    // Past what was read only once its checkpoint is in: a failed put hands nothing out.
    latest.insert(key, next);
    popped.rest += max.saturating_sub(next);
    Ok(())
}

/// Up to `left` messages of `(topic, queue_id)` that pass the pop's filter, read from `offset`,
/// or from where the queue now starts or ends when `offset` fell out of it; the offset read
/// from.
pub(super) fn read_queue(
    broker: &Broker,
    pop: &Pop<'_>,
    (topic, queue_id): (&str, i32),
    mut offset: i64,
    left: usize,
) -> (i64, GetMessages) {
    let limits = ReadLimits { messages_max: left, ..ReadLimits::default() };
    let read = |offset: i64| {
        super::pull_message::read_filtered(
            broker,
            (topic, queue_id),
            offset as u64,
            limits,
            &pop.filter,
        )
    };
    let mut got = read(offset);
    if matches!(got.status, GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly) {
        offset = got.next_begin_offset as i64;
        got = read(offset);
    }
    (offset, got)
}

/// Where the next pop of `(topic, group, queue)` reads: the group's offset (with none, the
/// queue's first message, or with `init_last` its last), or the last pop's end past it.
pub(super) fn position(
    broker: &Broker,
    latest: &PopOffsets,
    key: &(String, String, i32),
    (min, max): (i64, i64),
    init_last: bool,
) -> i64 {
    let (topic, group, queue_id) = key;
    let first = match broker.offsets().query(topic, group, *queue_id) {
        Some(offset) => offset,
        None if init_last => (max - 1).max(min),
        None => min,
    };
    first.max(latest.get(key).copied().unwrap_or(i64::MIN)).max(min)
}

pub(super) fn queue_offset(record: &[u8]) -> Option<i64> {
    match scan_record(record, Checks { physical_offset: None, crc: false }) {
        Scanned::Record(record) => Some(record.queue_offset),
        _ => None,
    }
}

pub(super) fn ck_json(ck: &PopCheckPoint) -> Vec<u8> {
    serde_json::to_vec(ck).expect("a checkpoint always serializes")
}

/// Appends a record to revive queue `revive_qid` of the revive topic, tagged `tag`, delivered
/// at `deliver_ms` (through the timer wheel while that is ahead).
pub(super) fn put_revive(
    broker: &Broker,
    revive_qid: i32,
    tag: &str,
    unique_key: &str,
    body: &[u8],
    deliver_ms: i64,
) -> Result<Appended, Refusal> {
    let revive_topic = ensure_revive_topic(broker)?;
    let deliver = deliver_ms.to_string();
    let properties = petrel_core::record::encode_properties(&[
        ("TAGS", tag),
        ("UNIQ_KEY", unique_key),
        ("WAIT", "false"),
        ("TIMER_DELIVER_MS", &deliver),
    ]);
    let now = now_millis() as i64;
    let wait = {
        let config = broker.send_config.read().unwrap_or_else(|p| p.into_inner());
        plan_wait(&config, &properties, now)?
    };
    let (topic, queue_id, properties) = match wait.queue() {
        Some((topic, queue_id)) => {
            (topic, queue_id, wait.properties(&properties, &revive_topic, revive_qid))
        }
        None => (revive_topic, revive_qid, properties),
    };
    let input = super::broker_record(broker, (&topic, queue_id), body, &properties, now);
    let appended = broker
        .store
        .append(&input, now)
        .map_err(|e| super::send_message::store_error(broker, &e))?;
    broker.stats.messages_put.fetch_add(1, Ordering::Relaxed);
    Ok(appended)
}

/// The revive topic, created with [`REVIVE_QUEUES`] queues when missing.
pub(super) fn ensure_revive_topic(broker: &Broker) -> Result<String, Refusal> {
    let topic = pop::revive_topic(&broker.config.cluster_name);
    ensure_topic(broker, &topic, REVIVE_QUEUES)?;
    Ok(topic)
}

/// Creates `topic` with `queues` read and write queues when missing; refuses when the topic
/// table cannot be made durable.
pub(super) fn ensure_topic(broker: &Broker, topic: &str, queues: i32) -> Result<(), Refusal> {
    let config = topic_config(topic, queues, perm::READ | perm::WRITE);
    if broker.topics().ensure([config], now_millis()) {
        tracing::info!(%topic, queues, "topic created");
        broker.topics_changed();
    }
    broker.topics_durable()
}

/// How a store's answer that a record is not durable reads.
pub(super) fn put_refusal(error: &PutError, what: &str) -> Refusal {
    match error {
        PutError::FlushTimeout { timeout_ms, .. } => Refusal::new(
            response::FLUSH_DISK_TIMEOUT,
            format!("{what} stored but not flushed within {timeout_ms} ms"),
        ),
        PutError::SlaveTimeout { timeout_ms, .. } => Refusal::new(
            response::FLUSH_SLAVE_TIMEOUT,
            format!("{what} stored but not replicated within {timeout_ms} ms"),
        ),
        PutError::NotDurable { reason, .. } => Refusal::new(
            response::FLUSH_DISK_TIMEOUT,
            format!("{what} stored but not durable: {reason}"),
        ),
        PutError::Store(e) => super::send_message::store_refusal(e),
    }
}

/// The latest offset each pop moved a queue to, by (topic, group, queue).
pub(super) type PopOffsets = BTreeMap<(String, String, i32), i64>;

/// Pops held now, by (topic, group, queue id as asked: -1 for every queue) (POLLING_INFO).
pub(super) type HeldPops = BTreeMap<(String, String, i32), i32>;

/// What the broker keeps for POP consumers.
#[derive(Default)]
pub(super) struct PopState {
    /// Where each pop left each queue of each group, until its checkpoint is stored and the
    /// group's offset moves there.
    pub offsets: Mutex<PopOffsets>,
    pub held: Mutex<HeldPops>,
    /// Pops (and peeks) so far: which queue a pop of every queue starts at, and which revive
    /// queue it writes to.
    pub count: std::sync::atomic::AtomicU64,
    /// Orderly pops' state (`pop_order.rs`); taken after `offsets`.
    pub order: Mutex<petrel_core::broker::pop_order::OrderInfos>,
    /// It changed since `config/consumerOrderInfo.json` was last written.
    pub order_dirty: std::sync::atomic::AtomicBool,
}

impl PopState {
    /// With the orderly state read at start.
    pub fn with_order(order: petrel_core::broker::pop_order::OrderInfos) -> PopState {
        PopState { order: Mutex::new(order), ..PopState::default() }
    }
}

/// Counts one held pop while it lives.
struct Polling<'a> {
    broker: &'a Broker,
    key: (String, String, i32),
}

impl<'a> Polling<'a> {
    fn count(broker: &'a Broker, (topic, group, queue_id): (&str, &str, i32)) -> Polling<'a> {
        let key = (topic.to_owned(), group.to_owned(), queue_id);
        *lock(&broker.pop.held).entry(key.clone()).or_default() += 1;
        Polling { broker, key }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.broker.pop.held);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count <= 0 {
                held.remove(&self.key);
            }
        }
    }
}
