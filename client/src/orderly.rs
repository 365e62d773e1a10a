//! Orderly consumption for the push consumer (RocketMQ's `MessageListenerOrderly`): each queue
//! is consumed by one task, one message after the other, in queue order. In clustering a member
//! takes a queue only once the broker's lock on it is granted (LOCK_BATCH_MQ), renews its locks
//! every 20 s, consumes a queue only within 30 s of its last grant, and unlocks a queue it lets
//! go (UNLOCK_BATCH_MQ) once the message in consumption is done and its offset committed. A
//! message the listener suspends is offered again a second later, never skipped.
//!
//! The per-queue decisions are `petrel_core::client::orderly`'s; this module holds the
//! listener's API, a queue's shared state and the lock requests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use petrel_core::broker::queue_locks::{LockBatchBody, LockedQueues, QueueName};
use petrel_core::client::orderly::OrderlyQueue;
use petrel_core::client::MessageQueue;
use petrel_core::Millis;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::RemotingClient;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pull_consumer::ReceivedMessage;
use crate::ClientError;

/// What an orderly listener says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderlyResult {
    Success,
    /// `SUSPEND_CURRENT_QUEUE_A_MOMENT`: the queue stops for a second and the same message
    /// comes again; after the group's `max_reconsume_times` it goes to the dead-letter queue.
    Suspend,
}

/// What an orderly listener is told besides the message.
#[derive(Debug, Clone)]
pub struct OrderlyContext {
    /// The queue the message is from; no other message of it is in consumption.
    pub queue: MessageQueue,
    /// How often this message was suspended before.
    pub suspensions: u32,
    /// When this member asked for the broker's lock this consumption relies on (clustering
    /// only): the lock was granted no earlier, and another member can be granted the queue
    /// only a minute after it unless this member lets it go or the broker restarts.
    pub lock_asked_at: Option<Instant>,
    /// When the broker's grant of that lock reached this member: it was granted no later.
    pub lock_answered_at: Option<Instant>,
}

/// The application's orderly consumption code.
pub trait OrderlyListener: Send + Sync + 'static {
    fn consume(&self, message: &ReceivedMessage, context: &OrderlyContext) -> OrderlyResult;
}

impl<F> OrderlyListener for F
where
    F: Fn(&ReceivedMessage, &OrderlyContext) -> OrderlyResult + Send + Sync + 'static,
{
    fn consume(&self, message: &ReceivedMessage, context: &OrderlyContext) -> OrderlyResult {
        self(message, context)
    }
}

/// One queue of an orderly member, shared by its puller, its consumer task, the lock renewals
/// and a release.
pub(crate) struct OrderlyShared {
    /// Messages shared, so that taking one to consume outside the lock copies nothing.
    pub state: Mutex<OrderlyQueue<Arc<ReceivedMessage>>>,
    /// Woken by a pull and by a lock answer.
    pub changed: Notify,
    /// Held while a message is in consumption: a release waits for it before it commits.
    pub consuming: tokio::sync::Mutex<()>,
    pub listener: Arc<dyn OrderlyListener>,
}

impl OrderlyShared {
    pub fn new(
        state: OrderlyQueue<Arc<ReceivedMessage>>,
        listener: Arc<dyn OrderlyListener>,
    ) -> OrderlyShared {
        OrderlyShared {
            state: Mutex::new(state),
            changed: Notify::new(),
            consuming: tokio::sync::Mutex::new(()),
            listener,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, OrderlyQueue<Arc<ReceivedMessage>>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn lock_answered(&self, asked_at: Millis, held: bool, now: Millis) {
        self.state().lock_answered(asked_at, held, now);
        self.changed.notify_one();
    }
}

/// The member's clock for lock times: milliseconds since it started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> Millis {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(Millis::MAX)
    }

    pub fn instant(&self, at: Millis) -> Instant {
        self.0 + Duration::from_millis(at)
    }
}

/// Who asks for locks, and where.
pub(crate) struct Locker<'a> {
    pub client: &'a RemotingClient,
    pub group: &'a str,
    pub client_id: &'a str,
    pub timeout: Duration,
}

impl Locker<'_> {
    /// Asks `master` to lock `queues` for this member: the queues it holds now.
    pub async fn lock(
        &self,
        master: &str,
        queues: &[MessageQueue],
    ) -> Result<BTreeSet<MessageQueue>, ClientError> {
        let reply = self.invoke(request::LOCK_BATCH_MQ, master, queues).await?;
        let held: LockedQueues = from_json(&reply.body).map_err(|e| {
            ClientError::Protocol(format!("LOCK_BATCH_MQ answer from {master}: {e}"))
        })?;
        Ok(held.lock_ok_mq_set.iter().map(MessageQueue::from).collect())
    }

    /// Lets go of `queues` on `master`.
    pub async fn unlock(&self, master: &str, queues: &[MessageQueue]) -> Result<(), ClientError> {
        self.invoke(request::UNLOCK_BATCH_MQ, master, queues).await.map(|_| ())
    }

    async fn invoke(
        &self,
        code: i32,
        master: &str,
        queues: &[MessageQueue],
    ) -> Result<RemotingCommand, ClientError> {
        let body = LockBatchBody {
            client_id: self.client_id.to_owned(),
            consumer_group: self.group.to_owned(),
            mq_set: queues.iter().map(QueueName::from).collect(),
            only_this_broker: false,
        };
        let request = RemotingCommand::request(code).with_body(to_json(&body, JsonStyle::Fastjson));
        let reply = self
            .client
            .invoke(master, request, self.timeout)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if reply.code != response::SUCCESS {
            let remark = reply.remark.unwrap_or_default();
            return Err(ClientError::Broker { code: reply.code, remark });
        }
        Ok(reply)
    }
}

/// `queues` grouped by broker name, as lock requests go (one per master).
pub(crate) fn by_broker<'a>(
    queues: impl IntoIterator<Item = &'a MessageQueue>,
) -> BTreeMap<String, Vec<MessageQueue>> {
    let mut grouped: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
    for queue in queues {
        grouped.entry(queue.broker_name.clone()).or_default().push(queue.clone());
    }
    grouped
}
