//! The SQL92 filters consumer groups registered (RocketMQ's `ConsumerFilterManager`), and their
//! file `config/consumerFilter.json`.
//!
//! A heartbeat registers each SQL92 subscription of a group, compiled, with the subscription's
//! version; a pull that names no expression of its own is filtered by the group's registered
//! one, and is refused FILTER_DATA_NOT_EXIST when there is none or FILTER_DATA_NOT_LATEST when
//! it is older than the version the pull names. A registration with an older version than the
//! one held is ignored (heartbeats race); a group that leaves, or stops subscribing a topic,
//! leaves its filter dead, and a filter dead for a day is forgotten. At load every filter is
//! taken as dead until its group comes back, as RocketMQ does. No I/O: the shell writes the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::filter::{is_tag_type, SubscriptionData, SQL92};
use super::sql92::Sql92;

/// How long a dead filter is kept (`filterDataCleanTimeSpan`, 24 h).
pub const FILTER_DEAD_KEPT_MS: i64 = 24 * 3600 * 1000;
/// A filter loaded with no death time is dated this long before the load.
const LOADED_DEAD_BEFORE_MS: i64 = 30 * 1000;

/// One group's filter on one topic (`ConsumerFilterData`), as the file keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterData {
    pub consumer_group: String,
    pub topic: String,
    pub expression: String,
    pub expression_type: String,
    pub born_time: i64,
    /// 0 while a member subscribes with it.
    pub dead_time: i64,
    pub client_version: i64,
    /// fastjson writes `isDead()` as a field; read back, it is recomputed from `deadTime`.
    pub dead: bool,
    #[serde(skip)]
    pub compiled: Option<Arc<Sql92>>,
}

impl FilterData {
    pub fn is_dead(&self) -> bool {
        self.dead_time > 0
    }
}

/// One topic's filters by group (`FilterDataMapByTopic`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicFilters {
    pub group_filter_data: BTreeMap<String, FilterData>,
    pub topic: String,
}

/// `consumerFilter.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerFilterTable {
    pub filter_data_by_topic: BTreeMap<String, TopicFilters>,
}

/// The registry. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct ConsumerFilters {
    by_topic: BTreeMap<String, BTreeMap<String, FilterData>>,
}

impl ConsumerFilters {
    /// From the file: each filter compiled again (one that no longer compiles is dropped, its
    /// group's next heartbeat registers it again) and taken as dead.
    pub fn from_table(table: ConsumerFilterTable, now: i64) -> ConsumerFilters {
        let mut by_topic: BTreeMap<String, BTreeMap<String, FilterData>> = BTreeMap::new();
        for (topic, filters) in table.filter_data_by_topic {
            for (group, mut data) in filters.group_filter_data {
                let Ok(compiled) = Sql92::parse(&data.expression) else { continue };
                if data.expression_type != SQL92 {
                    continue;
                }
                data.compiled = Some(Arc::new(compiled));
                data.topic.clone_from(&topic);
                data.consumer_group.clone_from(&group);
                if data.dead_time == 0 {
                    data.dead_time = (now - LOADED_DEAD_BEFORE_MS).max(data.born_time).max(1);
                }
                data.dead = true;
                by_topic.entry(topic.clone()).or_default().insert(group, data);
            }
        }
        ConsumerFilters { by_topic }
    }

    /// The file's contents; dead filters past [`FILTER_DEAD_KEPT_MS`] are forgotten first, as
    /// RocketMQ cleans before it encodes.
    pub fn to_table(&mut self, now: i64) -> ConsumerFilterTable {
        self.clean(now);
        let filter_data_by_topic = self
            .by_topic
            .iter()
            .map(|(topic, groups)| {
                let mut group_filter_data = groups.clone();
                for data in group_filter_data.values_mut() {
                    data.dead = data.is_dead();
                }
                (topic.clone(), TopicFilters { group_filter_data, topic: topic.clone() })
            })
            .collect();
        ConsumerFilterTable { filter_data_by_topic }
    }

    /// A heartbeat's subscriptions of `group`: SQL92 ones registered, the group's filters on
    /// topics it no longer subscribes marked dead. A subscription that does not compile drops
    /// the group's filter on its topic, as RocketMQ does (the heartbeat refuses such
    /// subscriptions before this). True when anything changed.
    pub fn register(&mut self, group: &str, subscriptions: &[SubscriptionData], now: i64) -> bool {
        let mut changed = false;
        for sub in subscriptions {
            let kind = sub.expression_type.as_deref();
            if is_tag_type(kind) || sub.sub_string.is_empty() || kind != Some(SQL92) {
                continue;
            }
            changed |= self.register_one(&sub.topic, group, &sub.sub_string, sub.sub_version, now);
        }
        for (topic, groups) in &mut self.by_topic {
            let Some(data) = groups.get_mut(group) else { continue };
            if !data.is_dead() && !subscriptions.iter().any(|s| s.topic == *topic) {
                data.dead_time = now.max(1);
                changed = true;
            }
        }
        changed
    }

    fn register_one(
        &mut self,
        topic: &str,
        group: &str,
        expression: &str,
        version: i64,
        now: i64,
    ) -> bool {
        let groups = self.by_topic.entry(topic.to_owned()).or_default();
        if let Some(old) = groups.get_mut(group) {
            if version < old.client_version || (version == old.client_version && !old.is_dead()) {
                return false;
            }
            if version == old.client_version || old.expression == expression {
                old.client_version = version;
                old.dead_time = 0;
                return true;
            }
        }
        let Ok(compiled) = Sql92::parse(expression) else {
            // RocketMQ drops the old filter, so that the client's pulls report the error.
            groups.remove(group);
            self.by_topic.retain(|_, groups| !groups.is_empty());
            return true;
        };
        let data = FilterData {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            expression: expression.to_owned(),
            expression_type: SQL92.to_owned(),
            born_time: now,
            dead_time: 0,
            client_version: version,
            dead: false,
            compiled: Some(Arc::new(compiled)),
        };
        groups.insert(group.to_owned(), data);
        true
    }

