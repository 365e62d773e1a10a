//! QUERY_TOPIC_CONSUME_BY_WHO (300): the consumer groups of a topic on this broker: those
//! whose live members subscribe to it and those that committed offsets for it.

use std::sync::Arc;

use petrel_core::admin::GroupList;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::TopicRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: TopicRequestHeader = decode(request)?;
    let mut groups = GroupList::default();
    groups
        .group_list
        .extend(lock(&broker.clients).groups_subscribing(&header.topic).map(str::to_owned));
    groups.group_list.extend(broker.offsets().groups_of(&header.topic));
    answered(success().with_body(to_json(&groups, JsonStyle::Fastjson)))
}
