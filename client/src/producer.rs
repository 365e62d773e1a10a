//! The producer: routes from the NameServers, queue selection with latency fault tolerance,
//! retries on another broker, sync / async / oneway / batch sends.
//!
//! The decisions (which queue, which brokers to avoid) are `petrel_core::client::fault`'s;
//! this is the shell that times sends and feeds it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use petrel_core::broker::batch::{encode_batch, BatchItem};
use petrel_core::broker::clients::{HeartbeatData, ProducerData};
use petrel_core::client::fault::FaultTable;
use petrel_core::client::MessageQueue;
use petrel_core::compression::{self, Codec};
use petrel_core::record::{put_property, sys_flag};
use petrel_core::Millis;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
    UnregisterClientRequestHeader,
};
use petrel_net::signal::{Flag, SetOnDrop};
use petrel_net::transport::{ClientConfig, RemotingClient, RequestHandler};
use tokio::task::JoinHandle;

use crate::message::{Message, SendResult, SendStatus, BODY_BYTES_MAX};
use crate::pull_consumer::ReceivedMessage;
use crate::reply::{self, ReplyHandler, Waiting};
use crate::route::{self, TopicRoute};
use crate::ClientError;

/// The topic a send to a topic not created yet borrows its route from.
const AUTO_CREATE_TOPIC: &str = "TBW102";

/// Broker answers after which a send is tried again on another broker (RocketMQ's
/// `retryResponseCodes`).
const RETRY_CODES: [i32; 5] = [
    response::TOPIC_NOT_EXIST,
    response::SERVICE_NOT_AVAILABLE,
    response::SYSTEM_ERROR,
    response::SYSTEM_BUSY,
    response::NO_PERMISSION,
];

/// A producer's settings, with RocketMQ's defaults.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// NameServer addresses; by default from `NAMESRV_ADDR` (`host:port;host:port`).
    pub namesrv_addrs: Vec<String>,
    pub group: String,
    /// `sendMsgTimeout`: 3 s.
    pub send_timeout: Duration,
    /// `retryTimesWhenSendFailed`: 2 more tries, each on another broker when there is one.
    pub retries: u32,
    /// `maxMessageSize`: 4 MiB; a batch is split to stay under it.
    pub body_bytes_max: usize,
    /// `pollNameServerInterval` and `heartbeatBrokerInterval`: 30 s.
    pub refresh_interval: Duration,
    /// `defaultTopicQueueNums`: queues of a topic the broker creates on first send.
    pub default_topic_queue_nums: i32,
    /// `sendLatencyFaultEnable`: avoid brokers that were slow or failed.
    pub latency_fault: bool,
    /// `topics` (RocketMQ 5): topics whose routes the producer learns as it starts, so that
    /// it heartbeats their brokers before its first send. A transaction producer that
    /// restarts with nothing to send still answers the checks of its group's transactions.
    pub topics: Vec<String>,
    /// `compressMsgBodyOverHowmuch`: a message's body of this many bytes or more is sent
    /// compressed (a batch never is); `usize::MAX` never.
    pub compress_body_bytes_min: usize,
    /// `compressType` (Java 5's `rocketmq.message.compressType`): ZLIB, which every RocketMQ
    /// client reads, unless every consumer of the topic reads LZ4 or ZSTD (Java 5 and
    /// Petrel's do; RocketMQ's C++ clients do not).
    pub compress_type: Codec,
    /// `compressLevel`: zlib's level, 0-9 (LZ4 has none; ZSTD is written at its fastest).
    pub compress_level: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            namesrv_addrs: crate::namesrv_from_env(),
            group: "DEFAULT_PRODUCER".to_owned(),
            send_timeout: Duration::from_secs(3),
            retries: 2,
            body_bytes_max: BODY_BYTES_MAX,
            refresh_interval: Duration::from_secs(30),
            default_topic_queue_nums: 4,
            latency_fault: true,
            topics: Vec::new(),
            compress_body_bytes_min: compression::COMPRESS_BODY_BYTES_MIN,
            compress_type: Codec::Zlib,
            compress_level: compression::COMPRESS_LEVEL,
        }
    }
}

