//! The push consumer: it joins a consumer group, takes its share of the subscribed topics'
//! queues (rebalance every 20 s and whenever the broker says the group changed), pulls each
//! queue with long polling, hands messages to the listener on a bounded pool of workers, sends
//! failed ones back for a later retry, and commits offsets every 5 s and at shutdown. Started
//! with an [`OrderlyListener`] it consumes each queue in order under the broker's queue locks
//! instead ([`crate::orderly`]).
//!
//! The decisions are `petrel_core::client`'s: `allocate` for the share, `ProcessQueue` for which
//! offset may be committed (never past a message still in consumption), `OrderlyQueue` for
//! what an orderly member may consume.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use petrel_core::broker::filter::SUB_ALL;
use petrel_core::client::allocate::{allocate, Strategy};
use petrel_core::client::orderly::{After, OrderlyQueue, Outcome, Take, LOCK_RENEW_MS};
use petrel_core::client::process::ProcessQueue;
use petrel_core::client::MessageQueue;
use petrel_core::model::MASTER_ID;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerSendMsgBackRequestHeader;
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{ClientConfig, RemotingClient, RequestHandler};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::group::{self, Member, Notices};
use crate::local_offsets::LocalOffsets;
use crate::orderly::{
    by_broker, Clock, Locker, OrderlyContext, OrderlyListener, OrderlyResult, OrderlyShared,
};
use crate::pull_consumer::{
    edge_offset, pull_queue, start_offset as start, ConsumeFrom, QueueAnswer, QueuePull,
    ReceivedMessage,
};
use crate::route::{self, TopicRoute};
use crate::subscription::Subscription;
use crate::{raw, ClientError};

mod running;

/// What the listener says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    Success,
    /// Failed: send it back, to come again after the group's retry delay.
    Later,
}

/// The application's consumption code.
pub trait Listener: Send + Sync + 'static {
    fn consume(&self, message: &ReceivedMessage) -> ConsumeResult;
}

impl<F: Fn(&ReceivedMessage) -> ConsumeResult + Send + Sync + 'static> Listener for F {
    fn consume(&self, message: &ReceivedMessage) -> ConsumeResult {
        self(message)
    }
}

/// How a group's members share its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageModel {
    /// Each message goes to one member; the broker keeps the group's offsets.
    Clustering,
    /// Each message goes to every member; each keeps its own offsets in a local file, and a
    /// message its listener fails is dropped, not retried (as in RocketMQ).
    Broadcasting,
}

