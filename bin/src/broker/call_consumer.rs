//! What the broker asks a member on an admin's behalf (`AdminBrokerProcessor.callConsumer`):
//! the request goes to the member named by its client id over that member's own connection,
//! and the member's answer is the admin's. Refused as RocketMQ refuses: SYSTEM_ERROR when the
//! member is not connected or older than 3.1.8, CONSUME_MSG_TIMEOUT when it does not answer
//! within 10 s.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::admin::version_desc;
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::{Handled, TransportError};

use super::{lock, Broker, Outcome};

/// `MQVersion.Version.V3_1_8_SNAPSHOT.ordinal()`: older clients cannot answer.
const V3_1_8_SNAPSHOT: i32 = 62;
/// How long the member has to answer (`Broker2Client.callClient`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `ask` to the member `client` of `group` and answers with its answer.
pub(super) fn call_consumer(
    broker: &Arc<Broker>,
    group: &str,
    client: &str,
    ask: RemotingCommand,
) -> Outcome {
    let member = lock(&broker.clients).consumer_group(group).and_then(|g| {
        g.members.iter().find(|(_, m)| m.client_id == client).map(|(c, m)| (*c, m.version))
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
    let (group, client) = (group.to_owned(), client.to_owned());
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
