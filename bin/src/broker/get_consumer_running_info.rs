//! GET_CONSUMER_RUNNING_INFO (307): an admin (mqadmin consumerStatus, the dashboard's client
//! view) asks the broker, which asks the member named by `clientId` and answers with the
//! member's answer ([`call_consumer`]).

use std::sync::Arc;

use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use petrel_net::transport::Connection;

use super::call_consumer::call_consumer;
use super::{decode, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: GetConsumerRunningInfoRequestHeader = decode(request)?;
    let mut ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO);
    ask.ext_fields = request.ext_fields.clone();
    ask.body = request.body.clone();
    call_consumer(broker, &header.consumer_group, &header.client_id, ask)
}
