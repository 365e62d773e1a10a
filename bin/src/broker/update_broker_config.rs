//! UPDATE_BROKER_CONFIG (25): properties set on the running broker (mqadmin
//! updateBrokerConfig), a Java properties body. As RocketMQ: a name in the black list
//! (`configBlackList`, and always `brokerConfigPath`, `rocketmqHome`, `configBlackList`) is
//! refused with NO_PERMISSION, the change is written to the file the broker was started from,
//! and a new `brokerPermission` is registered with the NameServers at once.
//!
//! Where Petrel differs: a name it does not read, a value that does not parse and a
//! configuration a start would refuse are refused with INVALID_PARAMETER (RocketMQ ignores or
//! takes them); the file keeps its comments and other lines; and only [`LIVE`] take effect at
//! once, every other property at the next start (RocketMQ sets every field, and whether the
//! running broker reads it again depends on the field). The remark says which is which.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, BrokerConfig, Outcome};
use crate::clock::now_millis;
use crate::config::{update, update_remark, write_into_file};

/// The properties the running broker takes at once.
pub(super) const LIVE: [&str; 7] = [
    "brokerPermission",
    "autoCreateSubscriptionGroup",
    "rejectTransactionMessage",
    "slaveReadEnable",
    "accessMessageInMemoryMaxRatio",
    "useServerSideResetOffset",
    "litePullMessageEnable",
];

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let mut current = lock(&broker.updated);
    let black_list = current.0.black_list();
    let updated =
        update(&current.0, &request.body[..], &black_list, BrokerConfig::apply, |c| c.validate())?;
    if updated.given.is_empty() {
        return answered(success());
    }
    let file = current.0.config_file.clone();
    if let Some(path) = &file {
        write_into_file(path, &updated.given).map_err(|e| {
            let why = format!("cannot write {}: {e}; nothing was changed", path.display());
            Refusal::new(response::SYSTEM_ERROR, why)
        })?;
    }
    tracing::info!(caller = %conn.peer(), changes = ?updated.given, "broker configuration updated");
    let permission_changed = updated.config.broker_permission != current.0.broker_permission;
    broker.take_live(&updated.config);
    current.0 = updated.config;
    current.1 += 1;
    drop(current);
    if permission_changed {
        broker.topics().touch(now_millis());
        broker.topics_changed();
    }
    let remark = update_remark(&updated.given, &LIVE, file.as_deref());
    answered(RemotingCommand::response(response::SUCCESS, Some(remark)))
}

impl Broker {
    /// Takes the [`LIVE`] properties of `config` into the state the handlers read.
    fn take_live(&self, config: &BrokerConfig) {
        {
            let mut send = self.send_config.write().unwrap_or_else(|p| p.into_inner());
            send.broker_permission = config.broker_permission;
            send.auto_create_group = config.auto_create_group;
            send.reject_transaction_message = config.transactions.reject;
        }
        let mut read = lock(&self.read_policy);
        read.slave_read_enable = config.slave_read_enable;
        read.in_memory_ratio = config.in_memory_ratio;
        read.lite_pull_enable = config.lite_pull;
    }
}
