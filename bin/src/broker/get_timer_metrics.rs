//! GET_TIMER_METRICS (61): how many timer messages wait, per real topic, as
//! `config/timermetrics` holds it (RocketMQ's `TimerMetricsSerializeWrapper` JSON). A RocketMQ
//! slave asks its master for it as it syncs, and copies it when its data version differs.

use std::sync::Arc;

use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, lock, success, Broker, Outcome, Refusal};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    _request: &RemotingCommand,
) -> Outcome {
    let Some(metrics) = lock(&broker.timer_metrics).clone() else {
        let why = "no timer metrics: this broker's timer wheel is not running (timerWheelEnable \
                   is false, or it is still recovering)";
        return Err(Refusal::new(response::SYSTEM_ERROR, why));
    };
    answered(success().with_body(to_json(&metrics, JsonStyle::Fastjson)))
}
