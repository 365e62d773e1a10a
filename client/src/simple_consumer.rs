//! The POP consumer (RocketMQ 5's `SimpleConsumer`, over the remoting protocol's POP codes;
//! docs/pop.md): `receive` pops messages of a topic from its brokers in turn, each hidden from
//! the group for an invisible duration; `ack` says one was consumed; `change_invisible_duration`
//! hides it longer. What is not acknowledged in time comes again, through the group's pop
//! retry topic, to whichever member receives next. Members own no queues: any number of them
//! share a topic with no rebalance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use petrel_core::broker::pop::{ExtraInfo, TopicKind, POP_MAX_MESSAGES};
use petrel_core::broker::pop_order::order_count_of;
use petrel_core::client::MessageQueue;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use petrel_net::transport::{ClientConfig, RemotingClient};

use crate::pull_consumer::{decode_each, ReceivedMessage};
use crate::route::{self, TopicRoute};
use crate::subscription::Subscription;
use crate::ClientError;

/// A POP consumer's settings.
#[derive(Debug, Clone)]
pub struct SimpleConsumerConfig {
    pub namesrv_addrs: Vec<String>,
    pub group: String,
    pub topic: String,
    /// What is wanted of the topic (`"*".into()` for everything; TAG expressions).
    pub subscription: Subscription,
    /// How long `receive` waits at a broker for messages (`awaitDuration`).
    pub await_duration: Duration,
    /// Where a group with no position starts: the queue's first message, or its last.
    pub from_first: bool,
    pub request_timeout: Duration,
    /// Receive in order (`order=true`): a queue's messages come in queue order, and its next
    /// ones only once these are acknowledged or their invisible time ran out; then the same
    /// ones come again, their `reconsume_times` counting the earlier hand-outs.
    pub orderly: bool,
}

impl Default for SimpleConsumerConfig {
    fn default() -> Self {
        SimpleConsumerConfig {
            namesrv_addrs: crate::namesrv_from_env(),
            group: "DEFAULT_CONSUMER".to_owned(),
            topic: String::new(),
            subscription: Subscription::tag("*"),
            await_duration: Duration::from_secs(5),
            from_first: true,
            request_timeout: Duration::from_secs(3),
            orderly: false,
        }
    }
}

/// A message `receive` handed out, with what `ack` and `change_invisible_duration` name.
#[derive(Debug, Clone)]
pub struct PoppedMessage {
    /// Its `topic` is the topic subscribed to; its `queue` the queue it is in (a pop retry
    /// topic's when it came back).
    pub message: ReceivedMessage,
    /// Its handle (`extraInfo`).
    pub handle: String,
    /// The broker that handed it out.
    broker: String,
}

/// A running POP consumer.
pub struct SimpleConsumer {
    config: SimpleConsumerConfig,
    client: RemotingClient,
    route: Mutex<Option<TopicRoute>>,
    turn: AtomicUsize,
    /// When it started: part of its attempt ids (orderly receives).
    started_ms: i64,
}

