//! GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): the names RocketMQ's broker counts as system
//! topics (`petrel_core::broker::topics::system_topic_names`), as a `TopicList`. A client
//! asks after GET_SYSTEM_TOPIC_LIST_FROM_NS named this broker (the dashboard's topic list).

use std::sync::Arc;

use petrel_core::broker::topics::system_topic_names;
use petrel_core::model::TopicList;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let config = &broker.config;
    let timer = config.timer.settings.enabled;
    let names = system_topic_names(&config.cluster_name, &config.broker_name, timer);
    let list = TopicList { broker_addr: None, topic_list: names };
    answered(success().with_body(to_json(&list, JsonStyle::Fastjson)))
}
