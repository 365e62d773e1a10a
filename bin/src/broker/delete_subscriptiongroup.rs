//! DELETE_SUBSCRIPTIONGROUP (207): an admin removes a consumer group's settings and, with
//! `cleanOffset`, its committed offsets. Deleting a group this broker does not know succeeds,
//! as in RocketMQ.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::DeleteSubscriptionGroupRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: DeleteSubscriptionGroupRequestHeader = decode(request)?;
    let group = header.group_name.as_str();
    tracing::info!(group, caller = %conn.peer(), "deleting a subscription group");
    if broker.groups().remove(group, now_millis()) {
        broker.groups_changed();
    }
    if header.clean_offset == Some(true) && broker.offsets().remove_group(group) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    broker.groups_durable()?;
    answered(success())
}
