//! A slave copies its master's topics, subscription groups, consumer offsets and delay cursors
//! (RocketMQ's `SlaveSynchronize`): 3 s after it starts, then every 10 s, from the master's
//! client address the NameServer named in its answer to the slave's registration. A consumer
//! that moves to the slave then finds its topic and resumes where it committed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_core::broker::offsets::ConsumerOffsets;
use petrel_core::broker::schedule::DelayOffsets;
use petrel_core::broker::subscriptions::{SubscriptionGroupWrapper, SubscriptionGroups};
use petrel_core::broker::topics::TopicTable;
use petrel_core::model::TopicConfigWrapper;
use petrel_net::codec::codes::{request, request_name, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::signal::Flag;
use serde::de::DeserializeOwned;

use super::{lock, persist, Broker};

const FIRST: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn run(broker: Arc<Broker>, stop: Flag) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = PERIOD;
        let Some(master) = lock(&broker.learned_master_addr).clone() else { continue };
        if let Err(why) = sync_all(&broker, &master).await {
            tracing::warn!(%master, %why, "cannot copy the master's configuration; next period");
        }
    }
}

/// One of the master's tables, as its GET_ALL_* answer holds it.
async fn fetch<T: DeserializeOwned>(broker: &Broker, master: &str, code: i32) -> Result<T, String> {
    let name = request_name(code);
    let ask = RemotingCommand::request(code);
    let reply =
        broker.namesrv.invoke(master, ask, TIMEOUT).await.map_err(|e| format!("{name}: {e}"))?;
    if reply.code != response::SUCCESS {
        return Err(format!("{name} answered {} {:?}", reply.code, reply.remark));
    }
    from_json(&reply.body).map_err(|e| format!("{name}: the body is not valid JSON: {e}"))
}

async fn sync_all(broker: &Broker, master: &str) -> Result<(), String> {
    let topics: TopicConfigWrapper = fetch(broker, master, request::GET_ALL_TOPIC_CONFIG).await?;
    if broker.topics().wrapper() != topics {
        *broker.topics() = TopicTable::from_wrapper(topics);
        broker.topics_changed();
    }
    let groups: SubscriptionGroupWrapper =
        fetch(broker, master, request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG).await?;
    if broker.groups().wrapper() != groups {
        *broker.groups() = SubscriptionGroups::from_wrapper(groups);
        broker.groups_changed();
    }
    let offsets: ConsumerOffsets = fetch(broker, master, request::GET_ALL_CONSUMER_OFFSET).await?;
    if *broker.offsets() != offsets {
        *broker.offsets() = offsets;
        broker.offsets_dirty.store(true, Ordering::Release);
        broker.persist_offsets();
    }
    let delays: DelayOffsets = fetch(broker, master, request::GET_ALL_DELAY_OFFSET).await?;
    if *lock(&broker.delays) != delays {
        *lock(&broker.delays) = delays.clone();
        if !persist::save(broker, persist::DELAYS, &delays) {
            broker.delays_dirty.store(true, Ordering::Release);
        }
    }
    Ok(())
}
