//! The lite pull consumer (RocketMQ's `DefaultLitePullConsumer`): the application assigns
//! itself queues, or subscribes to topics and lets the group share their queues; it polls
//! batches, seeks, and commits offsets (also every 5 s with `auto_commit`). Its pulls are
//! LITE_PULL_MESSAGE with PullSysFlag's lite bit, as Java's are.
//!
//! Positions start at the group's committed offset, or where `consume_from` says for a queue
//! the group never committed. `commit` sends every position, moved or not (as RocketMQ's
//! offset store does), so a broker that lost recent commits in a crash gets them back;
//! `shutdown` commits first, so a restarted consumer of the group goes on where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use petrel_core::broker::filter::SUB_ALL;
use petrel_core::client::allocate::{allocate, Strategy};
use petrel_core::client::MessageQueue;
use petrel_core::model::MASTER_ID;
use petrel_core::record::{offset_msg_id, properties, scan_records};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    pull_sys_flag, GetMaxOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, SearchOffsetRequestHeader, TopicQueueRequestHeader,
};
use petrel_net::signal::Flag;
use petrel_net::transport::{ClientConfig, RemotingClient, RequestHandler};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::group::{self, Member, Notices};
use crate::message::body_as_sent;
use crate::route::{self, TopicRoute};
use crate::subscription::Subscription;
use crate::{raw, ClientError};

/// Where a group that never committed an offset starts on a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeFrom {
    /// The queue's current end: only new messages (RocketMQ's default).
    Last,
    /// The queue's first message still stored.
    First,
    /// The first message stored at or after this time, in milliseconds since the epoch
    /// (`CONSUME_FROM_TIMESTAMP`; RocketMQ's default time is half an hour before start).
    Timestamp(i64),
}

impl ConsumeFrom {
    /// The name a heartbeat gives it (`consumeFromWhere`).
    pub fn rocketmq_name(self) -> &'static str {
        match self {
            ConsumeFrom::Last => "CONSUME_FROM_LAST_OFFSET",
            ConsumeFrom::First => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFrom::Timestamp(_) => "CONSUME_FROM_TIMESTAMP",
        }
    }
}

/// A pull consumer's settings.
#[derive(Debug, Clone)]
pub struct PullConsumerConfig {
    pub namesrv_addrs: Vec<String>,
    pub group: String,
    pub consume_from: ConsumeFrom,
    /// `pullBatchSize`: messages per pull, at most 32 from a broker's memory.
    pub pull_batch: i32,
    pub request_timeout: Duration,
    /// Subscribe mode: how the group's queues are shared, and how often that is redone
    /// (and at once when the broker says the group changed). Assign mode: how often the
    /// assigned queues' routes are fetched afresh.
    pub strategy: Strategy,
    pub rebalance_interval: Duration,
    /// `autoCommit`: commit the positions every `commit_interval` (5 s), in both modes.
    pub auto_commit: bool,
    pub commit_interval: Duration,
}

impl Default for PullConsumerConfig {
    fn default() -> Self {
        PullConsumerConfig {
            namesrv_addrs: crate::namesrv_from_env(),
            group: "DEFAULT_CONSUMER".to_owned(),
            consume_from: ConsumeFrom::Last,
            pull_batch: 32,
            request_timeout: Duration::from_secs(3),
            strategy: Strategy::Averagely,
            rebalance_interval: Duration::from_secs(20),
            auto_commit: true,
            commit_interval: Duration::from_secs(5),
        }
    }
}

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The topic the producer sent to (a retry names its first topic here, while `queue` is
    /// the retry topic's queue it came from).
    pub topic: String,
    pub queue: MessageQueue,
    pub queue_offset: i64,
    /// The UNIQ_KEY the producer gave it.
    pub msg_id: String,
    pub offset_msg_id: String,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
    pub reconsume_times: i32,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    /// Where the record is in the broker's commit log (what a send-back names).
    pub commit_log_offset: i64,
}

