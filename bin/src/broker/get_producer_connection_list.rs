//! GET_PRODUCER_CONNECTION_LIST (204): a producer group's live members (mqadmin
//! producerConnection).

use std::sync::Arc;

use petrel_core::admin::ProducerConnection;
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ProducerGroupRequestHeader;
use petrel_net::transport::Connection;

use super::get_consumer_connection_list::described;
use super::{answered, decode, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ProducerGroupRequestHeader = decode(request)?;
    let clients = lock(&broker.clients);
    let Some(members) = clients.producer_group(&header.producer_group) else {
        let why = format!("the producer group[{}] not exist", header.producer_group);
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let body = ProducerConnection {
        connection_set: members
            .iter()
            .map(|(conn, member)| described(broker, *conn, member))
            .collect(),
    };
    drop(clients);
    answered(success().with_body(to_json(&body, JsonStyle::Fastjson)))
}
