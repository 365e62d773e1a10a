//! LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42): an ordered consumer locks the queues it is to
//! take, renews the locks every 20 s and unlocks a queue it lets go (`RebalanceLockManager`;
//! the lock table is `petrel_core::broker::queue_locks`). The lock answer names the queues
//! the client holds now; the unlock answer is SUCCESS with no body. As RocketMQ's, the locks
//! live in memory: after a restart the members lock again.

use std::sync::Arc;

use petrel_core::broker::queue_locks::{LockBatchBody, LockedQueues, QueueName};
use petrel_core::broker::Refusal;
use petrel_core::client::MessageQueue;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle_lock(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let (body, queues) = parse(request, "LockBatchRequestBody")?;
    let now = now_millis();
    let mut locks = lock(&broker.queue_locks);
    locks.forget_lapsed(now);
    let held = locks.lock(&body.consumer_group, &body.client_id, &queues, now);
    drop(locks);
    tracing::debug!(
        group = body.consumer_group,
        client = body.client_id,
        asked = queues.len(),
        ?held,
        "queues locked"
    );
    let answer = LockedQueues { lock_ok_mq_set: held.iter().map(QueueName::from).collect() };
    answered(success().with_body(to_json(&answer, JsonStyle::Fastjson)))
}

pub(super) fn handle_unlock(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let (body, queues) = parse(request, "UnlockBatchRequestBody")?;
    let released = lock(&broker.queue_locks).unlock(&body.consumer_group, &body.client_id, &queues);
    tracing::debug!(
        group = body.consumer_group,
        client = body.client_id,
        ?queues,
        released,
        "queues unlocked"
    );
    answered(success())
}

/// The body, and its queues; a body that does not parse, or names no group or no client, is
/// refused with the reason.
fn parse(
    request: &RemotingCommand,
    name: &str,
) -> Result<(LockBatchBody, Vec<MessageQueue>), Refusal> {
    let body: LockBatchBody = from_json(&request.body).map_err(|e| {
        Refusal::new(response::SYSTEM_ERROR, format!("{name} body is not valid JSON: {e}"))
    })?;
    if body.consumer_group.is_empty() || body.client_id.is_empty() {
        let why = format!("{name} names no consumerGroup or no clientId");
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let queues = body.mq_set.iter().map(MessageQueue::from).collect();
    Ok((body, queues))
}
