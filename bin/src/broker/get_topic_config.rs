//! GET_TOPIC_CONFIG (351): one topic's configuration. mqadmin asks every broker of a route
//! for it before topicStatus and consumerProgress print (for static topics' queue mappings,
//! which Petrel has none of), and fails on any answer but this or TOPIC_NOT_EXIST.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::TopicRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: TopicRequestHeader = decode(request)?;
    let Some(config) = broker.topic(&header.topic) else {
        let why = format!("No topic in this broker. topic: {}", header.topic);
        return Err(Refusal::new(response::TOPIC_NOT_EXIST, why));
    };
    // TopicConfigAndQueueMapping: the topic's fields, and no mappingDetail.
    answered(success().with_body(to_json(&config, JsonStyle::Fastjson)))
}
