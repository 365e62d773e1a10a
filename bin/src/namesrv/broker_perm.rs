//! WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327): take a broker group's
//! write permission away from every topic (before maintenance), or give it back.
//!
//! Request: `BrokerPermRequestHeader` (brokerName). Response: the count of topics changed, as
//! `wipeTopicCount` or `addTopicCount`.

use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    AddWritePermResponseHeader, BrokerPermRequestHeader, WipeWritePermResponseHeader,
};

use super::{Namesrv, Reply};

pub(super) fn handle(namesrv: &Namesrv, request: &RemotingCommand, writeable: bool) -> Reply {
    let h: BrokerPermRequestHeader = request.header()?;
    let count = namesrv.change_table(|table| table.set_write_perm(&h.broker_name, writeable));
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let reply = RemotingCommand::response(response::SUCCESS, None);
    Ok(if writeable {
        reply.with_header(&AddWritePermResponseHeader { add_topic_count: count })
    } else {
        reply.with_header(&WipeWritePermResponseHeader { wipe_topic_count: count })
    })
}
