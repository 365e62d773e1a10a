//! UPDATE_AND_CREATE_TOPIC (17): an admin creates or changes a topic (`AdminBrokerProcessor`).
//! Queue counts out of 0-65535, a topic with neither read nor write queues, and a permission
//! with bits beyond RocketMQ's four (read, write, inherit, priority) are refused
//! INVALID_PARAMETER; RocketMQ's broker
//! stores them ([decision 0008](../../../docs/decisions/0008-refuse-admin-values-that-name-nothing.md)).

use std::collections::BTreeMap;
use std::sync::Arc;

use petrel_core::broker::timer::TIMER_TOPIC;
use petrel_core::broker::{Refusal, AUTO_CREATE_TOPIC, SCHEDULE_TOPIC};
use petrel_core::model::{perm, TopicConfig};
use petrel_core::record::is_valid_topic;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::CreateTopicRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};
use crate::clock::now_millis;

/// Parses `+a=b,+c=d` (RocketMQ's attribute syntax) into a map.
fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = item
            .strip_prefix('+')
            .ok_or_else(|| format!("attribute {item:?} must start with +"))?;
        let (key, value) =
            item.split_once('=').ok_or_else(|| format!("attribute {item:?} must be key=value"))?;
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Queue counts a topic can have, and a permission that is one.
fn check_queues_and_perm(header: &CreateTopicRequestHeader) -> Result<(), Refusal> {
    let (read, write) = (header.read_queue_nums, header.write_queue_nums);
    let queues_ok = |n: i32| (0..=65_535).contains(&n);
    if !queues_ok(read) || !queues_ok(write) {
        let why = format!(
            "readQueueNums={read} and writeQueueNums={write}: queue numbers must be between 0 and 65535"
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if read == 0 && write == 0 {
        let why =
            "readQueueNums and writeQueueNums are both 0: a topic needs queues to read or write";
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if header.perm & !(perm::READ | perm::WRITE | perm::INHERIT | perm::PRIORITY) != 0 {
        let why = format!(
            "perm={} is not a permission: 2 (write), 4 (read) or 6 (both), plus 1 (inherit) \
             and 8 (priority) as RocketMQ's PermName has them",
            header.perm
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    Ok(())
}

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: CreateTopicRequestHeader = decode(request)?;
    let topic = header.topic.as_str();
    if !is_valid_topic(topic.as_bytes()) {
        let why = format!(
            "The specified topic[{topic}] is not valid: use 1 to 127 characters of letters, digits, %, |, _ and -"
        );
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    if topic == AUTO_CREATE_TOPIC || topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC {
        let why = format!("The topic[{topic}] is conflict with system topic.");
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    check_queues_and_perm(&header)?;
    let attributes = match header.attributes.as_deref().map(parse_attributes).transpose() {
        Ok(attributes) => attributes.unwrap_or_default(),
        Err(why) => return Err(Refusal::new(response::INVALID_PARAMETER, why)),
    };
    let config = TopicConfig {
        topic_name: topic.to_owned(),
        read_queue_nums: header.read_queue_nums,
        write_queue_nums: header.write_queue_nums,
        perm: header.perm,
        topic_filter_type: header.topic_filter_type.clone(),
        topic_sys_flag: header.topic_sys_flag.unwrap_or(0),
        order: header.order.unwrap_or(false),
        attributes,
    };
    if broker.topics().put(config, now_millis()) {
        tracing::info!(topic, "topic created or updated");
        broker.topics_changed();
    }
    broker.topics_durable()?;
    answered(success())
}
