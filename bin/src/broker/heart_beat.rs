//! HEART_BEAT (34): a client says it is alive, with its producer and consumer groups and
//! subscriptions (`ClientManageProcessor`).
//!
//! A heartbeat admits each consumer group (creating its subscription group when
//! `autoCreateSubscriptionGroup`) and, for a group that subscribes to something, makes sure its
//! retry topic exists, so a failed message always has somewhere to go (RocketMQ creates one
//! for every group named, subscribing or not). A heartbeat naming more groups or subscriptions
//! than `petrel_core::broker::clients` bounds, or taking its connection over its bound of
//! groups, is refused whole with INVALID_PARAMETER and the bound in the remark, before anything
//! of it is recorded. Its SQL92 subscriptions are registered as the groups' filters
//! (`petrel_core::broker::consumer_filters`). A heartbeat with a subscription that does not
//! parse is refused whole, SUBSCRIPTION_PARSE_FAILED with where it goes wrong; RocketMQ takes
//! it and fails the consumer's pulls instead, which leaves the mistake harder to find. So is
//! one with a class-filter subscription (`classFilterMode`), which RocketMQ 5 no longer filters.

use std::sync::Arc;

use petrel_core::broker::clients::{Caller, HeartbeatData};
use petrel_core::broker::filter::{class_filter_refused, MessageFilter};
use petrel_core::broker::{retry_topic, Refusal};
use petrel_core::model::perm;
use petrel_net::codec::codes::response;
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::transport::Connection;

use super::{answered, success, Broker, Outcome};
use crate::clock::now_millis;

pub(super) fn handle(
    broker: &Arc<Broker>,
    conn: &Connection,
    request: &RemotingCommand,
) -> Outcome {
    let data: HeartbeatData = match from_json(&request.body) {
        Ok(data) => data,
        Err(e) => {
            let why = format!("HeartbeatData body is not valid JSON: {e}");
            return Err(Refusal::new(response::SYSTEM_ERROR, why));
        }
    };
    check_subscriptions(&data)?;
    if let Err(why) = broker.change_clients(|clients| clients.admit(conn.id(), &data)) {
        tracing::debug!(peer = %conn.peer(), client = %data.client_id, %why, "heartbeat refused");
        return Err(Refusal::new(response::INVALID_PARAMETER, why));
    }
    let now = now_millis();
    let (mut topics_created, mut groups_created) = (false, false);
    for consumer in &data.consumer_data_set {
        let group = &consumer.group_name;
        let retry_queues = {
            let mut groups = broker.groups();
            match groups.find_or_create(group, broker.auto_create_group(), now) {
                Ok((config, created)) => {
                    groups_created |= created;
                    Some(config.retry_queue_nums)
                }
                Err(e) => {
                    tracing::warn!(%group, error = %e, "heartbeat from a consumer of an unknown group");
                    None
                }
            }
        };
        if consumer.subscription_data_set.is_empty() {
            continue;
        }
        if let Some(queues) = retry_queues {
            let rw = perm::READ | perm::WRITE;
            let mut topics = broker.topics();
            topics_created |= topics.create_if_absent(&retry_topic(group), queues, rw, 0, now).1;
        }
    }
    if groups_created {
        broker.groups_changed();
    }
    if topics_created {
        broker.topics_changed();
    }
    let notify = |group: &str| {
        broker.groups().get(group).is_none_or(|g| g.notify_consumer_ids_changed_enable)
    };
    let language = request.language.name();
    let caller = Caller { conn: conn.id(), language, version: request.version };
    // The filters are registered under the registry's lock, as a group's going kills them.
    broker.change_clients(|clients| {
        clients.heartbeat(now, &caller, &data, &notify);
        broker.change_filters(|filters| {
            data.consumer_data_set.iter().fold(false, |changed, consumer| {
                let subs = &consumer.subscription_data_set;
                filters.register(&consumer.group_name, subs, now as i64) | changed
            })
        });
    });
    answered(success())
}

/// Every subscription's expression must parse.
fn check_subscriptions(data: &HeartbeatData) -> Result<(), Refusal> {
    let subs = data.consumer_data_set.iter().flat_map(|c| &c.subscription_data_set);
    for sub in subs {
        if sub.class_filter_mode {
            return Err(class_filter_refused());
        }
        if let Err(e) = MessageFilter::parse(sub.expression_type.as_deref(), &sub.sub_string) {
            return Err(e.refusal(&sub.sub_string));
        }
    }
    Ok(())
}
