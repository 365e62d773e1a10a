//! The send planner: where a message goes and with what properties, or why it does not
//! (RocketMQ's `SendMessageProcessor` checks and redirects, and the delay service's re-put).
//!
//! Pure: the broker's tables, its configuration, the request and a number the shell draws
//! (the queue choice) in; a [`SendPlan`] or a [`Refusal`] out. The shell appends what the plan
//! says, after creating the topics and group it names. Three requests plan here:
//! - [`plan_send`]: SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE from a producer;
//! - [`plan_send_back`]: CONSUMER_SEND_MSG_BACK, a message a consumer failed to consume;
//! - [`plan_due`]: a delayed message whose time came, back to its real topic.
//!
//! One rule for "retries used up" ([`retries_used_up`]) and one queue choice
//! ([`pick_queue`]) serve all of them. Golden cases: `core/testdata/send_plan.txt`.

use core::net::SocketAddr;
use std::borrow::Cow;

use crate::broker::schedule::{redirect, restore, DelayLevels};
use crate::broker::subscriptions::{SubscriptionGroupConfig, SubscriptionGroups};
use crate::broker::timer::{self, plan_timer, TimerSettings};
use crate::broker::topics::{topic_config, TopicTable};
use crate::broker::transaction;
use crate::broker::{
    dlq_topic, property, retry_topic, Refusal, DLQ_PREFIX, RETRY_PREFIX, SCHEDULE_TOPIC,
};
use crate::codes::response;
use crate::model::{perm, TopicConfig};
use crate::record::{
    self, put_property, sys_flag, RecordInput, PROPERTY_SEPARATOR, TOPIC_BYTES_MAX,
};

/// Topics producers may not send to (`TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
/// Petrel adds the timer topic: only the broker writes it (RocketMQ takes sends to it and
/// cannot deliver those that lack `TIMER_OUT_MS`).
pub const NOT_ALLOWED_TO_SEND: [&str; 7] = [
    SCHEDULE_TOPIC,
    timer::TIMER_TOPIC,
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// The delay level of a retry the consumer left to the broker: `3 + reconsumeTimes`
/// (10 s, 30 s, 1 min, ... 2 h).
pub const SEND_BACK_LEVEL_BASE: i32 = 3;

/// What the planner needs of the broker's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfig {
    /// `brokerPermission`.
    pub broker_permission: i32,
    /// `ip:port`, for remarks.
    pub broker_addr: String,
    /// `brokerClusterName`, the CLUSTER property of every message (shared with every plan).
    pub cluster_name: std::sync::Arc<str>,
    /// `maxMessageSize`.
    pub message_bytes_max: usize,
    pub delay_levels: DelayLevels,
    /// `timerWheelEnable`, `timerPrecisionMs`, `timerMaxDelaySec`, ...
    pub timer: TimerSettings,
    /// `autoCreateSubscriptionGroup`.
    pub auto_create_group: bool,
    /// `brokerRole=SLAVE`: only the master's log is stored here, nothing a client sends.
    pub slave: bool,
    /// `rejectTransactionMessage`: transaction messages are refused.
    pub reject_transaction_message: bool,
}

/// The broker's tables as the planner reads them.
#[derive(Debug, Clone, Copy)]
pub struct BrokerView<'a> {
    pub topics: &'a TopicTable,
    pub groups: &'a SubscriptionGroups,
    pub config: &'a SendConfig,
}

/// A producer's send, as its header says.
#[derive(Debug, Clone, Copy)]
pub struct SendRequest<'a> {
    pub topic: &'a str,
    /// Below 0: the broker picks the queue.
    pub queue_id: i32,
    pub sys_flag: i32,
    /// The (first) message's properties; a batch's delay and retry fields are not looked at.
    pub properties: &'a [u8],
    pub reconsume_times: i32,
    pub max_reconsume_times: Option<i32>,
    pub default_topic: &'a str,
    pub default_topic_queue_nums: i32,
    pub body_bytes: usize,
    pub batch: bool,
    /// The producer's address, for remarks.
    pub producer: core::net::SocketAddr,
    /// Now, in ms since the epoch: a timer message's delay counts from here.
    pub now_ms: i64,
}

