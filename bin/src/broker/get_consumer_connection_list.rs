//! GET_CONSUMER_CONNECTION_LIST (203): a consumer group's live members, what they subscribe
//! to and how they consume (mqadmin consumerConnection).

use std::sync::Arc;

use petrel_core::admin::{Connection as Described, ConsumerConnection};
use petrel_core::broker::clients::Member;
use petrel_core::broker::Refusal;
use petrel_core::route::ConnId;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerGroupRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ConsumerGroupRequestHeader = decode(request)?;
    let clients = lock(&broker.clients);
    let Some(group) = clients.consumer_group(&header.consumer_group) else {
        let why = format!("the consumer group[{}] not online", header.consumer_group);
        return Err(Refusal::new(response::CONSUMER_NOT_ONLINE, why));
    };
    let body = ConsumerConnection {
        connection_set: group
            .members
            .iter()
            .map(|(conn, member)| described(broker, *conn, member))
            .collect(),
        consume_from_where: group.consume_from_where.clone(),
        consume_type: group.consume_type.clone(),
        message_model: group.message_model.clone(),
        subscription_table: group.subscriptions.clone(),
    };
    drop(clients);
    answered(success().with_body(to_json(&body, JsonStyle::Fastjson)))
}

/// A member of a group as the connection lists show it: its address is its connection's.
pub(super) fn described(broker: &Broker, conn: ConnId, member: &Member) -> Described {
    Described {
        client_addr: broker
            .server
            .connection(conn)
            .map_or_else(String::new, |c| c.peer().to_string()),
        client_id: member.client_id.clone(),
        language: member.language.clone(),
        version: member.version,
    }
}
