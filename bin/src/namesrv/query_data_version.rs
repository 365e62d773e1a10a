//! QUERY_DATA_VERSION (322) and BROKER_HEARTBEAT (904): a broker keeps itself alive without
//! re-sending its topic table.
//!
//! QUERY_DATA_VERSION: `QueryDataVersionRequestHeader`, body the broker's `DataVersion`; answers
//! `changed` (whether the NameServer holds another version, so the broker should re-register)
//! with the held version as the body. BROKER_HEARTBEAT: `BrokerHeartbeatRequestHeader`; answers
//! SUCCESS. Both refresh the broker's last-seen time.

use petrel_core::model::DataVersion;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    BrokerHeartbeatRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
};

use super::{Namesrv, Reply};
use crate::clock::now_millis;

pub(super) fn handle(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: QueryDataVersionRequestHeader = request.header()?;
    let offered: Option<DataVersion> = from_json(&request.body).ok();
    let held = {
        let mut table = namesrv.table();
        table.touch(now_millis(), &h.cluster_name, &h.broker_addr);
        table.data_version(&h.cluster_name, &h.broker_addr).cloned()
    };
    let changed = held.is_none() || held != offered;
    let mut reply = RemotingCommand::response(response::SUCCESS, None)
        .with_header(&QueryDataVersionResponseHeader { changed });
    if let Some(held) = held {
        reply.body = to_json(&held, JsonStyle::Fastjson).into();
    }
    Ok(reply)
}

pub(super) fn heartbeat(namesrv: &Namesrv, request: &RemotingCommand) -> Reply {
    let h: BrokerHeartbeatRequestHeader = request.header()?;
    namesrv.table().touch(now_millis(), &h.cluster_name, &h.broker_addr);
    Ok(RemotingCommand::response(response::SUCCESS, None))
}
