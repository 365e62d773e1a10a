//! REGISTER_BROKER (103): a broker announces itself and its topics, every 30 s.
//!
//! Request: `RegisterBrokerRequestHeader` (brokerName, brokerAddr, clusterName, haServerAddr,
//! brokerId, heartbeatTimeoutMillis, enableActingMaster, compressed, bodyCrc32); body a
//! `RegisterBrokerBody` in JSON. Response: `RegisterBrokerResponseHeader` (masterAddr and its
//! haServerAddr, for a slave) and, when enabled, the ORDER_TOPIC_CONFIG table as the body.

use petrel_core::kv::NAMESPACE_ORDER_TOPIC_CONFIG;
use petrel_core::model::{KvTable, RegisterBrokerBody};
use petrel_core::route::{RegisterError, Registration};
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{RegisterBrokerRequestHeader, RegisterBrokerResponseHeader};
use petrel_net::transport::Connection;

use super::{Namesrv, Reply};
use crate::clock::now_millis;

pub(super) fn handle(namesrv: &Namesrv, conn: &Connection, request: &RemotingCommand) -> Reply {
    let header: RegisterBrokerRequestHeader = request.header()?;
    if let Some(expected) = header.body_crc32.filter(|crc| *crc != 0) {
        let actual = (crc32fast::hash(&request.body) & 0x7FFF_FFFF) as i32;
        if actual != expected {
            return Ok(error(format!(
                "crc32 not match: header says {expected}, body has {actual}"
            )));
        }
    }
    if header.compressed == Some(true) {
        return Ok(error(
            "compressed REGISTER_BROKER bodies are not supported; set compressedRegister=false on the broker"
                .to_owned(),
        ));
    }
    let body: Option<RegisterBrokerBody> = if request.body.is_empty() {
        None
    } else {
        match from_json(&request.body) {
            Ok(body) => Some(body),
            Err(e) => return Ok(error(format!("RegisterBrokerBody is not valid JSON: {e}"))),
        }
    };
    let (topics, filter_server_list) = match body {
        Some(body) => (Some(body.topic_config_serialize_wrapper), body.filter_server_list),
        None => (None, Vec::new()),
    };
    let registration = Registration {
        cluster_name: header.cluster_name,
        broker_addr: header.broker_addr,
        broker_name: header.broker_name,
        broker_id: header.broker_id,
        ha_server_addr: header.ha_server_addr,
        zone_name: header.zone_name,
        heartbeat_timeout_ms: header.heartbeat_timeout_millis.and_then(|t| u64::try_from(t).ok()),
        enable_acting_master: header.enable_acting_master,
        topics,
        filter_server_list,
    };
    let outcome =
        namesrv.change_table(|table| table.register(now_millis(), conn.id(), registration));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(RegisterError::SingleTopicBeforeFirstRegistration) => {
            return Ok(error("register broker failed: a first registration must carry the broker's whole topic table".to_owned()));
        }
    };
    let answer = RegisterBrokerResponseHeader {
        ha_server_addr: outcome.ha_server_addr,
        master_addr: outcome.master_addr,
    };
    let mut reply = RemotingCommand::response(response::SUCCESS, None).with_header(&answer);
    if namesrv.live().0.return_order_topic_config_to_broker {
        if let Some(table) = namesrv.kv().namespace(NAMESPACE_ORDER_TOPIC_CONFIG) {
            reply.body = to_json(&KvTable { table: table.clone() }, JsonStyle::Fastjson).into();
        }
    }
    Ok(reply)
}

fn error(remark: String) -> RemotingCommand {
    RemotingCommand::response(response::SYSTEM_ERROR, remark)
}
