//! GET_TIMER_CHECK_POINT (60): the master's timer checkpoint, encoded as RocketMQ's
//! `TimerCheckpoint.encode` (seven i64) with Petrel's commit-log point and marker after them
//! (RocketMQ reads the first 56 bytes). A slave's timer service asks for it every 3 s to
//! follow its master's wheel, and passes over the slots before its read position: the answer
//! is the newest page whose puts are all confirmed (the commit log was flushed to below the
//! confirm offset when it was written), so that a slave never passes over a put its master
//! made but could lose in a failover.

use std::sync::Arc;

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome, Refusal};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let confirmed = broker.store().confirm_offset();
    let mut written = lock(&broker.timer_checkpoints);
    while written.get(1).is_some_and(|(_, end)| *end <= confirmed) {
        written.pop_front();
    }
    let newest = written.front().filter(|(_, end)| *end <= confirmed).map(|(page, _)| *page);
    drop(written);
    let Some(checkpoint) = newest else {
        let why = "no timer checkpoint: this broker's timer wheel is not delivering (it is a \
                   slave, timerWheelEnable is false, or none of its pages is confirmed yet)";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    answered(success().with_body(checkpoint.encode().to_vec()))
}
