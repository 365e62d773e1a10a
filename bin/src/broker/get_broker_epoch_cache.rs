//! GET_BROKER_EPOCH_CACHE (1007), from an admin (`mqadmin getBrokerEpoch`): the broker's
//! identity, the epochs of its commit log with where each begins and ends, and the log's end
//! (`EpochEntryCache`). Only in controller mode, as RocketMQ's `AdminBrokerProcessor`.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_core::controller::body::EpochEntryCache;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    if broker.config.controller.is_none() {
        let why = "this request only for controllerMode: this broker is not in controller mode \
                   (enableControllerMode=false)";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    }
    let Some(id) = lock(&broker.replicas).as_ref().map(|r| r.me()) else {
        let why = "this broker has no id yet: it has not registered with its controller";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    let store = broker.store();
    let body = EpochEntryCache::of(
        &broker.config.cluster_name,
        &broker.config.broker_name,
        id,
        &store.epoch_cache(),
        store.written_offset() as i64,
    );
    answered(success().with_body(to_json(&body, JsonStyle::Fastjson)))
}