impl MessageModel {
    /// RocketMQ's name, as heartbeats and running info carry it.
    pub fn rocketmq_name(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// A push consumer's settings, with RocketMQ's defaults.
#[derive(Debug, Clone)]
pub struct PushConsumerConfig {
    pub namesrv_addrs: Vec<String>,
    pub group: String,
    /// Topic → what is wanted of it (`"*".into()` for everything).
    pub subscriptions: BTreeMap<String, Subscription>,
    pub consume_from: ConsumeFrom,
    pub message_model: MessageModel,
    /// Broadcasting: offsets are kept in `{local_offsets_dir}/{instance_name}/{group}/
    /// offsets.json`; two members of a group on one host need different instance names.
    pub local_offsets_dir: PathBuf,
    pub instance_name: String,
    pub strategy: Strategy,
    /// `consumeThreadMax`: messages consumed at once.
    pub workers: usize,
    /// `pullThresholdForQueue`: pulling a queue pauses at this many messages in consumption.
    pub queue_messages_max: usize,
    /// `pullThresholdSizeForQueue`: or at this many body bytes in consumption (100 MiB).
    pub queue_bytes_max: usize,
    /// `maxReconsumeTimes`, then the dead-letter topic. `None` (RocketMQ's -1): 16 times for
    /// a concurrent listener, without end for an orderly one.
    pub max_reconsume_times: Option<i32>,
    pub rebalance_interval: Duration,
    /// `persistConsumerOffsetInterval`: 5 s.
    pub commit_interval: Duration,
    /// How long the broker may hold a pull (`brokerSuspendMaxTimeMillis`: 15 s).
    pub hold: Duration,
    pub request_timeout: Duration,
    /// How often an orderly member renews its queue locks (`rebalance.lockInterval`: 20 s).
    pub lock_renew_interval: Duration,
}

impl Default for PushConsumerConfig {
    fn default() -> Self {
        PushConsumerConfig {
            namesrv_addrs: crate::namesrv_from_env(),
            group: "DEFAULT_CONSUMER".to_owned(),
            subscriptions: BTreeMap::new(),
            consume_from: ConsumeFrom::Last,
            message_model: MessageModel::Clustering,
            local_offsets_dir: std::env::var_os("HOME")
                .map_or_else(PathBuf::new, PathBuf::from)
                .join(".rocketmq_offsets"),
            instance_name: "DEFAULT".to_owned(),
            strategy: Strategy::Averagely,
            workers: 20,
            queue_messages_max: 1_000,
            queue_bytes_max: 100 << 20,
            max_reconsume_times: None,
            rebalance_interval: Duration::from_secs(20),
            commit_interval: Duration::from_secs(5),
            hold: Duration::from_secs(15),
            request_timeout: Duration::from_secs(3),
            lock_renew_interval: Duration::from_millis(LOCK_RENEW_MS),
        }
    }
}

/// The application's listener.
#[derive(Clone)]
enum Consume {
    Concurrent(Arc<dyn Listener>),
    Orderly(Arc<dyn OrderlyListener>),
}

/// A queue's messages between pull and listener.
#[derive(Clone)]
enum Process {
    Concurrent(Arc<Mutex<ProcessQueue>>, Arc<dyn Listener>),
    Orderly(Arc<OrderlyShared>),
}

impl Process {
    fn commit_offset(&self) -> i64 {
        match self {
            Process::Concurrent(process, _) => lock(process).commit_offset(),
            Process::Orderly(queue) => queue.state().commit_offset(),
        }
    }

    fn next(&self) -> i64 {
        match self {
            Process::Concurrent(process, _) => lock(process).next(),
            Process::Orderly(queue) => queue.state().next(),
        }
    }

    /// Whether the queue may be pulled now: not full, and in order under a valid lock.
    fn may_pull(&self, config: &PushConsumerConfig, now: u64) -> bool {
        let (messages, bytes) = (config.queue_messages_max, config.queue_bytes_max);
        match self {
            Process::Concurrent(process, _) => !lock(process).is_full(messages, bytes),
            Process::Orderly(queue) => {
                let state = queue.state();
                state.lock_valid(now) && !state.is_full(messages, bytes)
            }
        }
    }
}

/// How long letting a queue go waits for its message in consumption.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

struct Owned {
    process: Process,
    stop: SetOnDrop,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    config: PushConsumerConfig,
    client: RemotingClient,
    client_id: String,
    consume: Consume,
    clock: Clock,
    owned: Mutex<BTreeMap<MessageQueue, Owned>>,
    routes: Mutex<BTreeMap<String, TopicRoute>>,
    workers: Arc<Semaphore>,
    rebalance_now: Arc<Notify>,
    /// Held by a round of lock renewals, and by a release from its queue's removal to its
    /// unlock: no renewal locks a queue again once it is being let go.
    renewals: tokio::sync::Mutex<()>,
    /// Broadcasting's offsets; `None` in clustering, where the broker keeps them.
    local: Option<LocalOffsets>,
    /// When it started (wall ms): its clock's zero.
    started_ms: u64,
}

impl Inner {
    /// Whether this member locks its queues: an orderly member of a clustering group.
    fn locks_queues(&self) -> bool {
        matches!(self.consume, Consume::Orderly(_))
            && self.config.message_model == MessageModel::Clustering
    }

    fn locker(&self) -> Locker<'_> {
        Locker {
            client: &self.client,
            group: &self.config.group,
            client_id: &self.client_id,
            timeout: self.config.request_timeout,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running push consumer.
pub struct PushConsumer {
    inner: Arc<Inner>,
    stop: SetOnDrop,
    tasks: Vec<JoinHandle<()>>,
}

impl PushConsumer {
    /// Joins the group and starts consuming, messages of a queue in parallel.
    pub fn start(
        config: PushConsumerConfig,
        listener: impl Listener,
    ) -> Result<PushConsumer, ClientError> {
        PushConsumer::start_with(config, Consume::Concurrent(Arc::new(listener)))
    }

    /// Joins the group and starts consuming each queue in order, one message at a time, under
    /// the broker's lock on the queue in clustering.
    pub fn start_orderly(
        config: PushConsumerConfig,
        listener: impl OrderlyListener,
    ) -> Result<PushConsumer, ClientError> {
        PushConsumer::start_with(config, Consume::Orderly(Arc::new(listener)))
    }

    fn start_with(
        config: PushConsumerConfig,
        consume: Consume,
    ) -> Result<PushConsumer, ClientError> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::Config(
                "no NameServer address: set NAMESRV_ADDR or namesrv_addrs".into(),
            ));
        }
        if config.subscriptions.is_empty() {
            return Err(ClientError::Config(
                "a push consumer needs at least one subscription".into(),
            ));
        }
        for (topic, subscription) in &config.subscriptions {
            subscription.validate(topic)?;
        }
        let local = match config.message_model {
            MessageModel::Clustering => None,
            MessageModel::Broadcasting => Some(LocalOffsets::open(
                &config
                    .local_offsets_dir
                    .join(&config.instance_name)
                    .join(&config.group)
                    .join("offsets.json"),
            )?),
        };
        let rebalance_now = Arc::new(Notify::new());
        let started = Arc::new(std::sync::OnceLock::new());
        let handler: Arc<dyn RequestHandler> = Arc::new(running::PushHandler {
            notices: Notices(rebalance_now.clone()),
            inner: started.clone(),
        });
        let inner = Arc::new(Inner {
            client: RemotingClient::new(ClientConfig::default(), Some(handler)),
            client_id: group::client_id(&config.group),
            consume,
            clock: Clock::start(),
            owned: Mutex::default(),
            routes: Mutex::default(),
            workers: Arc::new(Semaphore::new(config.workers.max(1))),
            rebalance_now,
            renewals: tokio::sync::Mutex::new(()),
            local,
            started_ms: crate::producer::now_millis(),
            config,
        });
        let _ = started.set(Arc::downgrade(&inner));
        let stop = SetOnDrop::new();
        let mut tasks = vec![
            tokio::spawn(rebalance_loop(inner.clone(), stop.flag())),
            tokio::spawn(commit_loop(inner.clone(), stop.flag())),
        ];
        if inner.locks_queues() {
            tasks.push(tokio::spawn(lock_loop(inner.clone(), stop.flag())));
        }
        Ok(PushConsumer { inner, stop, tasks })
    }

    /// The client id the group knows this member by.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The queues this member consumes now.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        lock(&self.inner.owned).keys().cloned().collect()
    }

