//! The NameServer's KV config: string values by namespace and key (RocketMQ `KVConfigManager`).
//! Used for ORDER_TOPIC_CONFIG and by admin tools. Pure; the shell persists it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The KV table, in the shape of RocketMQ's `kvConfig.json` (`{"configTable":{ns:{k:v}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvConfig {
    pub config_table: BTreeMap<String, BTreeMap<String, String>>,
}

/// The namespace whose values become a route's `orderTopicConf`.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

impl KvConfig {
    /// Sets a value; returns true when the table changed.
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) -> bool {
        let table = self.config_table.entry(namespace.to_owned()).or_default();
        table.insert(key.to_owned(), value.to_owned()).as_deref() != Some(value)
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.config_table.get(namespace)?.get(key).map(String::as_str)
    }

    /// Removes a value; an emptied namespace goes too. Returns true when the table changed.
    pub fn delete(&mut self, namespace: &str, key: &str) -> bool {
        let Some(table) = self.config_table.get_mut(namespace) else { return false };
        let removed = table.remove(key).is_some();
        if table.is_empty() {
            self.config_table.remove(namespace);
        }
        removed
    }

    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.config_table.get(namespace)
    }

    pub fn check_invariants(&self) {
        for (namespace, table) in &self.config_table {
            assert!(!table.is_empty(), "empty namespace {namespace} kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete() {
        let mut kv = KvConfig::default();
        assert!(kv.put("ns", "k", "v"));
        assert!(!kv.put("ns", "k", "v"));
        assert_eq!(kv.get("ns", "k"), Some("v"));
        assert!(kv.delete("ns", "k"));
        assert!(!kv.delete("ns", "k"));
        assert!(kv.namespace("ns").is_none());
        kv.check_invariants();
    }
}
