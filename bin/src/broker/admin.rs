//! Administration: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21), UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200),
//! GET_BROKER_RUNTIME_INFO (28) (`AdminBrokerProcessor`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use petrel_core::broker::subscriptions::SubscriptionGroupConfig;
use petrel_core::broker::{AUTO_CREATE_TOPIC, SCHEDULE_TOPIC};
use petrel_core::model::{KvTable, TopicConfig};
use petrel_core::record::is_valid_topic;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{CreateTopicRequestHeader, DeleteTopicRequestHeader};

use super::config::flush_name;
use super::{answer, Broker, Reply};
use crate::clock::now_millis;

fn success() -> RemotingCommand {
    RemotingCommand::response(response::SUCCESS, None)
}

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

pub(super) fn create_topic(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: CreateTopicRequestHeader = request.header()?;
    let topic = header.topic.as_str();
    if !is_valid_topic(topic.as_bytes()) {
        let why = format!(
            "The specified topic[{topic}] is not valid: use 1 to 127 characters of letters, digits, %, |, _ and -"
        );
        return Ok(answer(response::INVALID_PARAMETER, why));
    }
    if topic == AUTO_CREATE_TOPIC || topic == SCHEDULE_TOPIC {
        let why = format!("The topic[{topic}] is conflict with system topic.");
        return Ok(answer(response::INVALID_PARAMETER, why));
    }
    let queues_ok = |n: i32| (0..=65_535).contains(&n);
    if !queues_ok(header.read_queue_nums) || !queues_ok(header.write_queue_nums) {
        return Ok(answer(
            response::INVALID_PARAMETER,
            "queue numbers must be between 0 and 65535",
        ));
    }
    let attributes = match header.attributes.as_deref().map(parse_attributes).transpose() {
        Ok(attributes) => attributes.unwrap_or_default(),
        Err(why) => return Ok(answer(response::INVALID_PARAMETER, why)),
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
    if let Err(refusal) = broker.topics_durable() {
        return Ok(refusal.into());
    }
    Ok(success())
}

pub(super) fn delete_topic(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: DeleteTopicRequestHeader = request.header()?;
    let topic = header.topic.as_str();
    if topic == AUTO_CREATE_TOPIC || topic == SCHEDULE_TOPIC {
        let why = format!("The topic[{topic}] is conflict with system topic.");
        return Ok(answer(response::INVALID_PARAMETER, why));
    }
    if broker.topics().remove(topic, now_millis()).is_some() {
        tracing::info!(topic, "topic deleted; its stored messages age out with the commit log");
        broker.topics_changed();
    }
    if broker.offsets().remove_topic(topic) {
        broker.offsets_dirty.store(true, Ordering::Release);
    }
    Ok(success())
}

pub(super) fn all_topics(broker: &Broker) -> RemotingCommand {
    let wrapper = broker.topics().wrapper();
    success().with_body(to_json(&wrapper, JsonStyle::Fastjson))
}

pub(super) fn create_group(broker: &Broker, request: &RemotingCommand) -> Reply {
    let config: SubscriptionGroupConfig = match from_json(&request.body) {
        Ok(config) => config,
        Err(e) => {
            let why = format!("SubscriptionGroupConfig body is not valid JSON: {e}");
            return Ok(answer(response::INVALID_PARAMETER, why));
        }
    };
    if config.group_name.is_empty() || !is_valid_topic(config.group_name.as_bytes()) {
        let why = format!("the group name {:?} is not valid", config.group_name);
        return Ok(answer(response::INVALID_PARAMETER, why));
    }
    if broker.groups().put(config, now_millis()) {
        broker.groups_changed();
    }
    Ok(success())
}

pub(super) fn runtime_info(broker: &Broker) -> RemotingCommand {
    let store = broker.store();
    let now = now_millis();
    let mut table = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.to_owned(), value);
    };
    put("brokerVersionDesc", "V5_3_3".into());
    put("brokerVersion", "479".into());
    put("brokerActive", "true".into());
    put("bootTimestamp", broker.boot_millis.to_string());
    put("runtime", format!("[ {} ms ]", now.saturating_sub(broker.boot_millis)));
    put("msgPutTotalTodayNow", broker.stats.messages_put.load(Ordering::Relaxed).to_string());
    put("msgGetTotalTodayNow", broker.stats.messages_got.load(Ordering::Relaxed).to_string());
    put("commitLogMinOffset", store.min_physical_offset().to_string());
    put("commitLogMaxOffset", store.written_offset().to_string());
    put(
        "dispatchBehindBytes",
        store.written_offset().saturating_sub(store.dispatched_offset()).to_string(),
    );
    put(
        "remainHowManyDataToFlush",
        store.written_offset().saturating_sub(store.flushed_offset()).to_string(),
    );
    put("flushDiskType", flush_name(broker.config.store.flush_disk_type).into());
    put("brokerRole", "ASYNC_MASTER".into());
    put("pullHeldRequests", broker.held_pulls.load(Ordering::Relaxed).to_string());
    put("connections", broker.server.connection_count().to_string());
    success().with_body(to_json(&KvTable { table }, JsonStyle::Fastjson))
}