impl ReceivedMessage {
    pub fn tags(&self) -> Option<&str> {
        self.properties.get("TAGS").map(String::as_str)
    }

    pub fn keys(&self) -> Vec<&str> {
        self.properties.get("KEYS").map(|k| k.split(' ').collect()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Position {
    next: i64,
    /// The broker id the queue's last pull answer suggested for the next (0, the master).
    from: i64,
}

struct Inner {
    config: PullConsumerConfig,
    client: RemotingClient,
    client_id: String,
    routes: Mutex<BTreeMap<String, TopicRoute>>,
    positions: Mutex<BTreeMap<MessageQueue, Position>>,
    /// Where `poll` starts, so every queue gets its turn.
    turn: Mutex<usize>,
    /// Subscribe mode's topics; empty in assign mode.
    subscriptions: Mutex<BTreeMap<String, Subscription>>,
    assigned: Mutex<bool>,
    rebalance_now: Arc<Notify>,
    stop: Flag,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running lite pull consumer.
#[derive(Clone)]
pub struct PullConsumer {
    inner: Arc<Inner>,
}

impl PullConsumer {
    pub fn start(config: PullConsumerConfig) -> Result<PullConsumer, ClientError> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::Config(
                "no NameServer address: set NAMESRV_ADDR or namesrv_addrs".into(),
            ));
        }
        let rebalance_now = Arc::new(Notify::new());
        let handler: Arc<dyn RequestHandler> = Arc::new(Notices(rebalance_now.clone()));
        let inner = Arc::new(Inner {
            client: RemotingClient::new(ClientConfig::default(), Some(handler)),
            client_id: group::client_id(&config.group),
            routes: Mutex::default(),
            positions: Mutex::default(),
            turn: Mutex::new(0),
            subscriptions: Mutex::default(),
            assigned: Mutex::new(false),
            rebalance_now,
            stop: Flag::new(),
            tasks: Mutex::default(),
            config,
        });
        if inner.config.auto_commit {
            let task = tokio::spawn(commit_loop(inner.clone(), inner.stop.clone()));
            lock(&inner.tasks).push(task);
        }
        Ok(PullConsumer { inner })
    }

    /// Joins the group for `topic`: the group's members share its queues (rebalance every
    /// `rebalance_interval`, and at once when the broker says the group changed), and `poll`
    /// reads this member's share. Not with `assign` on the same consumer.
    pub async fn subscribe(
        &self,
        topic: &str,
        subscription: impl Into<Subscription>,
    ) -> Result<(), ClientError> {
        if *lock(&self.inner.assigned) {
            return Err(ClientError::Invalid("subscribe and assign are mutually exclusive".into()));
        }
        let subscription = subscription.into();
        subscription.validate(topic)?;
        let first = {
            let mut subscriptions = lock(&self.inner.subscriptions);
            let first = subscriptions.is_empty();
            subscriptions.insert(topic.to_owned(), subscription);
            first
        };
        rebalance(&self.inner).await;
        if first {
            let task = tokio::spawn(rebalance_loop(self.inner.clone(), self.inner.stop.clone()));
            lock(&self.inner.tasks).push(task);
        }
        Ok(())
    }

    /// The queues this consumer reads now.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        lock(&self.inner.positions).keys().cloned().collect()
    }

    /// Where the next poll reads each queue from: what `commit` would commit now.
    pub fn positions(&self) -> Vec<(MessageQueue, i64)> {
        PullConsumer::positions_of(&self.inner)
    }

    fn positions_of(inner: &Inner) -> Vec<(MessageQueue, i64)> {
        lock(&inner.positions).iter().map(|(q, p)| (q.clone(), p.next)).collect()
    }

    async fn route(&self, topic: &str) -> Result<TopicRoute, ClientError> {
        if let Some(route) = lock(&self.inner.routes).get(topic) {
            return Ok(route.clone());
        }
        let config = &self.inner.config;
        let data =
            route::fetch(&self.inner.client, &config.namesrv_addrs, topic, config.request_timeout)
                .await?
                .ok_or_else(|| ClientError::NoRoute(topic.to_owned()))?;
        let route = TopicRoute::from_data(topic, &data, i32::MAX);
        lock(&self.inner.routes).insert(topic.to_owned(), route.clone());
        Ok(route)
    }