    /// Stops pulling, lets the messages in consumption finish, commits, and leaves the group.
    pub async fn shutdown(self) {
        self.stop.set();
        for task in self.tasks {
            let _ = task.await;
        }
        let owned: Vec<(MessageQueue, Owned)> =
            std::mem::take(&mut *lock(&self.inner.owned)).into_iter().collect();
        for (_, queue) in &owned {
            queue.stop.set();
        }
        for (_, queue) in owned.iter() {
            queue.tasks.iter().for_each(JoinHandle::abort);
        }
        let workers = u32::try_from(self.inner.config.workers.max(1)).unwrap_or(u32::MAX);
        let _all_done = self.inner.workers.acquire_many(workers).await;
        let offsets = owned.iter().map(|(q, o)| (q.clone(), o.process.commit_offset()));
        commit(&self.inner, offsets.collect()).await;
        let inner = &self.inner;
        if inner.locks_queues() {
            unlock(inner, owned.iter().map(|(q, _)| q)).await;
        }
        let (group, timeout) = (&inner.config.group, inner.config.request_timeout);
        group::unregister(&inner.client, &brokers(inner), &inner.client_id, group, timeout).await;
        self.inner.client.shutdown();
    }
}

/// The subscriptions as the group registers them: the user's, and in clustering the group's
/// retry topic.
fn subscriptions(config: &PushConsumerConfig) -> BTreeMap<String, Subscription> {
    let mut all = config.subscriptions.clone();
    if config.message_model == MessageModel::Clustering {
        all.insert(format!("%RETRY%{}", config.group), Subscription::tag(SUB_ALL));
    }
    all
}

