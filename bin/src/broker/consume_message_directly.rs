//! CONSUME_MESSAGE_DIRECTLY (309): an admin (mqadmin queryMsgById -g -d, the dashboard's
//! resend) has a member consume one message of this broker now. The broker reads the record
//! the offset message id names, adds its name and the topic's and group's flags to the
//! request, and passes it with the record as the body to the member ([`call_consumer`]), whose
//! `ConsumeMessageDirectlyResult` is the answer. A message id that names no record here is
//! refused SYSTEM_ERROR, as RocketMQ's failing lookup is.

use std::sync::Arc;

use petrel_core::broker::Refusal;
use petrel_core::record::parse_offset_msg_id;
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::ConsumeMessageDirectlyResultRequestHeader;
use petrel_net::transport::Connection;

use super::call_consumer::call_consumer;
use super::{decode, Broker, Outcome};

pub(super) fn handle(
    broker: &Arc<Broker>,
    _conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let header: ConsumeMessageDirectlyResultRequestHeader = decode(request)?;
    let msg_id = header.msg_id.as_deref().unwrap_or_default();
    let record = parse_offset_msg_id(msg_id)
        .and_then(|(_, offset)| u64::try_from(offset).ok())
        .and_then(|offset| broker.store().message_at(offset))
        .ok_or_else(|| {
            let why = format!("no message with the offset message id <{msg_id}> on this broker");
            Refusal::new(response::SYSTEM_ERROR, why)
        })?;
    let mut ask = RemotingCommand::request(request::CONSUME_MESSAGE_DIRECTLY);
    ask.ext_fields = request.ext_fields.clone();
    ask.ext_fields.insert("brokerName", &broker.config.broker_name);
    if let Some(topic) = header.topic.as_deref().and_then(|t| broker.topic(t)) {
        ask.ext_fields.insert("topicSysFlag", &topic.topic_sys_flag.to_string());
    }
    if let Some(group) = broker.groups().get(&header.consumer_group) {
        ask.ext_fields.insert("groupSysFlag", &group.group_sys_flag.to_string());
    }
    ask.body = record;
    let client = header.client_id.as_deref().unwrap_or_default();
    call_consumer(broker, &header.consumer_group, client, ask)
}
