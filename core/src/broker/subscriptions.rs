//! Subscription groups (`SubscriptionGroupManager`): the consumer groups a broker admits, and
//! how each retries (`retryQueueNums`, `retryMaxTimes`). Kept as
//! `config/subscriptionGroup.json`: `{"subscriptionGroupTable":{name:{...}},"dataVersion":{...}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::DataVersion;
use crate::Millis;

/// One group's settings (`SubscriptionGroupConfig`), RocketMQ's fields and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub attributes: BTreeMap<String, String>,
    pub broker_id: i64,
    pub consume_broadcast_enable: bool,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_message_orderly: bool,
    pub consume_timeout_minute: i32,
    pub group_name: String,
    pub group_sys_flag: i32,
    pub notify_consumer_ids_changed_enable: bool,
    pub retry_max_times: i32,
    pub retry_queue_nums: i32,
    pub which_broker_when_consume_slowly: i64,
}

/// The groups a RocketMQ broker creates at start (`SubscriptionGroupManager.init`): mqadmin
/// pulls as TOOLS_CONSUMER, and the others are reserved for RocketMQ's own services.
pub const SYSTEM_GROUPS: [&str; 8] = [
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_RMQ_SYS_TRANS",
];

impl SubscriptionGroupConfig {
    /// A group of this name with RocketMQ's defaults (an auto-created group).
    pub fn named(group: &str) -> SubscriptionGroupConfig {
        SubscriptionGroupConfig { group_name: group.to_owned(), ..Default::default() }
    }
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            attributes: BTreeMap::new(),
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: false,
            consume_timeout_minute: 15,
            group_name: String::new(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            which_broker_when_consume_slowly: 1,
        }
    }
}

/// The group table as the file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub data_version: DataVersion,
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// The groups and their version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionGroups {
    groups: BTreeMap<String, SubscriptionGroupConfig>,
    version: DataVersion,
}

/// A group the broker does not know and will not create.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription group [{0}] does not exist; create it (updateSubGroup) or enable autoCreateSubscriptionGroup")]
pub struct GroupMissing(pub String);

impl SubscriptionGroups {
    pub fn from_wrapper(wrapper: SubscriptionGroupWrapper) -> SubscriptionGroups {
        SubscriptionGroups {
            groups: wrapper.subscription_group_table,
            version: wrapper.data_version,
        }
    }

    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        SubscriptionGroupWrapper {
            data_version: self.version.clone(),
            subscription_group_table: self.groups.clone(),
        }
    }

    pub fn get(&self, group: &str) -> Option<&SubscriptionGroupConfig> {
        self.groups.get(group)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn bump(&mut self, now: Millis) {
        self.version.counter += 1;
        self.version.timestamp = now as i64;
    }

    /// The group, created with the defaults when `auto_create` allows
    /// (`findSubscriptionGroupConfig`). Returns it and whether it was created now.
    pub fn find_or_create(
        &mut self,
        group: &str,
        auto_create: bool,
        now: Millis,
    ) -> Result<(&SubscriptionGroupConfig, bool), GroupMissing> {
        if self.groups.contains_key(group) {
            return Ok((&self.groups[group], false));
        }
        if !auto_create {
            return Err(GroupMissing(group.to_owned()));
        }
        let config = SubscriptionGroupConfig::named(group);
        self.groups.insert(group.to_owned(), config);
        self.bump(now);
        Ok((&self.groups[group], true))
    }

    /// Adds a group unless one of its name exists. Returns true when added.
    pub fn add(&mut self, config: SubscriptionGroupConfig, now: Millis) -> bool {
        if self.groups.contains_key(&config.group_name) {
            return false;
        }
        self.groups.insert(config.group_name.clone(), config);
        self.bump(now);
        true
    }

    /// Creates or replaces a group. Returns true when the table changed.
    pub fn put(&mut self, config: SubscriptionGroupConfig, now: Millis) -> bool {
        if self.groups.get(&config.group_name) == Some(&config) {
            return false;
        }
        self.groups.insert(config.group_name.clone(), config);
        self.bump(now);
        true
    }

    pub fn remove(&mut self, group: &str, now: Millis) -> bool {
        let removed = self.groups.remove(group).is_some();
        if removed {
            self.bump(now);
        }
        removed
    }

    pub fn check_invariants(&self) {
        for (name, config) in &self.groups {
            assert_eq!(name, &config.group_name, "group filed under another name");
            assert!(config.retry_queue_nums >= 0, "{config:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_created_only_when_allowed() {
        let mut groups = SubscriptionGroups::default();
        let err = groups.find_or_create("G", false, 1).unwrap_err();
        assert!(err.to_string().contains("autoCreateSubscriptionGroup"));
        let (config, created) = groups.find_or_create("G", true, 2).unwrap();
        assert!(created);
        assert_eq!((config.retry_max_times, config.retry_queue_nums), (16, 1));
        let (_, created) = groups.find_or_create("G", false, 3).unwrap();
        assert!(!created);
        groups.check_invariants();
        let round = SubscriptionGroups::from_wrapper(groups.wrapper());
        assert_eq!(round, groups);
    }

    #[test]
    fn json_uses_rocketmq_names() {
        let mut groups = SubscriptionGroups::default();
        groups.find_or_create("G", true, 5).unwrap();
        let json = serde_json::to_string(&groups.wrapper()).unwrap();
        assert!(json.contains(r#""subscriptionGroupTable":{"G":{"#), "{json}");
        assert!(json.contains(r#""retryMaxTimes":16"#), "{json}");
        assert!(json.contains(r#""dataVersion":{"counter":1"#), "{json}");
    }
}
