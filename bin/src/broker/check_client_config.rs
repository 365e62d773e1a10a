//! CHECK_CLIENT_CONFIG (46): a consumer asks, before it starts, whether the broker can filter by
//! its subscription (`petrel_core::broker::filter::check_client_config`). A body that does not
//! parse is refused SYSTEM_ERROR with the reason.

use std::sync::Arc;

use petrel_core::broker::filter::{check_client_config, CheckClientBody};
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let body: CheckClientBody = if request.body.is_empty() {
        CheckClientBody::default()
    } else {
        from_json(&request.body).map_err(|e| {
            let why = format!("CheckClientRequestBody is not valid JSON: {e}");
            Refusal::new(response::SYSTEM_ERROR, why)
        })?
    };
    check_client_config(&body, broker.config.property_filter)?;
    answered(success())
}