    /// The group's last member left: its filters are dead from `now`.
    pub fn unregister(&mut self, group: &str, now: i64) -> bool {
        let mut changed = false;
        for groups in self.by_topic.values_mut() {
            if let Some(data) = groups.get_mut(group).filter(|d| !d.is_dead()) {
                data.dead_time = now.max(1);
                changed = true;
            }
        }
        changed
    }

    /// The filter `group` registered for `topic`, dead or alive.
    pub fn get(&self, topic: &str, group: &str) -> Option<&FilterData> {
        self.by_topic.get(topic)?.get(group)
    }

    /// Forgets filters dead for [`FILTER_DEAD_KEPT_MS`] and topics left with none.
    ///
    /// True when it forgot any.
    pub fn clean(&mut self, now: i64) -> bool {
        let count = |by_topic: &BTreeMap<String, BTreeMap<String, FilterData>>| -> usize {
            by_topic.values().map(BTreeMap::len).sum()
        };
        let before = count(&self.by_topic);
        for groups in self.by_topic.values_mut() {
            groups.retain(|_, d| {
                !d.is_dead() || now.saturating_sub(d.dead_time) < FILTER_DEAD_KEPT_MS
            });
        }
        self.by_topic.retain(|_, groups| !groups.is_empty());
        before != count(&self.by_topic)
    }

    pub fn check_invariants(&self) {
        for (topic, groups) in &self.by_topic {
            assert!(!groups.is_empty(), "topic {topic} is kept with no filter");
            for (group, data) in groups {
                assert_eq!(
                    (&data.topic, &data.consumer_group),
                    (topic, group),
                    "filter filed under another key"
                );
                assert_eq!(data.expression_type, SQL92, "only SQL92 filters are registered");
                let compiled = data.compiled.as_ref().expect("every registered filter is compiled");
                assert_eq!(**compiled, Sql92::parse(&data.expression).expect("it compiled once"));
                assert!(data.dead_time >= 0, "death time before the epoch");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::sql92::EncodedProperties;
    use crate::record::encode_properties;

    fn sub(topic: &str, expression: &str, version: i64) -> SubscriptionData {
        SubscriptionData {
            topic: topic.into(),
            sub_string: expression.into(),
            expression_type: Some(SQL92.into()),
            sub_version: version,
            ..SubscriptionData::default()
        }
    }

    fn selects(filters: &ConsumerFilters, topic: &str, group: &str, value: &str) -> bool {
        let data = filters.get(topic, group).expect("registered");
        let props = encode_properties(&[("a", value)]);
        data.compiled.as_ref().expect("compiled").matches(&EncodedProperties(&props))
    }

    #[test]
    fn newer_versions_replace_older_ones_are_ignored() {
        let mut filters = ConsumerFilters::default();
        assert!(filters.register("G", &[sub("T", "a > 1", 10)], 1000));
        assert!(selects(&filters, "T", "G", "2"));
        assert!(!filters.register("G", &[sub("T", "a > 5", 9)], 1001), "an older heartbeat");
        assert!(selects(&filters, "T", "G", "2"));
        assert!(filters.register("G", &[sub("T", "a > 5", 11)], 1002));
        assert!(!selects(&filters, "T", "G", "2"));
        assert_eq!(filters.get("T", "G").unwrap().client_version, 11);
        filters.check_invariants();
    }

    #[test]
    fn leaving_kills_and_a_day_later_forgets() {
        let mut filters = ConsumerFilters::default();
        filters.register("G", &[sub("T", "a > 1", 1), sub("U", "a < 1", 1)], 1000);
        assert!(filters.register("G", &[sub("T", "a > 1", 1)], 2000), "U dropped");
        assert!(filters.get("U", "G").unwrap().is_dead());
        assert!(!filters.get("T", "G").unwrap().is_dead());
        assert!(filters.unregister("G", 3000));
        assert!(filters.get("T", "G").unwrap().is_dead());
        assert!(filters.register("G", &[sub("T", "a > 1", 1)], 4000), "same version revives");
        assert!(!filters.get("T", "G").unwrap().is_dead());
        assert!(filters.clean(2000 + FILTER_DEAD_KEPT_MS));
        assert!(!filters.clean(2000 + FILTER_DEAD_KEPT_MS), "nothing more to forget");
        assert!(filters.get("U", "G").is_none());
        assert!(filters.get("T", "G").is_some());
        filters.check_invariants();
    }

    #[test]
    fn the_file_reads_back_with_every_filter_dead() {
        let mut filters = ConsumerFilters::default();
        filters.register("G", &[sub("T", "a > 1", 7)], 1000);
        let table = filters.to_table(5000);
        let json = serde_json::to_string(&table).unwrap();
        assert!(json.contains(r#""filterDataByTopic":{"T":{"groupFilterData":{"G":{"#), "{json}");
        assert!(json.contains(r#""expressionType":"SQL92""#) && json.contains(r#""dead":false"#));
        let back: ConsumerFilterTable = serde_json::from_str(&json).unwrap();
        let loaded = ConsumerFilters::from_table(back, 100_000);
        let data = loaded.get("T", "G").unwrap();
        assert_eq!((data.dead_time, data.client_version), (70_000, 7));
        assert!(selects(&loaded, "T", "G", "2"));
        loaded.check_invariants();
    }
}