impl SimpleConsumer {
    pub fn start(config: SimpleConsumerConfig) -> Result<SimpleConsumer, ClientError> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::Config(
                "no NameServer address: set NAMESRV_ADDR or namesrv_addrs".into(),
            ));
        }
        config.subscription.validate(&config.topic)?;
        Ok(SimpleConsumer {
            client: RemotingClient::new(ClientConfig::default(), None),
            route: Mutex::new(None),
            turn: AtomicUsize::new(0),
            started_ms: now_ms(),
            config,
        })
    }

    /// Up to `max` messages (at most 32), each hidden from the group for `invisible`; waits up
    /// to `await_duration` at one broker (the brokers take turns) when none is there.
    pub async fn receive(
        &self,
        max: usize,
        invisible: Duration,
    ) -> Result<Vec<PoppedMessage>, ClientError> {
        let route = self.route().await?;
        let brokers: Vec<(&String, &String)> = route.masters.iter().collect();
        if brokers.is_empty() {
            return Err(ClientError::NoRoute(self.config.topic.clone()));
        }
        let (name, addr) = brokers[self.turn.fetch_add(1, Ordering::Relaxed) % brokers.len()];
        let max = i32::try_from(max).unwrap_or(POP_MAX_MESSAGES).clamp(1, POP_MAX_MESSAGES);
        let invisible_ms = i64::try_from(invisible.as_millis()).unwrap_or(i64::MAX);
        let poll_ms = i64::try_from(self.config.await_duration.as_millis()).unwrap_or(0);
        let header = PopMessageRequestHeader {
            consumer_group: self.config.group.clone(),
            topic: self.config.topic.clone(),
            queue_id: -1,
            max_msg_nums: max,
            invisible_time: invisible_ms,
            poll_time: poll_ms,
            born_time: Some(now_ms()),
            init_mode: if self.config.from_first { 0 } else { 1 },
            exp_type: Some(self.config.subscription.expression_type.name().to_owned()),
            exp: Some(self.config.subscription.expression.clone()),
            order: self.config.orderly.then_some(true),
            attempt_id: self.config.orderly.then(|| self.attempt_id()),
        };
        let request = RemotingCommand::request(request::POP_MESSAGE).with_header(&header);
        let wait = self.config.request_timeout + self.config.await_duration;
        let reply = self.invoke(addr, request, wait).await?;
        match reply.code {
            response::SUCCESS => self.popped(name, addr, &reply),
            response::POLLING_TIMEOUT | response::POLLING_FULL | response::PULL_NOT_FOUND => {
                Ok(Vec::new())
            }
            code => Err(ClientError::Broker { code, remark: reply.remark.unwrap_or_default() }),
        }
    }

    /// The message was consumed: it does not come again.
    pub async fn ack(&self, popped: &PoppedMessage) -> Result<(), ClientError> {
        let queue = &popped.message.queue;
        let header = AckMessageRequestHeader {
            consumer_group: self.config.group.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            extra_info: popped.handle.clone(),
            offset: popped.message.queue_offset,
        };
        let request = RemotingCommand::request(request::ACK_MESSAGE).with_header(&header);
        let reply = self.invoke(&popped.broker, request, self.config.request_timeout).await?;
        match reply.code {
            response::SUCCESS => Ok(()),
            code => Err(ClientError::Broker { code, remark: reply.remark.unwrap_or_default() }),
        }
    }

    /// Hides the message for `invisible` from now; the message with its new handle.
    pub async fn change_invisible_duration(
        &self,
        popped: &PoppedMessage,
        invisible: Duration,
    ) -> Result<PoppedMessage, ClientError> {
        let queue = &popped.message.queue;
        let header = ChangeInvisibleTimeRequestHeader {
            consumer_group: self.config.group.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            extra_info: popped.handle.clone(),
            offset: popped.message.queue_offset,
            invisible_time: i64::try_from(invisible.as_millis()).unwrap_or(i64::MAX),
        };
        let request =
            RemotingCommand::request(request::CHANGE_MESSAGE_INVISIBLETIME).with_header(&header);
        let reply = self.invoke(&popped.broker, request, self.config.request_timeout).await?;
        if reply.code != response::SUCCESS {
            let remark = reply.remark.unwrap_or_default();
            return Err(ClientError::Broker { code: reply.code, remark });
        }
        let answer: ChangeInvisibleTimeResponseHeader =
            reply.header().map_err(|e| ClientError::Protocol(e.to_string()))?;
        let old =
            ExtraInfo::parse(&popped.handle).map_err(|e| ClientError::Protocol(e.to_string()))?;
        // The new checkpoint starts at the message itself (`changeInvisibleTimeAsync`).
        let handle = ExtraInfo {
            start_offset: popped.message.queue_offset,
            pop_time: answer.pop_time,
            invisible_time: answer.invisible_time,
            revive_qid: answer.revive_qid,
            ..old
        };
        Ok(PoppedMessage { handle: handle.to_string(), ..popped.clone() })
    }

    /// A fresh `attemptId`, in the layout of a message id, unique in this process (a counter
    /// all consumers share) and across processes (the pid and this consumer's start time).
    fn attempt_id(&self) -> String {
        static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let count = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        let seed = (self.started_ms as u32) ^ (count >> 16) as u32;
        let since = u64::try_from(now_ms() - self.started_ms).unwrap_or(0);
        let pid = petrel_net::process::id() as u16;
        petrel_core::broker::unique_key([127, 0, 0, 1], pid, seed, since, count as u16)
    }

    pub async fn shutdown(self) {
        self.client.shutdown();
    }

    async fn route(&self) -> Result<TopicRoute, ClientError> {
        if let Some(route) = self.route.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(route);
        }
        let (client, config) = (&self.client, &self.config);
        let data =
            route::fetch(client, &config.namesrv_addrs, &config.topic, config.request_timeout)
                .await?
                .ok_or_else(|| ClientError::NoRoute(config.topic.clone()))?;
        let route = TopicRoute::from_data(&config.topic, &data, i32::MAX);
        *self.route.lock().unwrap_or_else(|p| p.into_inner()) = Some(route.clone());
        Ok(route)
    }

    async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let reply = self.client.invoke(addr, request, timeout).await;
        if reply.is_err() {
            // The broker may have moved: ask the NameServer again next time.
            *self.route.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        reply.map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// The messages of a POP answer, each with the handle its client builds
    /// (`processPopResponse`).
    fn popped(
        &self,
        broker_name: &str,
        addr: &str,
        reply: &RemotingCommand,
    ) -> Result<Vec<PoppedMessage>, ClientError> {
        let answer: PopMessageResponseHeader =
            reply.header().map_err(|e| ClientError::Protocol(e.to_string()))?;
        let starts = start_offsets(answer.start_offset_info.as_deref().unwrap_or_default())?;
        let messages = decode_each(&reply.body_bytes(), |topic, queue_id| {
            MessageQueue::new(topic, broker_name, queue_id)
        })?;
        let mut out = Vec::with_capacity(messages.len());
        for mut message in messages {
            let kind = TopicKind::of(&message.queue.topic);
            let queue_id = message.queue.queue_id;
            let start = starts.get(&(kind, queue_id)).copied().unwrap_or(message.queue_offset);
            let handle = ExtraInfo {
                start_offset: start,
                pop_time: answer.pop_time,
                invisible_time: answer.invisible_time,
                revive_qid: answer.revive_qid,
                kind,
                broker_name: broker_name.to_owned(),
                queue_id,
                offset: message.queue_offset,
            };
            message.topic = self.config.topic.clone();
            if let Some(counts) = answer.order_count_info.as_deref() {
                let count = order_count_of(counts, kind, queue_id, message.queue_offset);
                message.reconsume_times = count.unwrap_or(message.reconsume_times);
            }
            out.push(PoppedMessage {
                message,
                handle: handle.to_string(),
                broker: addr.to_owned(),
            });
        }
        Ok(out)
    }
}

/// `startOffsetInfo` ("retry queueId startOffset;...") by (kind, queue).
fn start_offsets(info: &str) -> Result<BTreeMap<(TopicKind, i32), i64>, ClientError> {
    let bad = || ClientError::Protocol(format!("startOffsetInfo is not valid: {info:?}"));
    let mut starts = BTreeMap::new();
    for item in info.split(';').filter(|i| !i.is_empty()) {
        let fields: Vec<&str> = item.split(' ').collect();
        let [kind, queue, start] = fields[..] else { return Err(bad()) };
        let kind = TopicKind::parse(kind).map_err(|_| bad())?;
        starts.insert((kind, queue.parse().map_err(|_| bad())?), start.parse().map_err(|_| bad())?);
    }
    Ok(starts)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets_read_rocketmqs_header() {
        let starts = start_offsets("0 1 100;1 0 7").unwrap();
        assert_eq!(starts[&(TopicKind::Normal, 1)], 100);
        assert_eq!(starts[&(TopicKind::RetryV1, 0)], 7);
        assert!(start_offsets("").unwrap().is_empty());
        assert!(start_offsets("0 1").is_err());
        assert!(start_offsets("9 1 2").is_err());
    }
}
