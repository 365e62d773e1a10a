//! QUERY_CONSUME_QUEUE (321): the units of one consume queue from an index, with the queue's
//! bounds, and with a consumer group its subscription of the topic and its SQL92 filter
//! (mqadmin queryCq; `AdminBrokerProcessor.queryConsumeQueue`). As RocketMQ's: a queue the
//! store does not hold is SYSTEM_ERROR `{queueId}@{topic} is not exist!`; an index outside
//! the queue is SUCCESS with no body and the remark `Index {i} of {queueId}@{topic} is not
//! exist!`; units come from the file holding the index only.

use std::sync::Arc;

use petrel_core::admin::{ConsumeQueueData, QueryConsumeQueueBody};
use petrel_core::broker::Refusal;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::{to_json, to_pretty_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::QueryConsumeQueueRequestHeader;
use petrel_net::transport::Connection;

use super::{answered, decode, lock, success, Broker, Outcome};

/// Units answered at most, whatever the count asked: the answer stays a few hundred KiB.
pub(super) const UNITS_MAX: u64 = 2_000;

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: QueryConsumeQueueRequestHeader = decode(request)?;
    let (topic, queue_id) = (&header.topic, header.queue_id);
    let store = broker.store();
    let not_held = || format!("{queue_id}@{topic} is not exist!");
    let (min, max) = store
        .queue_offsets(topic, queue_id)
        .ok_or_else(|| Refusal::new(response::SYSTEM_ERROR, not_held()))?;
    let mut body = QueryConsumeQueueBody {
        max_queue_index: max as i64,
        min_queue_index: min as i64,
        ..QueryConsumeQueueBody::default()
    };
    if let Some(group) = &header.consumer_group {
        let subscription = lock(&broker.clients).subscription(group, topic).cloned();
        body.filter_data = Some(match &subscription {
            None => format!("{group}@{topic} is not online!"),
            Some(_) => match lock(&broker.filters).get(topic, group) {
                Some(filter) => to_pretty_json(filter),
                None => "null".to_owned(),
            },
        });
        body.subscription_data = subscription;
    }
    let count = u64::try_from(header.count).unwrap_or(0).min(UNITS_MAX);
    let units = u64::try_from(header.index)
        .ok()
        .and_then(|from| store.queue_units(topic, queue_id, from, count))
        .unwrap_or_default();
    if units.is_empty() {
        let remark = format!("Index {} of {queue_id}@{topic} is not exist!", header.index);
        return answered(RemotingCommand::response(response::SUCCESS, remark));
    }
    let data = units.iter().map(|unit| ConsumeQueueData {
        physic_offset: unit.offset,
        physic_size: unit.size,
        tags_code: unit.tags_code,
        ..ConsumeQueueData::default()
    });
    body.queue_data = Some(data.collect());
    answered(success().with_body(to_json(&body, JsonStyle::Fastjson)))
}