async fn rebalance_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        refresh_routes(&inner).await;
        heartbeat(&inner).await;
        for topic in subscriptions(&inner.config).keys() {
            if let Err(e) = rebalance(&inner, topic).await {
                tracing::debug!(%topic, error = %e, "rebalance failed; next round retries");
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = inner.rebalance_now.notified() => {}
            () = tokio::time::sleep(inner.config.rebalance_interval) => {}
        }
    }
}

async fn heartbeat(inner: &Inner) {
    let config = &inner.config;
    let subscriptions = subscriptions(config);
    let member = Member {
        client_id: &inner.client_id,
        group: &config.group,
        consume_type: "CONSUME_PASSIVELY",
        message_model: config.message_model.rocketmq_name(),
        consume_from: config.consume_from.rocketmq_name(),
        subscriptions: &subscriptions,
    };
    group::heartbeat(&inner.client, &brokers(inner), &member, config.request_timeout).await;
}

/// Every broker serving a subscribed topic, slaves too.
fn brokers(inner: &Inner) -> BTreeSet<String> {
    route::all_brokers(&lock(&inner.routes))
}

async fn refresh_routes(inner: &Inner) {
    let config = &inner.config;
    let topics = subscriptions(config);
    let (client, timeout) = (&inner.client, config.request_timeout);
    route::refresh(client, &config.namesrv_addrs, timeout, topics.keys(), &inner.routes).await;
}

/// Takes this member's share of `topic`'s queues, letting go of the others.
async fn rebalance(inner: &Arc<Inner>, topic: &str) -> Result<(), ClientError> {
    let Some(route) = lock(&inner.routes).get(topic).cloned() else { return Ok(()) };
    let mine: BTreeSet<MessageQueue> = match inner.config.message_model {
        MessageModel::Broadcasting => route.read_queues.iter().cloned().collect(),
        MessageModel::Clustering => {
            let Some(broker) = route.readers.values().next() else { return Ok(()) };
            let timeout = inner.config.request_timeout;
            let members =
                group::members(&inner.client, broker, &inner.config.group, timeout).await?;
            allocate(inner.config.strategy, &inner.client_id, &route.read_queues, &members)
                .into_iter()
                .collect()
        }
    };
    let current: Vec<MessageQueue> =
        lock(&inner.owned).keys().filter(|q| q.topic == topic).cloned().collect();
    for queue in current.iter().filter(|q| !mine.contains(*q)) {
        release(inner, queue).await;
    }
    let new: Vec<MessageQueue> = mine.into_iter().filter(|q| !current.contains(q)).collect();
    let asked_at = inner.clock.now();
    let held = if inner.locks_queues() { lock_new(inner, &route, &new).await } else { new };
    let lock = (asked_at, inner.clock.now());
    for queue in held {
        let Some(broker) = route.readers.get(&queue.broker_name).cloned() else { continue };
        let start = start_offset(inner, &broker, &queue).await?;
        take(inner, queue, start, lock);
    }
    Ok(())
}

/// Starts consuming `queue` from `start`; an orderly member's lock on it was asked for and
/// its grant answered at `(asked_at, answered_at)`.
fn take(inner: &Arc<Inner>, queue: MessageQueue, start: i64, (asked_at, answered_at): (u64, u64)) {
    let stop = SetOnDrop::new();
    let mut tasks = Vec::new();
    let process = match &inner.consume {
        Consume::Concurrent(listener) => {
            let process = Arc::new(Mutex::new(ProcessQueue::starting_at(start)));
            Process::Concurrent(process, listener.clone())
        }
        Consume::Orderly(listener) => {
            let mut state = OrderlyQueue::starting_at(start, inner.locks_queues());
            state.lock_answered(asked_at, true, answered_at);
            let shared = Arc::new(OrderlyShared::new(state, listener.clone()));
            let consumer =
                consume_in_order(inner.clone(), queue.clone(), shared.clone(), stop.flag());
            tasks.push(tokio::spawn(consumer));
            Process::Orderly(shared)
        }
    };
    let puller = pull_loop(inner.clone(), queue.clone(), process.clone(), stop.flag());
    tasks.push(tokio::spawn(puller));
    lock(&inner.owned).insert(queue, Owned { process, stop, tasks });
}