    /// Where to pull `queue`: the broker its last answer suggested while the route has it.
    fn broker_of(&self, queue: &MessageQueue, suggested: i64) -> Result<String, ClientError> {
        let routes = lock(&self.inner.routes);
        routes
            .get(&queue.topic)
            .and_then(|r| r.reader(&queue.broker_name, suggested))
            .cloned()
            .ok_or_else(|| ClientError::NoRoute(format!("{queue}")))
    }

    /// The topic's readable queues.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.route(topic).await?.read_queues)
    }

    /// Takes these queues, each from the group's committed offset (or `consume_from`).
    pub async fn assign(&self, queues: &[MessageQueue]) -> Result<(), ClientError> {
        if !lock(&self.inner.subscriptions).is_empty() {
            return Err(ClientError::Invalid("subscribe and assign are mutually exclusive".into()));
        }
        let first = !std::mem::replace(&mut *lock(&self.inner.assigned), true);
        if first {
            let task = tokio::spawn(route_loop(self.inner.clone(), self.inner.stop.clone()));
            lock(&self.inner.tasks).push(task);
        }
        let config = &self.inner.config;
        let mut positions = BTreeMap::new();
        for queue in queues {
            self.route(&queue.topic).await?;
            let broker = self.broker_of(queue, MASTER_ID)?;
            let next = start_offset(
                &self.inner.client,
                &broker,
                &config.group,
                queue,
                config.consume_from,
                config.request_timeout,
            )
            .await?;
            positions.insert(queue.clone(), Position { next, from: MASTER_ID });
        }
        *lock(&self.inner.positions) = positions;
        Ok(())
    }

    /// Moves a queue's position: the next poll reads from `offset`.
    pub fn seek(&self, queue: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        let mut positions = lock(&self.inner.positions);
        let position = positions
            .get_mut(queue)
            .ok_or_else(|| ClientError::Invalid(format!("{queue} is not assigned")))?;
        position.next = offset;
        Ok(())
    }

    /// The next batch from one of the assigned queues, taking them in turn; waits up to
    /// `timeout` (long polling the last queue tried) when none has anything new.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ReceivedMessage>, ClientError> {
        let queues: Vec<MessageQueue> = lock(&self.inner.positions).keys().cloned().collect();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let start = {
            let mut turn = lock(&self.inner.turn);
            *turn = (*turn + 1) % queues.len();
            *turn
        };
        for i in 0..queues.len() {
            let queue = &queues[(start + i) % queues.len()];
            let last = i + 1 == queues.len();
            let hold = if last { timeout } else { Duration::ZERO };
            let got = self.pull(queue, hold).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        Ok(Vec::new())
    }

    async fn pull(
        &self,
        queue: &MessageQueue,
        hold: Duration,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let Some(position) = lock(&self.inner.positions).get(queue).copied() else {
            return Ok(Vec::new());
        };
        let broker = self.broker_of(queue, position.from)?;
        let subscription = lock(&self.inner.subscriptions)
            .get(&queue.topic)
            .cloned()
            .unwrap_or_else(|| Subscription::tag(SUB_ALL));
        let pull = QueuePull {
            group: &self.inner.config.group,
            queue,
            offset: position.next,
            batch: self.inner.config.pull_batch,
            hold,
            expression: &subscription.expression,
            expression_type: subscription.expression_type.name(),
            timeout: self.inner.config.request_timeout + hold,
            lite: true,
        };
        let answer = pull_queue(&self.inner.client, &broker, &pull).await?;
        let mut messages = answer.messages;
        messages.retain(|m| subscription.accepts(m.tags()));
        if let Some(position) = lock(&self.inner.positions).get_mut(queue) {
            // A seek during the pull wins over the pull's answer.
            if position.next == pull.offset {
                position.next = answer.next;
            }
            position.from = answer.suggested;
        }
        Ok(messages)
    }

    /// Commits every queue's position.
    pub async fn commit(&self) -> Result<(), ClientError> {
        commit_all(&self.inner).await
    }

    /// Stops the background tasks, commits, leaves the group (subscribe mode), then closes
    /// the connections.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        inner.stop.set();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        let committed = self.commit().await;
        if !lock(&inner.subscriptions).is_empty() {
            let brokers = brokers(inner);
            let (group, timeout) = (&inner.config.group, inner.config.request_timeout);
            group::unregister(&inner.client, &brokers, &inner.client_id, group, timeout).await;
        }
        inner.client.shutdown();
        committed
    }
}

