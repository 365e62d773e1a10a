//! UNREGISTER_CLIENT (35): a client leaves its groups.

use std::sync::Arc;

use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::UnregisterClientRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: UnregisterClientRequestHeader = decode(request)?;
    let (producer, consumer) = (header.producer_group.as_deref(), header.consumer_group.as_deref());
    broker.change_clients(|clients| clients.unregister(conn.id(), producer, consumer));
    answered(success())
}
