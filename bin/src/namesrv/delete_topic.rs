//! DELETE_TOPIC_IN_NAMESRV (216): forget a topic, everywhere or in one cluster.
//!
//! Request: `DeleteTopicFromNamesrvRequestHeader` (topic, clusterName). Response: SUCCESS, also
//! for an unknown topic, as RocketMQ answers. A broker that still has the topic brings it back
//! with its next registration whose data version changed.

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::DeleteTopicFromNamesrvRequestHeader;

use super::{Namesrv, Reply};

pub(super) fn handle(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: DeleteTopicFromNamesrvRequestHeader = request.header()?;
    let cluster = h.cluster_name.as_deref().filter(|c| !c.is_empty());
    namesrv.change_table(|table| table.delete_topic(&h.topic, cluster));
    Ok(RemotingCommand::response(response::SUCCESS, None))
}