/// Commits every position.
async fn commit_all(inner: &Inner) -> Result<(), ClientError> {
    let positions = PullConsumer::positions_of(inner);
    for (queue, offset) in positions {
        commit_one(inner, &queue, offset).await?;
    }
    Ok(())
}

async fn commit_one(inner: &Inner, queue: &MessageQueue, offset: i64) -> Result<(), ClientError> {
    // To the group's master only, as RocketMQ's clients commit: a slave copies its master's.
    let broker = lock(&inner.routes)
        .get(&queue.topic)
        .and_then(|r| r.masters.get(&queue.broker_name).cloned())
        .ok_or_else(|| ClientError::NoRoute(format!("{queue}")))?;
    let group = &inner.config.group;
    if !raw::commit_offset(&inner.client, &broker, group, &queue.topic, queue.queue_id, offset)
        .await
    {
        return Err(ClientError::Transport(format!("offset of {queue} not committed")));
    }
    Ok(())
}

async fn commit_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(inner.config.commit_interval) => {}
        }
        if let Err(e) = commit_all(&inner).await {
            tracing::debug!(error = %e, "auto-commit failed; the next one tries again");
        }
    }
}

async fn refresh_routes<'a>(inner: &Inner, topics: impl Iterator<Item = &'a String>) {
    let (client, config) = (&inner.client, &inner.config);
    route::refresh(client, &config.namesrv_addrs, config.request_timeout, topics, &inner.routes)
        .await;
}

/// Assign mode: the assigned queues' routes, fetched every `rebalance_interval` (RocketMQ's
/// clients refresh every route they use every 30 s).
async fn route_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(inner.config.rebalance_interval) => {}
        }
        let topics: BTreeSet<String> =
            lock(&inner.positions).keys().map(|q| q.topic.clone()).collect();
        refresh_routes(&inner, topics.iter()).await;
    }
}

async fn rebalance_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = inner.rebalance_now.notified() => {}
            () = tokio::time::sleep(inner.config.rebalance_interval) => {}
        }
        rebalance(&inner).await;
    }
}

/// Every broker serving a subscribed topic, slaves too.
fn brokers(inner: &Inner) -> BTreeSet<String> {
    route::all_brokers(&lock(&inner.routes))
}

/// One round of subscribe mode: fresh routes, a heartbeat, then this member's share of each
/// subscribed topic; a queue let go is committed first so that its next owner goes on from
/// there.
async fn rebalance(inner: &Inner) {
    let subscriptions = lock(&inner.subscriptions).clone();
    let config = &inner.config;
    refresh_routes(inner, subscriptions.keys()).await;
    let member = Member {
        client_id: &inner.client_id,
        group: &config.group,
        consume_type: "CONSUME_ACTIVELY",
        message_model: "CLUSTERING",
        consume_from: config.consume_from.rocketmq_name(),
        subscriptions: &subscriptions,
    };
    group::heartbeat(&inner.client, &brokers(inner), &member, config.request_timeout).await;
    for topic in subscriptions.keys() {
        if let Err(e) = take_share(inner, topic).await {
            tracing::debug!(%topic, error = %e, "rebalance failed; the next round retries");
        }
    }
}

