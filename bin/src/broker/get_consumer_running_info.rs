//! GET_CONSUMER_RUNNING_INFO (307): an admin (mqadmin consumerStatus, the dashboard's client
//! view) asks the broker, which asks the member named by `clientId` over that member's own
//! connection and answers with the member's answer (`AdminBrokerProcessor.callConsumer`).
//! Refused as RocketMQ refuses: SYSTEM_ERROR when the member is not connected or older than
//! 3.1.8, CONSUME_MSG_TIMEOUT when it does not answer within 10 s.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::admin::version_desc;
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use petrel_net::transport::{Connection, Handled, TransportError};

use super::{decode, lock, Broker, Outcome};

/// `MQVersion.Version.V3_1_8_SNAPSHOT.ordinal()`: older clients cannot answer.
const V3_1_8_SNAPSHOT: i32 = 62;
/// How long the member has to answer (`Broker2Client.callClient`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: GetConsumerRunningInfoRequestHeader = decode(request)?;
    let (group, client) = (&header.consumer_group, &header.client_id);
    let member = lock(&broker.clients).consumer_group(group).and_then(|g| {
        g.members.iter().find(|(_, m)| m.client_id == *client).map(|(c, m)| (*c, m.version))
    });
    let offline = || format!("The Consumer <{group}> <{client}> not online");
    let (conn, version) = member.ok_or_else(|| Refusal::new(response::SYSTEM_ERROR, offline()))?;
    if version < V3_1_8_SNAPSHOT {
        let why = format!(
            "The Consumer <{client}> Version <{}> too low to finish, please upgrade it to V3_1_8_SNAPSHOT",
            version_desc(version)
        );
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let connection = broker
        .server
        .connection(conn)
        .ok_or_else(|| Refusal::new(response::SYSTEM_ERROR, offline()))?;
    let mut ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO);
    ask.ext_fields = request.ext_fields.clone();
    ask.body = request.body.clone();
    let (group, client) = (group.clone(), client.clone());
    Ok(Handled::Later(Box::pin(async move {
        match connection.invoke(ask, CALL_TIMEOUT).await {
            Ok(answer) => answer,
            Err(e @ TransportError::Timeout { .. }) => RemotingCommand::response(
                response::CONSUME_MSG_TIMEOUT,
                format!("consumer <{group}> <{client}> Timeout: {e}"),
            ),
            Err(e) => RemotingCommand::response(
                response::SYSTEM_ERROR,
                format!("invoke consumer <{group}> <{client}> Exception: {e}"),
            ),
        }
    })))
}