/// A consumer's send-back, and the record it names.
#[derive(Debug, Clone, Copy)]
pub struct SendBackRequest<'a> {
    pub group: &'a str,
    /// 0: the broker's choice; below 0: straight to the dead-letter topic.
    pub delay_level: i32,
    pub max_reconsume_times: Option<i32>,
    /// The commit-log offset the consumer named, and the record there (`None`: none could be
    /// read).
    pub offset: i64,
    pub record: Option<FailedRecord<'a>>,
}

/// What a send-back keeps of the record it copies.
#[derive(Debug, Clone, Copy)]
pub struct FailedRecord<'a> {
    pub topic: &'a str,
    pub reconsume_times: i32,
    pub properties: &'a [u8],
    pub sys_flag: i32,
    /// Its offset message id: its ORIGIN_MESSAGE_ID on its first retry.
    pub msg_id: &'a str,
}

/// Where a message goes. The shell creates what it names, then appends under `topic` and
/// `queue_id` with [`SendPlan::stored_properties`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPlan {
    pub topic: String,
    pub queue_id: i32,
    /// The queue the answer names: the one chosen on the topic sent to, before a redirect.
    pub sent_queue_id: i32,
    pub sys_flag: i32,
    pub reconsume_times: i32,
    /// Topics to create first (a retry topic, a dead-letter topic, one copied from the default).
    pub create_topics: Vec<TopicConfig>,
    /// A subscription group to create first (`autoCreateSubscriptionGroup`).
    pub create_group: Option<SubscriptionGroupConfig>,
    /// The message goes to its group's dead-letter topic.
    pub dead_letter: bool,
    edit: Edit,
}

/// How the stored properties differ from the sent ones.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// The broker's own properties added where missing.
    BrokerAdds { cluster: std::sync::Arc<str> },
    /// And the message waits in the schedule topic or the timer topic, then goes to
    /// `real_topic`.
    Waits { cluster: std::sync::Arc<str>, real_topic: String, real_queue_id: i32, wait: Wait },
    /// A due message back to its real topic: DELAY dropped, nothing added.
    Restored,
    /// A transaction's half message: the broker's properties, then `REAL_TOPIC`, `REAL_QID`
    /// and `__transactionId__` (`transaction::half_properties`).
    Half { cluster: std::sync::Arc<str>, real_topic: String, real_queue_id: i32 },
    /// A retry: RETRY_TOPIC and ORIGIN_MESSAGE_ID kept or set, WAIT=false, and when not dead,
    /// the schedule topic's fields for `level`.
    Retry { origin_topic: String, origin_id: String, delay: Option<(String, i32, i32)> },
}

/// Whether a message tried `tried` times (this try included) has used up its `max` retries:
/// RocketMQ's `reconsumeTimes > maxReconsumeTimes` of a send to a retry topic, whose count
/// the client already raised, and `reconsumeTimes >= maxReconsumeTimes` of a send-back, whose
/// record still has the old count.
pub fn retries_used_up(tried: i32, max: i32) -> bool {
    tried > max
}

/// The queue for a message whose producer left the choice to the broker, from a number the
/// shell draws (RocketMQ draws a random one).
pub fn pick_queue(pick: u64, queues: i32) -> i32 {
    (pick % queues.max(1) as u64) as i32
}

/// RocketMQ's remark for a topic name it refuses (`TopicValidator.validateTopic`).
pub fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.trim().is_empty() {
        Some("The specified topic is blank.")
    } else if topic.len() > TOPIC_BYTES_MAX {
        Some("The specified topic is longer than topic max length.")
    } else if !record::is_valid_topic(topic.as_bytes()) {
        Some("The specified topic contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$")
    } else {
        None
    }
}