async fn take_share(inner: &Inner, topic: &str) -> Result<(), ClientError> {
    let Some(route) = lock(&inner.routes).get(topic).cloned() else { return Ok(()) };
    let Some(broker) = route.readers.values().next() else { return Ok(()) };
    let config = &inner.config;
    let members =
        group::members(&inner.client, broker, &config.group, config.request_timeout).await?;
    let mine: BTreeSet<MessageQueue> =
        allocate(config.strategy, &inner.client_id, &route.read_queues, &members)
            .into_iter()
            .collect();
    let held: Vec<(MessageQueue, Position)> = lock(&inner.positions)
        .iter()
        .filter(|(q, _)| q.topic == topic)
        .map(|(q, p)| (q.clone(), *p))
        .collect();
    for (queue, position) in held.iter().filter(|(q, _)| !mine.contains(q)) {
        commit_one(inner, queue, position.next).await?;
        lock(&inner.positions).remove(queue);
    }
    for queue in mine.iter().filter(|q| !held.iter().any(|(h, _)| h == *q)) {
        let Some(broker) = route.readers.get(&queue.broker_name) else { continue };
        let from = config.consume_from;
        let next =
            start_offset(&inner.client, broker, &config.group, queue, from, config.request_timeout)
                .await?;
        lock(&inner.positions).insert(queue.clone(), Position { next, from: MASTER_ID });
    }
    Ok(())
}

/// Where a group starts on a queue: its committed offset, else where `from` says.
pub(crate) async fn start_offset(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    queue: &MessageQueue,
    from: ConsumeFrom,
    timeout: Duration,
) -> Result<i64, ClientError> {
    let committed =
        raw::query_committed_offset(client, broker, group, &queue.topic, queue.queue_id)
            .await
            .map_err(ClientError::Transport)?;
    match committed {
        Some(offset) => Ok(offset),
        None => edge_offset(client, broker, queue, from, timeout).await,
    }
}

/// Where `from` says a queue is read from when nothing was committed.
pub(crate) async fn edge_offset(
    client: &RemotingClient,
    broker: &str,
    queue: &MessageQueue,
    from: ConsumeFrom,
    timeout: Duration,
) -> Result<i64, ClientError> {
    let (topic, queue_id) = (queue.topic.clone(), queue.queue_id);
    let request = match from {
        ConsumeFrom::Last => {
            let header = GetMaxOffsetRequestHeader { topic, queue_id, committed: None };
            RemotingCommand::request(request::GET_MAX_OFFSET).with_header(&header)
        }
        ConsumeFrom::First => {
            let header = TopicQueueRequestHeader { topic, queue_id };
            RemotingCommand::request(request::GET_MIN_OFFSET).with_header(&header)
        }
        ConsumeFrom::Timestamp(timestamp) => {
            let header =
                SearchOffsetRequestHeader { topic, queue_id, timestamp, boundary_type: None };
            RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(&header)
        }
    };
    let reply = crate::call(client, broker, request, timeout).await?;
    reply
        .header::<OffsetResponseHeader>()
        .map(|h| h.offset)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// One pull of one queue.
pub(crate) struct QueuePull<'a> {
    pub group: &'a str,
    pub queue: &'a MessageQueue,
    pub offset: i64,
    pub batch: i32,
    /// How long the broker may hold the pull when nothing is new (zero: answer at once).
    pub hold: Duration,
    /// The subscription's expression and its type (`TAG`, `SQL92`), sent with the pull.
    pub expression: &'a str,
    pub expression_type: &'a str,
    pub timeout: Duration,
    /// Sent as LITE_PULL_MESSAGE with the lite flag (the lite pull consumer), else as
    /// PULL_MESSAGE (the push consumer).
    pub lite: bool,
}

