//! The clients: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38), and
//! NOTIFY_CONSUMER_IDS_CHANGED (40), which the broker sends to a group's members when its
//! membership or subscriptions change (`ClientManageProcessor`, `ConsumerManager`).
//!
//! A heartbeat admits each consumer group (creating its subscription group when
//! `autoCreateSubscriptionGroup`) and makes sure its retry topic exists, so a failed message
//! always has somewhere to go.

use petrel_core::broker::clients::{Caller, HeartbeatData};
use petrel_core::broker::retry_topic;
use petrel_core::model::perm;
use petrel_core::route::ConnId;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use petrel_net::transport::Connection;
use serde::Serialize;

use super::{answer, Broker, Reply};
use crate::clock::now_millis;

pub(super) fn heartbeat(broker: &Broker, conn: &Connection, request: &RemotingCommand) -> Reply {
    let data: HeartbeatData = match from_json(&request.body) {
        Ok(data) => data,
        Err(e) => {
            let why = format!("HeartbeatData body is not valid JSON: {e}");
            return Ok(answer(response::SYSTEM_ERROR, why));
        }
    };
    let now = now_millis();
    let (mut topics_created, mut groups_created) = (false, false);
    for consumer in &data.consumer_data_set {
        let group = &consumer.group_name;
        let retry_queues = {
            let mut groups = broker.groups();
            match groups.find_or_create(group, broker.config.auto_create_group, now) {
                Ok((config, created)) => {
                    groups_created |= created;
                    Some(config.retry_queue_nums)
                }
                Err(e) => {
                    tracing::warn!(%group, error = %e, "heartbeat from a consumer of an unknown group");
                    None
                }
            }
        };
        if let Some(queues) = retry_queues {
            let rw = perm::READ | perm::WRITE;
            let mut topics = broker.topics();
            topics_created |= topics.create_if_absent(&retry_topic(group), queues, rw, 0, now).1;
        }
    }
    if groups_created {
        broker.groups_changed();
    }
    if topics_created {
        broker.topics_changed();
    }
    let notify = |group: &str| {
        broker.groups().get(group).is_none_or(|g| g.notify_consumer_ids_changed_enable)
    };
    let language = request.language.name();
    let caller = Caller { conn: conn.id(), language, version: request.version };
    broker.change_clients(|clients| clients.heartbeat(now, &caller, &data, &notify));
    Ok(RemotingCommand::response(response::SUCCESS, None))
}

pub(super) fn unregister(broker: &Broker, conn: &Connection, request: &RemotingCommand) -> Reply {
    let header: UnregisterClientRequestHeader = request.header()?;
    let (producer, consumer) = (header.producer_group.as_deref(), header.consumer_group.as_deref());
    broker.change_clients(|clients| clients.unregister(conn.id(), producer, consumer));
    Ok(RemotingCommand::response(response::SUCCESS, None))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerIdList {
    consumer_id_list: Vec<String>,
}

pub(super) fn consumer_list(broker: &Broker, request: &RemotingCommand) -> Reply {
    let header: ConsumerGroupRequestHeader = request.header()?;
    let ids = super::lock(&broker.clients).consumer_ids(&header.consumer_group);
    if ids.is_empty() {
        let why = format!("no consumer for this group, {}", header.consumer_group);
        return Ok(answer(response::SYSTEM_ERROR, why));
    }
    let body = to_json(&ConsumerIdList { consumer_id_list: ids }, JsonStyle::Fastjson);
    Ok(RemotingCommand::response(response::SUCCESS, None).with_body(body))
}

/// Tells each member connection of `group` that the group changed (oneway, as RocketMQ).
pub(super) fn notify_ids_changed(broker: &Broker, group: &str, conns: &[ConnId]) {
    for conn in conns {
        let Some(connection) = broker.server.connection(*conn) else { continue };
        let header = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
        let notice =
            RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED).with_header(&header);
        tokio::spawn(async move {
            if let Err(e) = connection.invoke_oneway(notice).await {
                tracing::debug!(error = %e, "consumer change notice not sent");
            }
        });
    }
}
