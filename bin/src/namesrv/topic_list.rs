//! GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206), GET_TOPICS_BY_CLUSTER (224) and
//! GET_SYSTEM_TOPIC_LIST_FROM_NS (304).
//!
//! Request: no fields / `GetTopicsByClusterRequestHeader` (cluster) / no fields. Response: a
//! `TopicList` body, or SYSTEM_ERROR "disable" when the listing is switched off
//! (`enableAllTopicList`, `enableTopicList`; the system list, as RocketMQ's, always answers:
//! the cluster and broker names, and one broker's address to ask for its own).

use petrel_core::model::TopicList;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::GetTopicsByClusterRequestHeader;

use super::{ok_with_body, Namesrv, Reply};

pub(super) fn all(namesrv: &Namesrv) -> RemotingCommand {
    if !namesrv.live().0.enable_all_topic_list {
        return RemotingCommand::response(response::SYSTEM_ERROR, "disable".to_owned());
    }
    let list = TopicList { broker_addr: None, topic_list: namesrv.table().topics() };
    ok_with_body(to_json(&list, JsonStyle::Fastjson))
}

pub(super) fn by_cluster(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let header: GetTopicsByClusterRequestHeader = request.header()?;
    if !namesrv.live().0.enable_topic_list {
        return Ok(RemotingCommand::response(response::SYSTEM_ERROR, "disable".to_owned()));
    }
    let topics = namesrv.table().topics_of_cluster(&header.cluster);
    Ok(ok_with_body(to_json(
        &TopicList { broker_addr: None, topic_list: topics },
        JsonStyle::Fastjson,
    )))
}

pub(super) fn system(namesrv: &Namesrv) -> RemotingCommand {
    ok_with_body(to_json(&namesrv.table().system_topics(), JsonStyle::Fastjson))
}