/// What a pull of one queue answered.
pub(crate) struct QueueAnswer {
    pub messages: Vec<ReceivedMessage>,
    /// Where the next pull starts.
    pub next: i64,
    /// The broker id to pull from next (`suggestWhichBrokerId`).
    pub suggested: i64,
    /// The broker moved the position (PULL_OFFSET_MOVED: the offset was outside the queue, or
    /// an operator reset the group's offset): `next` is where to go, back or forward.
    pub moved: bool,
}

/// Pulls a queue.
pub(crate) async fn pull_queue(
    client: &RemotingClient,
    broker: &str,
    pull: &QueuePull<'_>,
) -> Result<QueueAnswer, ClientError> {
    let queue = pull.queue;
    let header = PullMessageRequestHeader {
        consumer_group: pull.group.to_owned(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        queue_offset: pull.offset,
        max_msg_nums: pull.batch,
        sys_flag: pull_sys_flag::SUBSCRIPTION
            | if pull.hold.is_zero() { 0 } else { pull_sys_flag::SUSPEND }
            | if pull.lite { pull_sys_flag::LITE } else { 0 },
        commit_offset: 0,
        suspend_timeout_millis: pull.hold.as_millis() as i64,
        subscription: Some(pull.expression.to_owned()),
        sub_version: 0,
        expression_type: Some(pull.expression_type.to_owned()),
        max_msg_bytes: None,
    };
    let code = if pull.lite { request::LITE_PULL_MESSAGE } else { request::PULL_MESSAGE };
    let request = RemotingCommand::request(code).with_header(&header);
    let reply = client
        .invoke(broker, request, pull.timeout)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    match reply.code {
        response::SUCCESS
        | response::PULL_NOT_FOUND
        | response::PULL_RETRY_IMMEDIATELY
        | response::PULL_OFFSET_MOVED => {
            let answer: PullMessageResponseHeader =
                reply.header().map_err(|e| ClientError::Protocol(e.to_string()))?;
            let messages = if reply.code == response::SUCCESS {
                decode(queue, &reply.body_bytes())?
            } else {
                Vec::new()
            };
            Ok(QueueAnswer {
                messages,
                next: answer.next_begin_offset,
                suggested: answer.suggest_which_broker_id,
                moved: reply.code == response::PULL_OFFSET_MOVED,
            })
        }
        code => Err(ClientError::Broker { code, remark: reply.remark.unwrap_or_default() }),
    }
}

/// The records of a pull answer as messages.
pub(crate) fn decode(
    queue: &MessageQueue,
    body: &Bytes,
) -> Result<Vec<ReceivedMessage>, ClientError> {
    decode_each(body, |_, _| queue.clone())
}

/// The records of an answer as messages, each of the queue `queue_of(topic, queue id)` names.
pub(crate) fn decode_each(
    body: &Bytes,
    queue_of: impl Fn(&str, i32) -> MessageQueue,
) -> Result<Vec<ReceivedMessage>, ClientError> {
    let mut out = Vec::new();
    for record in scan_records(body) {
        let record = record.map_err(|at| {
            ClientError::Protocol(format!("pull answer holds an invalid record at byte {at}"))
        })?;
        let props: BTreeMap<String, String> = properties(record.properties)
            .map(|(k, v)| {
                (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())
            })
            .collect();
        let queue = queue_of(record.topic_str(), record.queue_id);
        let body = body_as_sent(record.sys_flag, body, record.body).map_err(|e| {
            ClientError::Protocol(format!(
                "the message at offset {} of {queue}: {e}",
                record.queue_offset
            ))
        })?;
        out.push(ReceivedMessage {
            topic: props.get("RETRY_TOPIC").cloned().unwrap_or_else(|| queue.topic.clone()),
            queue,
            queue_offset: record.queue_offset,
            msg_id: props.get("UNIQ_KEY").cloned().unwrap_or_default(),
            offset_msg_id: offset_msg_id(record.store_host, record.physical_offset),
            body,
            properties: props,
            reconsume_times: record.reconsume_times,
            born_timestamp: record.born_timestamp,
            store_timestamp: record.store_timestamp,
            commit_log_offset: record.physical_offset,
        });
    }
    Ok(out)
}
