//! DELETE_EXPIRED_COMMITLOG (329): an operator asks for expired commit-log files to go now
//! (mqadmin deleteExpiredCommitLog). As RocketMQ: the next cleanup passes (every 10 s) delete
//! files older than `fileReservedTime` whatever hour `deleteWhen` names, and the answer is
//! SUCCESS at once.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    tracing::info!(caller = %conn.peer(), "expired commit-log files to be deleted now");
    broker.store().delete_expired_manually();
    answered(success())
}