/// Lets go of `queue`: stops pulling, waits for an orderly member's message in consumption,
/// commits, and unlocks it on the broker.
async fn release(inner: &Inner, queue: &MessageQueue) {
    let Some(process) = lock(&inner.owned).get(queue).map(|o| o.process.clone()) else { return };
    // RocketMQ's `removeUnnecessaryMessageQueue`: a queue whose message is still in
    // consumption after a second is let go at a later rebalance.
    let _consumed = match &process {
        Process::Orderly(shared) => {
            match tokio::time::timeout(RELEASE_WAIT, shared.consuming.lock()).await {
                Ok(consumed) => Some(consumed),
                Err(_) => {
                    tracing::debug!(%queue, "a message is still in consumption; let go later");
                    return;
                }
            }
        }
        Process::Concurrent(..) => None,
    };
    // No renewal may lock the queue again between its removal and its unlock.
    let _renewals = inner.renewals.lock().await;
    let Some(owned) = lock(&inner.owned).remove(queue) else { return };
    owned.stop.set();
    commit(inner, vec![(queue.clone(), owned.process.commit_offset())]).await;
    if inner.locks_queues() {
        unlock(inner, [queue]).await;
    }
}

/// The queues of `new` whose broker granted this member their locks.
async fn lock_new(inner: &Inner, route: &TopicRoute, new: &[MessageQueue]) -> Vec<MessageQueue> {
    let mut held = Vec::new();
    for (broker_name, queues) in by_broker(new) {
        let Some(master) = route.masters.get(&broker_name) else { continue };
        match inner.locker().lock(master, &queues).await {
            Ok(granted) => held.extend(queues.into_iter().filter(|q| granted.contains(q))),
            Err(e) => {
                tracing::debug!(%broker_name, error = %e, "lock failed; next rebalance retries")
            }
        }
    }
    held
}

/// Lets go of `queues` on their masters; a failed unlock lapses on the broker within a minute.
async fn unlock<'a>(inner: &Inner, queues: impl IntoIterator<Item = &'a MessageQueue>) {
    for (broker_name, queues) in by_broker(queues) {
        let Some(master) = master_of(inner, &queues[0]) else { continue };
        if let Err(e) = inner.locker().unlock(&master, &queues).await {
            tracing::debug!(%broker_name, error = %e, "unlock failed; the locks lapse");
        }
    }
}

fn master_of(inner: &Inner, queue: &MessageQueue) -> Option<String> {
    lock(&inner.routes).get(&queue.topic).and_then(|r| r.masters.get(&queue.broker_name).cloned())
}

/// Renews an orderly member's locks every `lock_renew_interval`; a queue whose lock the broker
/// refused is not consumed until a later renewal gets it back.
async fn lock_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(inner.config.lock_renew_interval) => {}
        }
        let _renewing = inner.renewals.lock().await;
        let owned: Vec<(MessageQueue, Arc<OrderlyShared>)> = lock(&inner.owned)
            .iter()
            .filter_map(|(q, o)| match &o.process {
                Process::Orderly(shared) => Some((q.clone(), shared.clone())),
                Process::Concurrent(..) => None,
            })
            .collect();
        for (broker_name, queues) in by_broker(owned.iter().map(|(q, _)| q)) {
            let Some(master) = master_of(&inner, &queues[0]) else { continue };
            let asked_at = inner.clock.now();
            match inner.locker().lock(&master, &queues).await {
                Ok(granted) => {
                    let now = inner.clock.now();
                    for (queue, shared) in owned.iter().filter(|(q, _)| queues.contains(q)) {
                        shared.lock_answered(asked_at, granted.contains(queue), now);
                    }
                }
                Err(e) => tracing::debug!(%broker_name, error = %e, "lock renewal failed"),
            }
        }
    }
}

