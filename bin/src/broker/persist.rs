//! The broker's config files under `<storePathRootDir>/config/`, in RocketMQ's JSON:
//! `topics.json`, `subscriptionGroup.json`, `consumerOffset.json`, `delayOffset.json`,
//! `consumerOrderInfo.json`, `consumerFilter.json` and `timermetrics`.
//!
//! Each is replaced atomically with the previous version kept as `.bak`
//! (`petrel_storage::disk::write_atomically`). At startup a file that does not parse is read
//! from its `.bak`; when neither parses the broker refuses to start rather than serve with
//! forgotten offsets or topics.

use std::path::PathBuf;

use petrel_core::broker::consumer_filters::{ConsumerFilterTable, ConsumerFilters};
use petrel_core::broker::offsets::ConsumerOffsets;
use petrel_core::broker::pop_order::{OrderInfoTable, OrderInfos};
use petrel_core::broker::schedule::DelayOffsets;
use petrel_core::broker::subscriptions::{SubscriptionGroupWrapper, SubscriptionGroups};
use petrel_core::broker::timer_metrics::TimerMetrics;
use petrel_core::broker::topics::TopicTable;
use petrel_core::model::TopicConfigWrapper;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_storage::disk::Disk;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Broker, BrokerConfig};
use crate::fsutil;

pub(super) const TOPICS: &str = "topics.json";
pub(super) const GROUPS: &str = "subscriptionGroup.json";
pub(super) const OFFSETS: &str = "consumerOffset.json";
pub(super) const DELAYS: &str = "delayOffset.json";
/// The timer wheel's counts per topic (`bin/src/broker/timer.rs`).
pub(super) const TIMER_METRICS: &str = "timermetrics";
/// Orderly POP's state per queue (`bin/src/broker/pop_order.rs`).
pub(super) const ORDER_INFO: &str = "consumerOrderInfo.json";
/// The consumer groups' SQL92 filters (`petrel_core::broker::consumer_filters`).
pub(super) const FILTERS: &str = "consumerFilter.json";

/// The largest config file read back: the bound is checked before anything is allocated.
const CONFIG_FILE_BYTES_MAX: u64 = 256 << 20;

fn path(config: &BrokerConfig, name: &str) -> PathBuf {
    config.store.config_dir().join(name)
}

/// Writes one file; a failure is logged and returned as `false`, and the caller keeps the
/// change to write it again at the next change or period.
pub(super) fn save<T: Serialize>(broker: &Broker, name: &str, value: &T) -> bool {
    let path = path(&broker.config, name);
    let bytes = to_json(value, JsonStyle::Fastjson);
    let written = fsutil::save(broker.disk.as_ref(), &path, &bytes);
    if let Err(e) = &written {
        tracing::error!(path = %path.display(), error = %e, "cannot write a config file");
    }
    written.is_ok()
}

fn load<T: DeserializeOwned + Default>(
    disk: &dyn Disk,
    config: &BrokerConfig,
    name: &str,
) -> Result<T, String> {
    fsutil::load_json(disk, &path(config, name), CONFIG_FILE_BYTES_MAX)
}

/// `config/timermetrics` as last written: RocketMQ's or Petrel's. Only names and timestamps
/// are taken from it (the counts come from the wheel), so a file that reads neither whole nor
/// from its `.bak` is started over, not a reason to refuse to start.
pub(super) fn load_timer_metrics(disk: &dyn Disk, config: &BrokerConfig) -> TimerMetrics {
    load(disk, config, TIMER_METRICS).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "timer metrics unreadable; counted again from the wheel");
        TimerMetrics::default()
    })
}

/// `config/consumerOrderInfo.json` as last written. A file that reads neither whole nor from
/// its `.bak` is started over (every queue unblocked: what was out is handed out again, at
/// least once), not a reason to refuse to start.
fn load_order_infos(disk: &dyn Disk, config: &BrokerConfig) -> OrderInfos {
    match load::<OrderInfoTable>(disk, config, ORDER_INFO) {
        Ok(table) => OrderInfos::from_table(table),
        Err(e) => {
            tracing::warn!(error = %e, "orderly POP state unreadable; every queue unblocked");
            OrderInfos::default()
        }
    }
}

/// `config/consumerFilter.json` as last written. Every filter in it is taken as dead until its
/// group's next heartbeat, so a file that reads neither whole nor from its `.bak` is started
/// over rather than a reason to refuse to start.
fn load_filters(disk: &dyn Disk, config: &BrokerConfig) -> ConsumerFilters {
    match load::<ConsumerFilterTable>(disk, config, FILTERS) {
        Ok(table) => ConsumerFilters::from_table(table, crate::clock::now_millis() as i64),
        Err(e) => {
            tracing::warn!(error = %e, "consumer filters unreadable; registered again by heartbeats");
            ConsumerFilters::default()
        }
    }
}

/// Everything read at startup.
pub(super) struct Loaded {
    pub topics: TopicTable,
    pub groups: SubscriptionGroups,
    pub offsets: ConsumerOffsets,
    pub delays: DelayOffsets,
    pub order: OrderInfos,
    pub filters: ConsumerFilters,
}

pub(super) fn load_all(disk: &dyn Disk, config: &BrokerConfig) -> Result<Loaded, String> {
    let topics: TopicConfigWrapper = load(disk, config, TOPICS)?;
    let groups: SubscriptionGroupWrapper = load(disk, config, GROUPS)?;
    Ok(Loaded {
        topics: TopicTable::from_wrapper(topics),
        groups: SubscriptionGroups::from_wrapper(groups),
        offsets: load(disk, config, OFFSETS)?,
        delays: load(disk, config, DELAYS)?,
        order: load_order_infos(disk, config),
        filters: load_filters(disk, config),
    })
}