/// The wall clock in milliseconds since the epoch.
pub(crate) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

struct Inner {
    config: ProducerConfig,
    client: RemotingClient,
    client_id: String,
    /// Every topic in use and its route, kept while the NameServers do not know the topic
    /// (its brokers still get heartbeats, so that they can reach a transaction producer).
    routes: Mutex<BTreeMap<String, TopicRoute>>,
    /// Topics in use whose route is in doubt (a send to it failed) or unknown (the
    /// NameServers did not know it): the next send and the refresher ask for it.
    stale: Mutex<BTreeSet<String>>,
    faults: Mutex<FaultTable>,
    /// Requests waiting for their replies.
    waiting: Arc<Waiting>,
    /// Clusters whose reply topic's brokers all had a heartbeat since the last request that
    /// got no reply.
    reply_ready: Mutex<BTreeSet<String>>,
    ids: AtomicU64,
    seed: u32,
    started: Millis,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running producer. Cheap to clone; clones share routes, connections and fault state.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    /// Shared by the clones: the refresher stops when the last one goes.
    stop: Arc<SetOnDrop>,
    refresher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Where a send goes.
enum Target<'a> {
    /// Round robin with fault tolerance.
    Any,
    /// The queue the sharding key hashes to.
    Key(&'a str),
    /// This queue.
    Queue(&'a MessageQueue),
}

impl Producer {
    /// Starts a producer: checks its settings and starts refreshing routes and sending
    /// heartbeats every `refresh_interval`.
    pub fn start(config: ProducerConfig) -> Result<Producer, ClientError> {
        Producer::start_with(config, None)
    }

    /// Starts a producer whose connections serve the brokers' requests with `handler`.
    pub(crate) fn start_with(
        config: ProducerConfig,
        handler: Option<Arc<dyn RequestHandler>>,
    ) -> Result<Producer, ClientError> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::Config(
                "no NameServer address: set NAMESRV_ADDR or namesrv_addrs".into(),
            ));
        }
        let started = now_millis();
        // Producers started in one millisecond of one process differ by it: a reply goes to
        // the client its request names.
        let instance = petrel_net::process::instance();
        let waiting = Arc::new(Waiting::default());
        let handler = ReplyHandler { waiting: waiting.clone(), other: handler };
        let inner = Arc::new(Inner {
            client: RemotingClient::new(ClientConfig::default(), Some(Arc::new(handler))),
            client_id: format!(
                "{}@{}#{started}#{instance}",
                petrel_net::process::id(),
                config.group
            ),
            routes: Mutex::default(),
            stale: Mutex::new(config.topics.iter().cloned().collect()),
            faults: Mutex::default(),
            waiting,
            reply_ready: Mutex::default(),
            ids: AtomicU64::new(0),
            seed: (started as u32) ^ petrel_net::process::id().rotate_left(16) ^ instance << 8,
            started,
            config,
        });
        let stop = SetOnDrop::new();
        let refresher = tokio::spawn(refresh(inner.clone(), stop.flag()));
        Ok(Producer {
            inner,
            stop: Arc::new(stop),
            refresher: Arc::new(Mutex::new(Some(refresher))),
        })
    }

    /// Sends and waits for the broker's answer, trying other brokers on failure.
    pub async fn send(&self, message: &Message) -> Result<SendResult, ClientError> {
        self.send_with(message, Target::Any, false).await
    }

    /// Sends `message` as a request and waits up to `timeout` for its reply (RocketMQ's
    /// `DefaultMQProducer.request`): the message carries a fresh CORRELATION_ID, this
    /// producer's client id as REPLY_TO_CLIENT, the timeout as TTL and the topic's cluster as
    /// CLUSTER; a responder answers with [`crate::reply::reply_to`], and the broker passes the
    /// reply here. Before the first request to a cluster, and after a request that got no
    /// reply, the producer heartbeats every broker of its reply topic (any of them may take
    /// the reply), and the refresher keeps doing so.
    pub async fn request(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<ReceivedMessage, ClientError> {
        message.validate(self.inner.config.body_bytes_max).map_err(ClientError::Invalid)?;
        let correlation = self.unique_key(&Message::default());
        // Forgets the request however this call ends, dropped by its caller included.
        let mut waiting = self.inner.waiting.wait_for(&correlation);
        let asked = async {
            let route = self.route(&message.topic).await?;
            let cluster = route.cluster.clone().ok_or_else(|| {
                ClientError::Protocol(format!("the route of {} names no cluster", message.topic))
            })?;
            self.reachable_for_replies(&cluster).await?;
            let mut request = message.clone();
            let properties = [
                (reply::CORRELATION_ID, correlation.clone()),
                (reply::REPLY_TO_CLIENT, self.inner.client_id.clone()),
                (reply::TTL, timeout.as_millis().to_string()),
                (reply::CLUSTER, cluster),
            ];
            for (name, value) in properties {
                request.properties.insert(name.to_owned(), value);
            }
            self.send_valid(&request, Target::Any, false).await?;
            waiting.reply().await.ok_or(ClientError::NoReply(timeout))
        };
        let outcome = tokio::time::timeout(timeout, asked).await;
        let outcome = outcome.unwrap_or(Err(ClientError::NoReply(timeout)));
        if let Err(ClientError::NoReply(_)) = outcome {
            // The broker may have lost this client's connection (a restart, a new
            // connection): the next request heartbeats the reply topics' brokers again.
            lock(&self.inner.reply_ready).clear();
        }
        outcome
    }

    /// Heartbeats every broker of `cluster`'s reply topic, unless all of them had one since
    /// the last request that got no reply; the refresher heartbeats them from then on, as the
    /// topic's route is kept. A broker that cannot be reached is left to the next request.
    async fn reachable_for_replies(&self, cluster: &str) -> Result<(), ClientError> {
        if lock(&self.inner.reply_ready).contains(cluster) {
            return Ok(());
        }
        let route = self.route(&format!("{cluster}_REPLY_TOPIC")).await?;
        let mut all = true;
        for addr in route.masters.values() {
            if let Err(e) = self.heartbeat(addr).await {
                tracing::debug!(broker = %addr, error = %e, "heartbeat before a request failed");
                all = false;
            }
        }
        if all {
            lock(&self.inner.reply_ready).insert(cluster.to_owned());
        }
        Ok(())
    }

    /// Sends a transaction's half message (TRAN_MSG, PGROUP, sysFlag PREPARED), as
    /// [`Producer::send`] sends.
    pub(crate) async fn send_prepared(&self, message: &Message) -> Result<SendResult, ClientError> {
        self.send_with(message, Target::Any, true).await
    }

    /// Sends to the queue `key` hashes to: messages of one key keep their order.
    pub async fn send_by_key(
        &self,
        message: &Message,
        key: &str,
    ) -> Result<SendResult, ClientError> {
        self.send_with(message, Target::Key(key), false).await
    }

    /// The topic's writable queues (RocketMQ's `fetchPublishMessageQueues`): a selector of
    /// its own picks one and sends with [`Producer::send_to`].
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.route(topic).await?.write_queues)
    }

    /// Sends to one queue.
    pub async fn send_to(
        &self,
        message: &Message,
        queue: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.send_with(message, Target::Queue(queue), false).await
    }

    /// Sends without waiting: the answer comes through the handle.
    pub fn send_async(&self, message: Message) -> JoinHandle<Result<SendResult, ClientError>> {
        let producer = self.clone();
        tokio::spawn(async move { producer.send(&message).await })
    }

    /// Sends once and waits for no answer: the message may be lost.
    pub async fn send_oneway(&self, message: &Message) -> Result<(), ClientError> {
        message.validate(self.inner.config.body_bytes_max).map_err(ClientError::Invalid)?;
        let route = self.route(&message.topic).await?;
        let queue = self.pick(&route, &Target::Any, None)?;
        let addr = master(&route, &queue)?;
        let properties = message.encode_properties(&self.unique_key(message));
        let (body, compressed) = self.outgoing_body(message);
        let code = send_code(message);
        let mut request = self.command(message, &queue, code, compressed, properties, body);
        request.mark_oneway();
        self.inner
            .client
            .invoke_oneway(&addr, request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    async fn send_with(
        &self,
        message: &Message,
        target: Target<'_>,
        prepared: bool,
    ) -> Result<SendResult, ClientError> {
        message.validate(self.inner.config.body_bytes_max).map_err(ClientError::Invalid)?;
        self.send_valid(message, target, prepared).await
    }

    /// [`Producer::send_with`] of a message already validated (a request, which carries
    /// properties only the client sets).
    async fn send_valid(
        &self,
        message: &Message,
        target: Target<'_>,
        prepared: bool,
    ) -> Result<SendResult, ClientError> {
        let mut avoid: Option<String> = None;
        let mut last_error = None;
        let (body, compressed) = self.outgoing_body(message);
        for _attempt in 0..=self.inner.config.retries {
            let route = self.route(&message.topic).await?;
            let queue = self.pick(&route, &target, avoid.as_deref())?;
            let addr = master(&route, &queue)?;
            let key = self.unique_key(message);
            let mut properties = message.encode_properties(&key);
            if prepared {
                let mut added = Vec::with_capacity(32 + self.group().len());
                put_property(&mut added, "TRAN_MSG", "true");
                put_property(&mut added, "PGROUP", self.group());
                properties.push_str(std::str::from_utf8(&added).expect("built from strings"));
            }
            let prepared = if prepared { sys_flag::TRANSACTION_PREPARED } else { 0 };
            let flags = compressed | prepared;
            let code = send_code(message);
            let request = self.command(message, &queue, code, flags, properties, body.clone());
            let started = now_millis();
            let outcome = self.exchange(&addr, request, &queue).await;
            let latency = now_millis().saturating_sub(started);
            let failed = outcome.is_err();
            self.record(&queue.broker_name, latency, failed);
            match outcome {
                Ok(mut results) => {
                    let mut result = results
                        .pop()
                        .ok_or_else(|| ClientError::Protocol("empty send answer".into()))?;
                    result.msg_id = key;
                    return Ok(result);
                }
                Err(error) if error.retryable() && matches!(target, Target::Any) => {
                    self.forget_route(&message.topic);
                    avoid = Some(queue.broker_name.clone());
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Protocol("no attempt made".into())))
    }

    /// Sends messages of one topic as SEND_BATCH_MESSAGE requests, split so that no request
    /// body exceeds `body_bytes_max`. Returns one result per message, in order.
    pub async fn send_batch(&self, messages: &[Message]) -> Result<Vec<SendResult>, ClientError> {
        let Some(first) = messages.first() else { return Ok(Vec::new()) };
        let max = self.inner.config.body_bytes_max;
        let mut encoded = Vec::with_capacity(messages.len());
        for message in messages {
            message.validate(max).map_err(ClientError::Invalid)?;
            if message.topic != first.topic || message.delay_level > 0 {
                return Err(ClientError::Invalid(
                    "a batch holds messages of one topic, none delayed".into(),
                ));
            }
            let properties = message.encode_properties(&self.unique_key(message));
            encoded.push((message, properties));
        }
        let mut results = Vec::with_capacity(messages.len());
        for chunk in split_batch(&encoded, max) {
            results.extend(self.send_chunk(&first.topic, chunk).await?);
        }
        Ok(results)
    }

    async fn send_chunk(
        &self,
        topic: &str,
        chunk: &[(&Message, String)],
    ) -> Result<Vec<SendResult>, ClientError> {
        let items: Vec<BatchItem<'_>> = chunk
            .iter()
            .map(|(m, p)| BatchItem { flag: m.flag, body: &m.body, properties: p.as_bytes() })
            .collect();
        let body = encode_batch(&items);
        let route = self.route(topic).await?;
        let queue = self.pick(&route, &Target::Any, None)?;
        let addr = master(&route, &queue)?;
        let mut request = self.command(
            chunk[0].0,
            &queue,
            request::SEND_BATCH_MESSAGE,
            0,
            String::new(),
            body.into(),
        );
        request.ext_fields.insert("m", "true");
        let started = now_millis();
        let outcome = self.exchange(&addr, request, &queue).await;
        self.record(&queue.broker_name, now_millis().saturating_sub(started), outcome.is_err());
        let mut results = outcome?;
        for (result, (_, properties)) in results.iter_mut().zip(chunk) {
            result.msg_id = unique_key_of(properties);
        }
        Ok(results)
    }

    /// Stops the refresher and tells the brokers the producer is gone.
    pub async fn shutdown(&self) {
        self.stop.set();
        let refresher = lock(&self.refresher).take();
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
        let masters: Vec<String> =
            lock(&self.inner.routes).values().flat_map(|r| r.masters.values().cloned()).collect();
        for addr in masters.iter().collect::<BTreeSet<_>>() {
            let header = UnregisterClientRequestHeader {
                client_id: self.inner.client_id.clone(),
                producer_group: Some(self.inner.config.group.clone()),
                consumer_group: None,
            };
            let request = RemotingCommand::request(request::UNREGISTER_CLIENT).with_header(&header);
            let _ = self.inner.client.invoke(addr, request, self.inner.config.send_timeout).await;
        }
        self.inner.client.shutdown();
    }
}

impl Producer {
    pub(crate) fn group(&self) -> &str {
        &self.inner.config.group
    }

    /// A heartbeat to `addr` now, rather than at the next refresh.
    pub(crate) async fn heartbeat(&self, addr: &str) -> Result<(), ClientError> {
        heartbeat(&self.inner, addr, heartbeat_body(&self.inner)).await
    }

    /// The master address of the broker holding `queue`.
    pub(crate) async fn master_of(&self, queue: &MessageQueue) -> Result<String, ClientError> {
        master(&self.route(&queue.topic).await?, queue)
    }

    /// Sends `request` to `addr` and waits for no answer.
    pub(crate) async fn oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<(), ClientError> {
        self.inner
            .client
            .invoke_oneway(addr, request)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// The topic's route: cached, or asked of the NameServers. A topic they do not know yet is
    /// sent to TBW102's brokers, which create it on the first send (`autoCreateTopicEnable`).
    /// A route in doubt is asked again; while the NameServers cannot say, it serves as it is.
    /// A topic stays in use either way: the refresher asks for its route until it has one
    /// (RocketMQ's client keeps a topic's route until a fresh one replaces it).
    async fn route(&self, topic: &str) -> Result<TopicRoute, ClientError> {
        let cached = lock(&self.inner.routes).get(topic).cloned();
        let cached = match cached {
            Some(route) if !lock(&self.inner.stale).contains(topic) => return Ok(route),
            cached => cached,
        };
        match self.fetch_route(topic, cached).await {
            Ok((route, true)) => {
                lock(&self.inner.routes).insert(topic.to_owned(), route.clone());
                lock(&self.inner.stale).remove(topic);
                Ok(route)
            }
            Ok((route, false)) => Ok(route),
            Err(error) => {
                lock(&self.inner.stale).insert(topic.to_owned());
                Err(error)
            }
        }
    }

    /// The topic's route from the NameServers, and whether it is fresh: `cached` when they
    /// cannot say.
    async fn fetch_route(
        &self,
        topic: &str,
        cached: Option<TopicRoute>,
    ) -> Result<(TopicRoute, bool), ClientError> {
        let config = &self.inner.config;
        let (client, namesrvs, timeout) =
            (&self.inner.client, &config.namesrv_addrs, config.send_timeout);
        let route = match (route::fetch(client, namesrvs, topic, timeout).await, cached) {
            (Ok(Some(data)), _) => TopicRoute::from_data(topic, &data, i32::MAX),
            (Ok(None) | Err(_), Some(cached)) => return Ok((cached, false)),
            (Err(error), None) => return Err(error),
            (Ok(None), None) => {
                match route::fetch(client, namesrvs, AUTO_CREATE_TOPIC, timeout).await? {
                    Some(data) => {
                        TopicRoute::from_data(topic, &data, config.default_topic_queue_nums)
                    }
                    None => return Err(ClientError::NoRoute(topic.to_owned())),
                }
            }
        };
        match route.write_queues.is_empty() {
            true => Err(ClientError::NoRoute(topic.to_owned())),
            false => Ok((route, true)),
        }
    }

    /// Puts the topic's route in doubt after a failed send.
    fn forget_route(&self, topic: &str) {
        lock(&self.inner.stale).insert(topic.to_owned());
    }

    fn pick(
        &self,
        route: &TopicRoute,
        target: &Target<'_>,
        avoid: Option<&str>,
    ) -> Result<MessageQueue, ClientError> {
        let picked = match target {
            Target::Queue(queue) => Some((*queue).clone()),
            Target::Key(key) => FaultTable::select_by_key(&route.write_queues, key),
            // With latency fault tolerance off nothing is recorded, so this is plain round
            // robin that still steps off the broker a failed attempt went to.
            Target::Any => {
                lock(&self.inner.faults).select(&route.write_queues, avoid, now_millis())
            }
        };
        picked.ok_or_else(|| {
            ClientError::NoRoute(
                route.write_queues.first().map_or_else(String::new, |q| q.topic.clone()),
            )
        })
    }

    fn record(&self, broker: &str, latency: Millis, failed: bool) {
        if self.inner.config.latency_fault {
            lock(&self.inner.faults).update(broker, latency, failed, now_millis());
        }
    }

    /// The id `message` keeps ([`Message::id`]), else a fresh UNIQ_KEY in RocketMQ's layout.
    fn unique_key(&self, message: &Message) -> String {
        if let Some(id) = &message.id {
            return id.clone();
        }
        let counter = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let since = now_millis().saturating_sub(self.inner.started);
        let seed = self.inner.seed ^ (counter >> 16) as u32;
        petrel_core::broker::unique_key(
            [127, 0, 0, 1],
            petrel_net::process::id() as u16,
            seed,
            since,
            counter as u16,
        )
    }

    /// The body a single message is sent with, and the SYSFLAG bits that say how: compressed
    /// once it is `compress_body_bytes_min` long, as RocketMQ's producers do.
    fn outgoing_body(&self, message: &Message) -> (bytes::Bytes, i32) {
        let config = &self.inner.config;
        if message.body.len() < config.compress_body_bytes_min {
            return (message.body.clone(), 0);
        }
        let codec = config.compress_type;
        let compressed = compression::compress(codec, &message.body, config.compress_level);
        (compressed.into(), codec.flags())
    }

    /// A send's request of `code` for `message` to `queue`.
    fn command(
        &self,
        message: &Message,
        queue: &MessageQueue,
        code: i32,
        sys_flag: i32,
        properties: String,
        body: bytes::Bytes,
    ) -> RemotingCommand {
        let header = SendMessageRequestHeader {
            producer_group: self.inner.config.group.clone(),
            topic: message.topic.clone(),
            default_topic: AUTO_CREATE_TOPIC.to_owned(),
            default_topic_queue_nums: self.inner.config.default_topic_queue_nums,
            queue_id: queue.queue_id,
            sys_flag,
            born_timestamp: now_millis() as i64,
            flag: message.flag,
            properties: (!properties.is_empty()).then_some(properties),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(code == request::SEND_BATCH_MESSAGE),
            broker_name: Some(queue.broker_name.clone()),
            ..SendMessageRequestHeader::default()
        };
        RemotingCommand::request(code)
            .with_header(&SendMessageRequestHeaderV2::from(header))
            .with_body(body)
    }

    /// One request to one broker; a batch's answer names every message.
    async fn exchange(
        &self,
        addr: &str,
        request: RemotingCommand,
        queue: &MessageQueue,
    ) -> Result<Vec<SendResult>, ClientError> {
        let timeout = self.inner.config.send_timeout;
        let reply = self
            .inner
            .client
            .invoke(addr, request, timeout)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = match reply.code {
            response::SUCCESS => SendStatus::Ok,
            response::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
            response::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
            response::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
            code => {
                return Err(ClientError::Broker { code, remark: reply.remark.unwrap_or_default() })
            }
        };
        let answer: SendMessageResponseHeader =
            reply.header().map_err(|e| ClientError::Protocol(format!("send answer: {e}")))?;
        let results = answer
            .msg_id
            .split(',')
            .enumerate()
            .map(|(i, id)| SendResult {
                status,
                msg_id: String::new(),
                offset_msg_id: id.to_owned(),
                queue: MessageQueue { queue_id: answer.queue_id, ..queue.clone() },
                queue_offset: answer.queue_offset + i as i64,
            })
            .collect();
        Ok(results)
    }
}

fn master(route: &TopicRoute, queue: &MessageQueue) -> Result<String, ClientError> {
    route.masters.get(&queue.broker_name).cloned().ok_or_else(|| {
        ClientError::NoRoute(format!(
            "{} (no master for broker {})",
            queue.topic, queue.broker_name
        ))
    })
}

fn unique_key_of(properties: &str) -> String {
    petrel_core::record::property(properties.as_bytes(), b"UNIQ_KEY")
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

/// The request code a send of `message` goes as: a reply's own, so that the broker passes it
/// to its requester.
fn send_code(message: &Message) -> i32 {
    match reply::is_reply(message) {
        true => request::SEND_REPLY_MESSAGE_V2,
        false => request::SEND_MESSAGE_V2,
    }
}

/// Splits encoded messages into runs whose batch bodies stay within `max` bytes (a message
/// too big for any batch was refused by validation).
fn split_batch<'a, 'm>(
    encoded: &'a [(&'m Message, String)],
    max: usize,
) -> Vec<&'a [(&'m Message, String)]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (message, properties)) in encoded.iter().enumerate() {
        let entry = 22 + message.body.len() + properties.len();
        if i > start && size + entry > max {
            chunks.push(&encoded[start..i]);
            (start, size) = (i, 0);
        }
        size += entry;
    }
    if start < encoded.len() {
        chunks.push(&encoded[start..]);
    }
    chunks
}

