//! CLONE_GROUP_OFFSET (314): a consumer group takes another's committed offsets of a topic,
//! or of every topic the other committed for. As RocketMQ: a topic this broker lacks is
//! skipped, and so (unless `offline`) is a topic the source group's live members do not
//! subscribe to; the answer is SUCCESS either way.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::CloneGroupOffsetRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: CloneGroupOffsetRequestHeader = decode(request)?;
    let (src, dest) = (header.src_group.as_str(), header.dest_group.as_str());
    let topics: BTreeSet<String> = match header.topic.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(topic) => BTreeSet::from([topic.to_owned()]),
        None => broker.offsets().of_group(src).map(|(t, _)| t.to_owned()).collect(),
    };
    let offline = header.offline == Some(true);
    for topic in topics {
        if broker.topic(&topic).is_none() {
            continue;
        }
        if !offline {
            let clients = lock(&broker.clients);
            let live = clients.consumer_group(src).filter(|g| !g.subscriptions.is_empty());
            if live.is_some_and(|g| !g.subscriptions.contains_key(&topic)) {
                continue;
            }
        }
        if broker.offsets().clone_group(src, dest, &topic) {
            broker.offsets_dirty.store(true, Ordering::Release);
        }
    }
    answered(success())
}
