//! NOTIFY_CONSUMER_IDS_CHANGED (40), which the broker sends (oneway, as RocketMQ) to each
//! member of a consumer group whose membership or subscriptions changed, so that they
//! rebalance at once instead of within 20 s (`ConsumerManager`).

use petrel_core::route::ConnId;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumerGroupRequestHeader;

use super::Broker;

/// Tells each member connection of `group` that the group changed.
pub(super) fn send(broker: &Broker, group: &str, conns: &[ConnId]) {
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
