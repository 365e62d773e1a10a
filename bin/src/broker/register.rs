//! Registration with the NameServers (`BrokerOuterAPI.registerBrokerAll`): the whole topic
//! table to every NameServer at once, at start, every `registerNameServerPeriod`, and as soon
//! as a topic is created, changed or deleted; UNREGISTER_BROKER to each on a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use petrel_core::model::{KvTable, RegisterBrokerBody};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};
use petrel_net::signal::Flag;

use super::config::BrokerRole;
use super::{lock, Broker};
use crate::clock::now_millis;

/// How long UNREGISTER_BROKER may take at shutdown (RocketMQ's 3 s).
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon a registration a NameServer did not take is tried again.
const RETRY: Duration = Duration::from_secs(2);

fn registration(broker: &Broker, broker_id: i64) -> RemotingCommand {
    let mut wrapper = broker.topics().wrapper();
    let broker_perm = broker.permission();
    for config in wrapper.topic_config_table.values_mut() {
        config.perm &= broker_perm | petrel_core::model::perm::INHERIT;
    }
    let body = to_json(
        &RegisterBrokerBody {
            filter_server_list: Vec::new(),
            topic_config_serialize_wrapper: wrapper,
        },
        JsonStyle::Fastjson,
    );
    let header = RegisterBrokerRequestHeader {
        broker_name: broker.config.broker_name.clone(),
        broker_addr: broker.addr.clone(),
        cluster_name: broker.config.cluster_name.clone(),
        ha_server_addr: broker.ha_addr.clone(),
        broker_id,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32),
        zone_name: None,
    };
    RemotingCommand::request(request::REGISTER_BROKER).with_header(&header).with_body(body)
}

impl Broker {
    /// A slave learns its master's HA address from the answer to its registration
    /// (RocketMQ's `RegisterBrokerResult.haServerAddr`), unless `haMasterAddress` names it.
    fn learn_master(&self, reply: &RemotingCommand) {
        if self.role() != BrokerRole::Slave {
            return;
        }
        let Ok(answer) = reply.header::<RegisterBrokerResponseHeader>() else { return };
        // In controller mode the controller names the master's client address.
        let from_controller = self.config.controller.is_some();
        let master = answer.master_addr.filter(|a| !a.is_empty());
        // Held while the HA address is set, so that a role change between cannot be undone.
        let mut named = lock(&self.learned_master_addr);
        if !from_controller && master.is_some() {
            *named = master.clone();
        }
        if from_controller && *named != master {
            // The NameServer still routes to another master than the one the controller
            // named (an old one whose registration has not expired): not followed.
            return;
        }
        let Some(ha) = answer.ha_server_addr.filter(|a| !a.is_empty()) else { return };
        let mut learned = lock(&self.learned_master);
        if learned.as_deref() != Some(ha.as_str()) {
            tracing::info!(master_ha = %ha, "master's HA address learned from the NameServer");
            *learned = Some(ha);
        }
    }
}

impl Broker {
    /// Marks ordered the topics a NameServer's ORDER_TOPIC_CONFIG names (the answer's body, a
    /// KVTable, sent when the NameServer has the namespace).
    fn learn_ordered_topics(&self, reply: &RemotingCommand) {
        if reply.body.is_empty() {
            return;
        }
        let Ok(table) = from_json::<KvTable>(&reply.body) else {
            tracing::warn!(
                "the NameServer's ORDER_TOPIC_CONFIG does not parse; topics keep their order flags"
            );
            return;
        };
        let changed = self.topics().mark_ordered(table.table.keys(), now_millis());
        if changed {
            tracing::info!(ordered = ?table.table.keys().collect::<Vec<_>>(), "ordered topics from the NameServer");
            self.topics_changed();
        }
    }
}

/// Registers with every NameServer; whether each took it (a broker in controller mode whose
/// role is not named yet has nothing to register, and counts as registered).
async fn register_all(broker: &Arc<Broker>) -> bool {
    // A broker in controller mode registers once its controller named its role.
    let Some(broker_id) = broker.registered_id() else { return true };
    let timeout = Duration::from_millis(broker.config.register_timeout_ms);
    let mut pending = Vec::new();
    for addr in broker.config.namesrv_addrs.clone() {
        let broker = broker.clone();
        let request = registration(&broker, broker_id);
        pending.push(tokio::spawn(async move {
            match broker.namesrv.invoke(&addr, request, timeout).await {
                Ok(reply) if reply.code == response::SUCCESS => {
                    tracing::debug!(namesrv = %addr, "registered");
                    broker.learn_master(&reply);
                    broker.learn_ordered_topics(&reply);
                    true
                }
                Ok(reply) => {
                    tracing::warn!(namesrv = %addr, code = reply.code, remark = ?reply.remark, "registration refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "registration failed; retrying soon");
                    false
                }
            }
        }));
    }
    let mut all = true;
    for task in pending {
        all &= task.await.unwrap_or(false);
    }
    all
}

/// Registers now, then every period or whenever the topic table changes, until shutdown.
/// A registration a NameServer did not take is tried again after [`RETRY`] rather than a
/// whole period: until it is taken, clients that ask that NameServer cannot find the broker
/// (producers cannot send to it, nor heartbeat it to answer transaction checks).
pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    let period = Duration::from_millis(broker.config.register_period_ms.clamp(1_000, 60_000));
    loop {
        let wait = match register_all(&broker).await {
            true => period,
            false => period.min(RETRY),
        };
        tokio::select! {
            biased;
            () = tokio::time::sleep(wait) => {}
            () = broker.register_now.notified() => {}
            _ = stop.wait() => return,
        }
    }
}

/// Tells every NameServer the broker is leaving, so clients stop routing to it at once.
pub(super) async fn unregister_all(broker: &Arc<Broker>) {
    let Some(broker_id) = broker.registered_id() else { return };
    for addr in &broker.config.namesrv_addrs {
        let header = UnRegisterBrokerRequestHeader {
            broker_name: broker.config.broker_name.clone(),
            broker_addr: broker.addr.clone(),
            cluster_name: broker.config.cluster_name.clone(),
            broker_id,
        };
        let request = RemotingCommand::request(request::UNREGISTER_BROKER).with_header(&header);
        if let Err(e) = broker.namesrv.invoke(addr, request, UNREGISTER_TIMEOUT).await {
            tracing::warn!(namesrv = %addr, error = %e, "unregistration failed");
        }
    }
}