fn broker_writable(view: &BrokerView<'_>) -> Result<(), Refusal> {
    if view.config.slave {
        // RocketMQ's store refuses every put on a slave (SERVICE_NOT_AVAILABLE).
        let why = format!(
            "service not available now: the broker[{}] is a slave (brokerRole=SLAVE); send to \
             its master",
            view.config.broker_addr
        );
        return Err(Refusal::new(response::SERVICE_NOT_AVAILABLE, why));
    }
    match perm::is_writeable(view.config.broker_permission) {
        true => Ok(()),
        false => Err(Refusal::new(
            response::NO_PERMISSION,
            format!("the broker[{}] sending message is forbidden", view.config.broker_addr),
        )),
    }
}

/// Plans a producer's send (`SendMessageProcessor`): the checks in RocketMQ's order (broker
/// writable, topic name, topic allowed, topic known or created from the default topic it
/// names, queue id, topic writable, body size), then the redirects: to the dead-letter topic
/// when a retry used up its tries, to the schedule topic when it asks for a delay level.
pub fn plan_send(
    view: &BrokerView<'_>,
    request: &SendRequest<'_>,
    pick: u64,
) -> Result<SendPlan, Refusal> {
    broker_writable(view)?;
    let topic = request.topic;
    if let Some(why) = topic_problem(topic) {
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if NOT_ALLOWED_TO_SEND.contains(&topic) {
        let why = format!("Sending message to topic[{topic}] is forbidden.");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let (config, created) = topic_for_send(view, request)?;
    let queue_id = match request.queue_id < 0 {
        true => pick_queue(pick, config.write_queue_nums),
        false => request.queue_id,
    };
    check_send(view, request, &config, queue_id)?;
    let cluster = view.config.cluster_name.clone();
    let mut plan = SendPlan {
        topic: topic.to_owned(),
        queue_id,
        sent_queue_id: queue_id,
        sys_flag: request.sys_flag,
        reconsume_times: request.reconsume_times,
        create_topics: created.into_iter().collect(),
        create_group: None,
        dead_letter: false,
        edit: Edit::BrokerAdds { cluster: cluster.clone() },
    };
    if transaction::is_prepared(request.properties) {
        to_half_queue(view, request, &mut plan)?;
        return Ok(plan);
    }
    if request.batch {
        return Ok(plan);
    }
    if let Some(group) = topic.strip_prefix(RETRY_PREFIX) {
        let Some(group_config) = view.groups.get(group) else {
            let why = format!("subscription group not exist, {group}");
            return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
        };
        let max = request.max_reconsume_times.unwrap_or(group_config.retry_max_times);
        if retries_used_up(request.reconsume_times, max) {
            to_dead_letter(view, &mut plan, group);
            return Ok(plan);
        }
    }
    let wait = plan_wait(view.config, request.properties, request.now_ms)?;
    if let Some((topic, queue_id)) = wait.queue() {
        let real_topic = std::mem::replace(&mut plan.topic, topic);
        let real_queue_id = std::mem::replace(&mut plan.queue_id, queue_id);
        plan.edit = Edit::Waits { cluster, real_topic, real_queue_id, wait };
    }
    Ok(plan)
}

/// Where a message bound for its topic waits first (`HookUtils.handleScheduleMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// It is stored in its topic at once.
    None,
    /// In the schedule topic, for a delay level (already clamped to the table's).
    Delay(i32),
    /// In the timer topic, until `TIMER_OUT_MS`.
    Timer(i64),
}

impl Wait {
    /// The topic and queue it waits in.
    pub fn queue(self) -> Option<(String, i32)> {
        match self {
            Wait::None => None,
            Wait::Delay(level) => Some((SCHEDULE_TOPIC.to_owned(), DelayLevels::queue_id(level))),
            Wait::Timer(_) => Some((timer::TIMER_TOPIC.to_owned(), 0)),
        }
    }

    /// `properties` of a message bound for `real_topic` and `real_queue_id`, as it waits:
    /// a delay keeps no timer ask (the level wins), a timer gets `TIMER_OUT_MS`.
    pub fn properties(self, properties: &[u8], real_topic: &str, real_queue_id: i32) -> Vec<u8> {
        match self {
            Wait::None => properties.to_vec(),
            Wait::Delay(level) => {
                redirect(&timer::without_timer_asks(properties), real_topic, real_queue_id, level)
            }
            Wait::Timer(out_ms) => {
                timer::wheel_properties(properties, real_topic, real_queue_id, out_ms)
            }
        }
    }
}

/// Whether a single message with `properties`, sent (or committed) at `now_ms`, waits: a
/// delay level first, then the timer asks ([`plan_timer`], whose refusals it passes on).
pub fn plan_wait(config: &SendConfig, properties: &[u8], now_ms: i64) -> Result<Wait, Refusal> {
    let level = record::property(properties, property::DELAY.as_bytes())
        .and_then(|l| std::str::from_utf8(l).ok()?.parse::<i32>().ok());
    if let Some(level) = level.and_then(|l| config.delay_levels.clamp(l)) {
        return Ok(Wait::Delay(level));
    }
    Ok(plan_timer(properties, now_ms, &config.timer)?.map_or(Wait::None, Wait::Timer))
}

/// The checks after the topic is known.
fn check_send(
    view: &BrokerView<'_>,
    request: &SendRequest<'_>,
    config: &TopicConfig,
    queue_id: i32,
) -> Result<(), Refusal> {
    let topic = request.topic;
    if queue_id >= config.write_queue_nums.max(config.read_queue_nums) {
        let why = format!(
            "request queueId[{queue_id}] is illegal, topic:[{topic}] writeQueueNums:[{}] readQueueNums:[{}] Producer: {}",
            config.write_queue_nums, config.read_queue_nums, request.producer
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if !perm::is_writeable(config.perm) {
        let why = format!("the topic[{topic}] sending message is forbidden");
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    let max = view.config.message_bytes_max;
    if request.body_bytes > max {
        let why = format!(
            "message body is {} bytes, larger than maxMessageSize={max}",
            request.body_bytes
        );
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    let prepared_flag =
        request.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED;
    if prepared_flag && !transaction::is_prepared(request.properties) {
        let why = "sysFlag marks a transaction's half message but property TRAN_MSG is not \
                   true: send it with TRAN_MSG=true and PGROUP, or as a normal message";
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    if request.batch && topic.starts_with(RETRY_PREFIX) {
        let why = "batch request does not support retry group topics";
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    Ok(())
}

/// The topic's config, and the config to create when the broker does not serve it yet: a
/// retry topic with its group's queue count, or a copy of the default topic.
fn topic_for_send<'v>(
    view: &BrokerView<'v>,
    request: &SendRequest<'_>,
) -> Result<(Cow<'v, TopicConfig>, Option<TopicConfig>), Refusal> {
    let topic = request.topic;
    if let Some(config) = view.topics.get(topic) {
        return Ok((Cow::Borrowed(config), None));
    }
    let created = match topic.strip_prefix(RETRY_PREFIX) {
        Some(group) => {
            let queues = view.groups.get(group).map_or(1, |g| g.retry_queue_nums);
            Ok(topic_config(topic, queues, perm::READ | perm::WRITE))
        }
        None => view.topics.config_from_default(
            topic,
            request.default_topic,
            request.default_topic_queue_nums,
            0,
        ),
    };
    match created {
        Ok(config) => Ok((Cow::Owned(config.clone()), Some(config))),
        Err(why) => Err(Refusal::new(response::TOPIC_NOT_EXIST, why)),
    }
}

/// Sends the plan to the half queue (`SendMessageProcessor`'s prepared branch): one
/// message, on a broker that takes transactions, with its transaction type cleared so that
/// the half queue gives it a unit.
fn to_half_queue(
    view: &BrokerView<'_>,
    request: &SendRequest<'_>,
    plan: &mut SendPlan,
) -> Result<(), Refusal> {
    if view.config.reject_transaction_message {
        let why = format!(
            "the broker[{}] sending transaction message is forbidden",
            view.config.broker_addr
        );
        return Err(Refusal::new(response::NO_PERMISSION, why));
    }
    if request.batch {
        let why = "a batch cannot be a transaction message: send each message in its own \
                   transaction";
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    }
    // Its commit waits as a send would: a timer ask the commit would refuse is refused now.
    plan_wait(view.config, request.properties, request.now_ms)?;
    let Edit::BrokerAdds { cluster } = &plan.edit else {
        unreachable!("a send is planned with the broker's properties first")
    };
    plan.edit = Edit::Half {
        cluster: cluster.clone(),
        real_topic: std::mem::replace(&mut plan.topic, transaction::HALF_TOPIC.to_owned()),
        real_queue_id: plan.queue_id,
    };
    plan.queue_id = 0;
    plan.sys_flag = transaction::half_sys_flag(plan.sys_flag);
    Ok(())
}

/// Sends the plan to `group`'s dead-letter topic (one queue, created when missing).
fn to_dead_letter(view: &BrokerView<'_>, plan: &mut SendPlan, group: &str) {
    plan.topic = dlq_topic(group);
    plan.queue_id = 0;
    plan.dead_letter = true;
    if view.topics.get(&plan.topic).is_none() {
        plan.create_topics.push(topic_config(&plan.topic, 1, perm::READ | perm::WRITE));
    }
}

/// Plans a consumer's send-back (`consumerSendMsgBack`): the group (created when
/// `autoCreateSubscriptionGroup`), then the retry topic through the schedule topic at level
/// `3 + reconsumeTimes` unless the consumer named one, or the dead-letter topic once the
/// retries are used up or the consumer asks for it (a level below 0). `None`: nothing to
/// store, the group keeps no retries.
pub fn plan_send_back(
    view: &BrokerView<'_>,
    request: &SendBackRequest<'_>,
    pick: u64,
) -> Result<Option<SendPlan>, Refusal> {
    let group = request.group;
    let (config, create_group) = match view.groups.get(group) {
        Some(config) => (config.clone(), None),
        None if view.config.auto_create_group => {
            let config = SubscriptionGroupConfig::named(group);
            (config.clone(), Some(config))
        }
        None => {
            let why = format!("subscription group not exist, {group}");
            return Err(Refusal::new(response::SUBSCRIPTION_GROUP_NOT_EXIST, why));
        }
    };
    broker_writable(view)?;
    if config.retry_queue_nums <= 0 {
        return Ok(None);
    }
    let Some(record) = request.record else {
        let why = format!("look message by offset failed, {}", request.offset);
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let tried = record.reconsume_times + 1;
    let max = request.max_reconsume_times.unwrap_or(config.retry_max_times);
    let dead = retries_used_up(tried, max) || request.delay_level < 0;
    let queue_id = pick_queue(pick, config.retry_queue_nums);
    let mut plan = SendPlan {
        topic: retry_topic(group),
        queue_id,
        sent_queue_id: queue_id,
        sys_flag: record.sys_flag & !sys_flag::HOSTS_V6,
        reconsume_times: tried,
        create_topics: Vec::new(),
        create_group,
        dead_letter: false,
        edit: Edit::Restored,
    };
    let delay = if dead {
        to_dead_letter(view, &mut plan, group);
        None
    } else {
        if view.topics.get(&plan.topic).is_none() {
            let rw = perm::READ | perm::WRITE;
            plan.create_topics.push(topic_config(&plan.topic, config.retry_queue_nums, rw));
        }
        let asked = match request.delay_level {
            0 => SEND_BACK_LEVEL_BASE + record.reconsume_times,
            level => level,
        };
        let level = view.config.delay_levels.clamp(asked).unwrap_or(1);
        let real = (std::mem::take(&mut plan.topic), plan.queue_id, level);
        plan.topic = SCHEDULE_TOPIC.to_owned();
        plan.queue_id = DelayLevels::queue_id(level);
        Some(real)
    };
    let (origin_topic, origin_id) = (record.topic.to_owned(), record.msg_id.to_owned());
    plan.edit = Edit::Retry { origin_topic, origin_id, delay };
    Ok(Some(plan))
}

/// Plans the re-put of a due delayed message: its REAL_TOPIC and REAL_QID, DELAY dropped.
/// A stored message without its real topic is refused (it can only be dropped).
pub fn plan_due(
    properties: &[u8],
    sys_flag: i32,
    reconsume_times: i32,
) -> Result<SendPlan, Refusal> {
    let Some((topic, queue_id, _)) = restore(properties) else {
        let why = "a delayed message without REAL_TOPIC cannot be delivered";
        return Err(Refusal::new(response::MESSAGE_ILLEGAL, why));
    };
    Ok(SendPlan {
        topic,
        queue_id,
        sent_queue_id: queue_id,
        sys_flag,
        reconsume_times,
        create_topics: Vec::new(),
        create_group: None,
        dead_letter: false,
        edit: Edit::Restored,
    })
}

impl SendPlan {
    /// The slot a timer message waits for (`TIMER_OUT_MS`), when the plan puts it in the
    /// timer topic: where `timerCongestNumEachSlot` is checked.
    pub fn timer_slot(&self) -> Option<i64> {
        match self.edit {
            Edit::Waits { wait: Wait::Timer(out_ms), .. } => Some(out_ms),
            _ => None,
        }
    }

    /// What must hold of any plan: a topic the store takes, a queue in range of what it
    /// creates, the schedule topic only with a delay, the dead-letter topic only at queue 0.
    pub fn check_invariants(&self) {
        assert!(topic_problem(&self.topic).is_none(), "planned topic {:?}", self.topic);
        assert!(self.queue_id >= 0, "planned queue {}", self.queue_id);
        if let Some(created) = self.create_topics.iter().find(|c| c.topic_name == self.topic) {
            assert!(self.queue_id < created.write_queue_nums.max(1), "queue past its topic");
        }
        let delayed = matches!(
            self.edit,
            Edit::Waits { wait: Wait::Delay(_), .. } | Edit::Retry { delay: Some(_), .. }
        );
        let half = matches!(self.edit, Edit::Half { .. });
        assert_eq!(
            half,
            self.topic == transaction::HALF_TOPIC,
            "the half topic holds half messages"
        );
        assert!(!half || self.queue_id == 0, "half messages wait in queue 0");
        assert!(sys_flag::is_dispatched(self.sys_flag) || !half, "a half message has a unit");
        assert!(!delayed || self.topic == SCHEDULE_TOPIC, "a delay waits in the schedule topic");
        let timed = matches!(self.edit, Edit::Waits { wait: Wait::Timer(_), .. });
        assert_eq!(timed, self.topic == timer::TIMER_TOPIC, "the timer topic holds timer messages");
        assert!(!timed || self.queue_id == 0, "timer messages wait in queue 0");
        if self.dead_letter {
            assert!(self.topic.starts_with(DLQ_PREFIX), "a dead letter goes to %DLQ%");
            assert_eq!(self.queue_id, 0, "a dead-letter topic has one queue");
        }
    }

    /// The properties to store a message sent with `sent` under this plan. `unique_key` is
    /// asked for only when the producer sent no UNIQ_KEY.
    pub fn stored_properties(&self, sent: &[u8], unique_key: impl FnOnce() -> String) -> Vec<u8> {
        match &self.edit {
            Edit::BrokerAdds { cluster } => broker_adds(sent, cluster, unique_key),
            Edit::Waits { cluster, real_topic, real_queue_id, wait } => {
                let added = broker_adds(sent, cluster, unique_key);
                wait.properties(&added, real_topic, *real_queue_id)
            }
            Edit::Half { cluster, real_topic, real_queue_id } => {
                let added = broker_adds(sent, cluster, unique_key);
                transaction::half_properties(&added, real_topic, *real_queue_id)
            }
            Edit::Restored => match restore(sent) {
                Some((_, _, restored)) => restored,
                None => sent.to_vec(),
            },
            Edit::Retry { origin_topic, origin_id, delay } => {
                let retried = retry_properties(sent, origin_topic, origin_id);
                match delay {
                    Some((topic, queue_id, level)) => redirect(&retried, topic, *queue_id, *level),
                    None => retried,
                }
            }
        }
    }

    /// A stored record appended again under this plan, with `properties` from
    /// [`SendPlan::stored_properties`]. A due message keeps its prepared-transaction offset
    /// (`ScheduleMessageService` copies it); a retry is a new message and has none.
    pub fn copy_of<'a>(
        &'a self,
        record: &record::Record<'a>,
        properties: &'a [u8],
        store_host: SocketAddr,
    ) -> RecordInput<'a> {
        let prepared_transaction_offset = match self.edit {
            Edit::Restored => record.prepared_transaction_offset,
            _ => 0,
        };
        RecordInput {
            topic: &self.topic,
            queue_id: self.queue_id,
            flag: record.flag,
            sys_flag: self.sys_flag,
            born_timestamp: record.born_timestamp,
            born_host: record.born_host,
            store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset,
            body: record.body,
            properties,
        }
    }
}

/// The producer's properties plus what the broker adds to every message: MSG_REGION,
/// TRACE_ON, CLUSTER, and a UNIQ_KEY when the producer sent none.
fn broker_adds(sent: &[u8], cluster: &str, unique_key: impl FnOnce() -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.len() + 96);
    out.extend_from_slice(sent);
    if !out.is_empty() && out.last() != Some(&PROPERTY_SEPARATOR) {
        out.push(PROPERTY_SEPARATOR);
    }
    let has = |name: &str| record::property(sent, name.as_bytes()).is_some_and(|v| !v.is_empty());
    for (name, value) in [("MSG_REGION", "DefaultRegion"), ("TRACE_ON", "true")] {
        if !has(name) {
            put_property(&mut out, name, value);
        }
    }
    if !has(property::CLUSTER) {
        put_property(&mut out, property::CLUSTER, cluster);
    }
    if !has(property::UNIQ_KEY) {
        put_property(&mut out, property::UNIQ_KEY, unique_key());
    }
    out
}

/// A record's properties for its next try: RETRY_TOPIC (its first topic) and
/// ORIGIN_MESSAGE_ID (its first id) kept or set, WAIT and DELAY dropped, WAIT=false added.
fn retry_properties(sent: &[u8], origin_topic: &str, origin_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sent.len() + 96);
    let (mut has_origin, mut has_retry_topic) = (false, false);
    for (name, value) in record::properties(sent) {
        match name {
            b"ORIGIN_MESSAGE_ID" => has_origin = true,
            b"RETRY_TOPIC" => has_retry_topic = true,
            b"WAIT" | b"DELAY" => continue,
            _ => {}
        }
        put_property(&mut out, name, value);
    }
    if !has_retry_topic {
        put_property(&mut out, property::RETRY_TOPIC, origin_topic);
    }
    if !has_origin {
        put_property(&mut out, property::ORIGIN_MESSAGE_ID, origin_id);
    }
    put_property(&mut out, property::WAIT, "false");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(edit: Edit) -> SendPlan {
        SendPlan {
            topic: "T".to_owned(),
            queue_id: 1,
            sent_queue_id: 1,
            sys_flag: 0,
            reconsume_times: 2,
            create_topics: Vec::new(),
            create_group: None,
            dead_letter: false,
            edit,
        }
    }

    #[test]
    fn a_due_copy_keeps_its_transaction_offset_and_a_retry_has_none() {
        let host: SocketAddr = "127.0.0.1:10911".parse().expect("an address");
        let stored = record::Record {
            bytes: &[],
            body_crc: 0,
            queue_id: 0,
            flag: 7,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 11,
            born_host: host,
            store_timestamp: 12,
            store_host: host,
            reconsume_times: 1,
            prepared_transaction_offset: 4096,
            body: b"body",
            topic: b"SCHEDULE_TOPIC_XXXX",
            properties: b"",
        };
        let due = plan(Edit::Restored);
        let copy = due.copy_of(&stored, b"p", host);
        assert_eq!(copy.prepared_transaction_offset, 4096);
        assert_eq!((copy.topic, copy.queue_id, copy.reconsume_times), ("T", 1, 2));
        assert_eq!((copy.flag, copy.born_timestamp, copy.body), (7, 11, &b"body"[..]));
        let retry =
            plan(Edit::Retry { origin_topic: "O".into(), origin_id: "I".into(), delay: None });
        assert_eq!(retry.copy_of(&stored, b"p", host).prepared_transaction_offset, 0);
    }
}