/// At once and then every `refresh_interval`: routes of the topics in use again, and a
/// heartbeat to each broker they name.
async fn refresh(inner: Arc<Inner>, stop: Flag) {
    loop {
        let mut topics: BTreeSet<String> = lock(&inner.routes).keys().cloned().collect();
        topics.extend(lock(&inner.stale).iter().cloned());
        for topic in topics {
            let fetched = route::fetch(
                &inner.client,
                &inner.config.namesrv_addrs,
                &topic,
                inner.config.send_timeout,
            )
            .await;
            if let Ok(Some(data)) = fetched {
                let fresh = TopicRoute::from_data(&topic, &data, i32::MAX);
                if !fresh.write_queues.is_empty() {
                    lock(&inner.stale).remove(&topic);
                    lock(&inner.routes).insert(topic, fresh);
                }
            }
        }
        let masters: BTreeSet<String> =
            lock(&inner.routes).values().flat_map(|r| r.masters.values().cloned()).collect();
        let body = heartbeat_body(&inner);
        for addr in masters {
            if let Err(e) = heartbeat(&inner, &addr, body.clone()).await {
                tracing::debug!(broker = %addr, error = %e, "heartbeat failed");
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(inner.config.refresh_interval) => {}
        }
    }
}

/// The heartbeat that says this client is a producer of its group.
fn heartbeat_body(inner: &Inner) -> Bytes {
    let data = HeartbeatData {
        client_id: inner.client_id.clone(),
        producer_data_set: vec![ProducerData { group_name: inner.config.group.clone() }],
        consumer_data_set: Vec::new(),
    };
    Bytes::from(to_json(&data, JsonStyle::Standard))
}

/// Sends `body` (`heartbeat_body`) to the broker at `addr`.
async fn heartbeat(inner: &Inner, addr: &str, body: Bytes) -> Result<(), ClientError> {
    let request = RemotingCommand::request(request::HEART_BEAT).with_body(body);
    crate::call(&inner.client, addr, request, inner.config.send_timeout).await.map(|_| ())
}

/// Whether RocketMQ's producer tries a send again after this broker answer.
pub fn is_retry_code(code: i32) -> bool {
    RETRY_CODES.contains(&code)
}