/// Consumes `queue` in order until told to stop: one message at a time, while the lock is
/// valid; a suspended message again a second later; one suspended too often to the
/// dead-letter queue.
async fn consume_in_order(
    inner: Arc<Inner>,
    queue: MessageQueue,
    shared: Arc<OrderlyShared>,
    stop: Flag,
) {
    let max = max_reconsume_times(&inner.config).map_or(u32::MAX, |m| m.unsigned_abs());
    while !stop.is_set() {
        // A worker first, so that the lock is judged valid when the listener runs.
        let Ok(permit) = inner.workers.acquire().await else { return };
        let consuming = shared.consuming.lock().await;
        let now = inner.clock.now();
        let taken = {
            let mut state = shared.state();
            let lock = (state.locked_from(), state.lock_answered_at());
            match state.take(now) {
                Take::Consume(offset, message, suspensions) => {
                    Ok((offset, message.clone(), suspensions, lock))
                }
                Take::Until(at) => Err(Duration::from_millis(at.saturating_sub(now))),
                Take::Idle => Err(Duration::from_secs(1)),
            }
        };
        let (offset, message, suspensions, (locked_from, answered_at)) = match taken {
            Ok(taken) if !stop.is_set() => taken,
            Ok(_) => return,
            Err(wait) => {
                drop((consuming, permit));
                tokio::select! {
                    biased;
                    _ = stop.wait() => return,
                    () = shared.changed.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        let context = OrderlyContext {
            queue: queue.clone(),
            suspensions,
            lock_asked_at: locked_from.map(|at| inner.clock.instant(at)),
            lock_answered_at: answered_at.map(|at| inner.clock.instant(at)),
        };
        let consumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.listener.consume(&message, &context)
        }));
        let outcome = match consumed {
            Ok(OrderlyResult::Success) => Outcome::Consumed,
            Ok(OrderlyResult::Suspend) => Outcome::Suspended,
            Err(_) => {
                tracing::warn!(%queue, offset, "the listener panicked; the message is suspended");
                Outcome::Suspended
            }
        };
        let now = inner.clock.now();
        let after = shared.state().finished(offset, outcome, now, max);
        if let After::SendBack(_) = after {
            let sent = send_back(&inner, &message, -1).await;
            let outcome = if sent { Outcome::Consumed } else { Outcome::SendBackFailed };
            shared.state().finished(offset, outcome, now, max);
        }
    }
}

/// Where a newly taken queue is read from: the committed offset (the group's on the broker,
/// or in broadcasting this member's own), else consume-from (the group's own retry topic
/// always from its start).
async fn start_offset(
    inner: &Inner,
    broker: &str,
    queue: &MessageQueue,
) -> Result<i64, ClientError> {
    let from = if queue.topic.starts_with("%RETRY%") {
        ConsumeFrom::First
    } else {
        inner.config.consume_from
    };
    let (client, config) = (&inner.client, &inner.config);
    match &inner.local {
        Some(local) => match local.get(queue) {
            Some(offset) => Ok(offset),
            None => edge_offset(client, broker, queue, from, config.request_timeout).await,
        },
        None => start(client, broker, &config.group, queue, from, config.request_timeout).await,
    }
}

