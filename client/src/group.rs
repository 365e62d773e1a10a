//! What both consumers do as members of a consumer group: tell the brokers who they are and
//! what they subscribe to (HEART_BEAT), learn who else is in the group
//! (GET_CONSUMER_LIST_BY_GROUP), hear when that changes (NOTIFY_CONSUMER_IDS_CHANGED), and
//! leave (UNREGISTER_CLIENT).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use petrel_core::admin::ConsumerIdList;
use petrel_core::broker::clients::{ConsumerData, HeartbeatData};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use petrel_net::transport::{Connection, Handled, RemotingClient, RequestHandler};
use tokio::sync::Notify;

use crate::subscription::Subscription;
use crate::ClientError;

/// Who a member is, as its heartbeats say.
pub(crate) struct Member<'a> {
    pub client_id: &'a str,
    pub group: &'a str,
    /// `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull).
    pub consume_type: &'a str,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: &'a str,
    pub consume_from: &'a str,
    pub subscriptions: &'a BTreeMap<String, Subscription>,
}

/// A unique client id for a member of `group`.
pub(crate) fn client_id(group: &str) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}@{group}#{started}", petrel_net::process::id())
}

/// Sends the member's heartbeat to each broker; a broker that does not answer hears from the
/// member at the next round.
pub(crate) async fn heartbeat(
    client: &RemotingClient,
    brokers: &BTreeSet<String>,
    member: &Member<'_>,
    timeout: Duration,
) {
    let data = HeartbeatData {
        client_id: member.client_id.to_owned(),
        consumer_data_set: vec![ConsumerData {
            consume_from_where: member.consume_from.to_owned(),
            consume_type: member.consume_type.to_owned(),
            group_name: member.group.to_owned(),
            message_model: member.message_model.to_owned(),
            subscription_data_set: member.subscriptions.iter().map(|(t, s)| s.data(t)).collect(),
            unit_mode: false,
        }],
        producer_data_set: Vec::new(),
    };
    let body = Bytes::from(to_json(&data, JsonStyle::Standard));
    for addr in brokers {
        let request = RemotingCommand::request(request::HEART_BEAT).with_body(body.clone());
        if let Err(e) = client.invoke(addr, request, timeout).await {
            tracing::debug!(broker = %addr, error = %e, "heartbeat failed");
        }
    }
}

/// The group's member ids, as `broker` knows them.
pub(crate) async fn members(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClientError> {
    let header = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
    let request =
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP).with_header(&header);
    let reply = crate::call(client, broker, request, timeout).await?;
    let ids: ConsumerIdList =
        from_json(&reply.body).map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(ids.consumer_id_list)
}

/// Leaves the group on each broker.
pub(crate) async fn unregister(
    client: &RemotingClient,
    brokers: &BTreeSet<String>,
    client_id: &str,
    group: &str,
    timeout: Duration,
) {
    for addr in brokers {
        let header = UnregisterClientRequestHeader {
            client_id: client_id.to_owned(),
            producer_group: None,
            consumer_group: Some(group.to_owned()),
        };
        let request = RemotingCommand::request(request::UNREGISTER_CLIENT).with_header(&header);
        if let Err(e) = client.invoke(addr, request, timeout).await {
            tracing::debug!(broker = %addr, error = %e, "unregister failed");
        }
    }
}

/// Wakes the member's rebalance when a broker sends NOTIFY_CONSUMER_IDS_CHANGED.
pub(crate) struct Notices(pub Arc<Notify>);

impl RequestHandler for Notices {
    fn handle(&self, _conn: &Connection, request: RemotingCommand) -> Handled {
        if request.code == request::NOTIFY_CONSUMER_IDS_CHANGED {
            self.0.notify_one();
            return Handled::Now(RemotingCommand::response(response::SUCCESS, None));
        }
        Handled::Now(petrel_net::transport::not_supported(request.code))
    }
}