/// Pulls one queue until told to stop, pausing while its process queue is full. Each pull
/// goes where the last answer suggested (the master, or a slave for a lagging consumer) as
/// the current route has it, so a queue whose master left the route is read from its slave.
async fn pull_loop(inner: Arc<Inner>, queue: MessageQueue, process: Process, stop: Flag) {
    let subscription = subscriptions(&inner.config)
        .remove(&queue.topic)
        .unwrap_or_else(|| Subscription::tag(SUB_ALL));
    let mut from = MASTER_ID;
    // Answers in a row this client could not read: warned of at the first and once a minute.
    let mut unreadable = 0u64;
    while !stop.is_set() {
        if !process.may_pull(&inner.config, inner.clock.now()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let broker = lock(&inner.routes)
            .get(&queue.topic)
            .and_then(|r| r.reader(&queue.broker_name, from).cloned());
        let offset = process.next();
        let pulled = tokio::select! {
            biased;
            _ = stop.wait() => return,
            pulled = pull(&inner, broker.as_deref(), &queue, offset, &subscription) => pulled,
        };
        if !matches!(pulled, Err(ClientError::Protocol(_))) {
            unreadable = 0;
        }
        match pulled {
            Ok(answer) if answer.moved => {
                from = answer.suggested;
                tracing::info!(%queue, from = offset, to = answer.next, "the broker moved the pull position");
                match &process {
                    Process::Concurrent(queue, _) => lock(queue).moved_to(answer.next),
                    Process::Orderly(shared) => shared.state().skip_to(answer.next),
                }
            }
            Ok(answer) => {
                from = answer.suggested;
                let wanted: Vec<ReceivedMessage> = answer
                    .messages
                    .into_iter()
                    .filter(|m| subscription.accepts(m.tags()))
                    .collect();
                accept(&inner, &process, wanted, answer.next).await;
            }
            // An answer this client cannot read (a body that does not inflate, say) holds the
            // queue until it can: said where it is seen, unlike an outage's failed pulls.
            Err(e @ ClientError::Protocol(_)) => {
                unreadable += 1;
                if unreadable % 60 == 1 {
                    tracing::warn!(%queue, error = %e, times = unreadable, "pull answer unreadable; trying again every second");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::debug!(%queue, error = %e, "pull failed; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Hands pulled messages on: to the workers, or in order to the queue's consumer task.
async fn accept(inner: &Arc<Inner>, process: &Process, wanted: Vec<ReceivedMessage>, next: i64) {
    match process {
        Process::Concurrent(queue, listener) => {
            lock(queue).pulled(wanted.iter().map(|m| (m.queue_offset, m.body.len())), next);
            for message in wanted {
                dispatch(inner, listener, message, queue.clone()).await;
            }
        }
        Process::Orderly(shared) => {
            let messages = wanted.into_iter().map(|m| (m.queue_offset, m.body.len(), Arc::new(m)));
            shared.state().pulled(messages, next);
            shared.changed.notify_one();
        }
    }
}

/// One pull from `broker` (none: the route has no broker of the queue's group now).
async fn pull(
    inner: &Inner,
    broker: Option<&str>,
    queue: &MessageQueue,
    offset: i64,
    subscription: &Subscription,
) -> Result<QueueAnswer, ClientError> {
    let broker = broker.ok_or_else(|| ClientError::NoRoute(format!("{queue}")))?;
    let pull = QueuePull {
        group: &inner.config.group,
        queue,
        offset,
        batch: 32,
        hold: inner.config.hold,
        expression: &subscription.expression,
        expression_type: subscription.expression_type.name(),
        timeout: inner.config.request_timeout + inner.config.hold,
        lite: false,
    };
    pull_queue(&inner.client, broker, &pull).await
}

/// Hands a message to the listener on a worker; a failure is sent back for a retry, and
/// consumed again here if even that fails.
async fn dispatch(
    inner: &Arc<Inner>,
    listener: &Arc<dyn Listener>,
    message: ReceivedMessage,
    process: Arc<Mutex<ProcessQueue>>,
) {
    let Ok(permit) = inner.workers.clone().acquire_owned().await else { return };
    let (inner, listener) = (inner.clone(), listener.clone());
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let consumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                listener.consume(&message)
            }));
            let result = consumed.unwrap_or_else(|_| {
                tracing::warn!(msg_id = %message.msg_id, "the listener panicked; consumed later");
                ConsumeResult::Later
            });
            if result == ConsumeResult::Later && inner.local.is_some() {
                tracing::warn!(msg_id = %message.msg_id, "broadcasting: consumption failed; the message is dropped");
            }
            let settled = result == ConsumeResult::Success || inner.local.is_some();
            if settled || send_back(&inner, &message, 0).await {
                lock(&process).done(message.queue_offset);
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// The configured `maxReconsumeTimes`; a negative one is RocketMQ's -1, the default.
fn max_reconsume_times(config: &PushConsumerConfig) -> Option<i32> {
    config.max_reconsume_times.filter(|max| *max >= 0)
}

/// Sends a message back for a retry after the group's delay (`delay_level` 0) or straight to
/// the dead-letter queue (-1); true when the broker took it.
async fn send_back(inner: &Inner, message: &ReceivedMessage, delay_level: i32) -> bool {
    let broker = lock(&inner.routes)
        .get(&message.queue.topic)
        .and_then(|r| r.readers.get(&message.queue.broker_name).cloned());
    let Some(broker) = broker else { return false };
    let header = ConsumerSendMsgBackRequestHeader {
        offset: message.commit_log_offset,
        group: inner.config.group.clone(),
        delay_level,
        origin_msg_id: Some(message.msg_id.clone()),
        origin_topic: Some(message.topic.clone()),
        unit_mode: Some(false),
        max_reconsume_times: Some(max_reconsume_times(&inner.config).unwrap_or(16)),
    };
    let request = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK).with_header(&header);
    matches!(inner.client.invoke(&broker, request, inner.config.request_timeout).await, Ok(r) if r.code == response::SUCCESS)
}

async fn commit_loop(inner: Arc<Inner>, stop: Flag) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(inner.config.commit_interval) => {}
        }
        let offsets: Vec<(MessageQueue, i64)> = lock(&inner.owned)
            .iter()
            .map(|(q, o)| (q.clone(), o.process.commit_offset()))
            .collect();
        commit(&inner, offsets).await;
    }
}

/// Moves the queues of `topic` this member holds to the offsets of `table` (an operator's
/// reset, RocketMQ's `MQClientInstance.resetOffset`): each is taken anew from its offset, its
/// old position dropped uncommitted, and the new offset committed at once (and by every
/// commit after, as the queue's own position, should that commit fail). An orderly queue's
/// message in consumption finishes first, so that the queue never has two listeners at once.
async fn reset(inner: &Arc<Inner>, topic: &str, table: Vec<(MessageQueue, i64)>) {
    for (queue, offset) in table.into_iter().filter(|(queue, _)| queue.topic == topic) {
        let Some(process) = lock(&inner.owned).get(&queue).map(|o| o.process.clone()) else {
            continue;
        };
        let consuming = match &process {
            Process::Orderly(shared) => Some(shared.consuming.lock().await),
            Process::Concurrent(..) => None,
        };
        let Some(old) = lock(&inner.owned).remove(&queue) else { continue };
        old.stop.set();
        let held = match &process {
            Process::Orderly(shared) => {
                let state = shared.state();
                (state.locked_from().unwrap_or(0), state.lock_answered_at().unwrap_or(0))
            }
            Process::Concurrent(..) => (0, 0),
        };
        tracing::info!(%queue, offset, "an operator reset the queue's offset");
        take(inner, queue.clone(), offset, held);
        drop(consuming);
        commit(inner, vec![(queue, offset)]).await;
    }
}

/// Commits, for each queue, the offset below which every message was consumed: to the
/// broker, or in broadcasting to the local file.
async fn commit(inner: &Inner, offsets: Vec<(MessageQueue, i64)>) {
    if let Some(local) = &inner.local {
        if let Err(e) = local.save(offsets) {
            tracing::warn!(error = %e, "offsets file not written; the next commit tries again");
        }
        return;
    }
    for (queue, offset) in offsets {
        // Offsets go to the group's master only, as RocketMQ's clients send them: a slave
        // copies its master's.
        let broker = lock(&inner.routes)
            .get(&queue.topic)
            .and_then(|r| r.masters.get(&queue.broker_name).cloned());
        let Some(broker) = broker else { continue };
        let group = &inner.config.group;
        if !raw::commit_offset(&inner.client, &broker, group, &queue.topic, queue.queue_id, offset)
            .await
        {
            tracing::debug!(%queue, offset, "offset commit failed; the next one carries it");
        }
    }
}
