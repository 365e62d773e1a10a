//! Golden cases for the route table: `testdata/route_table.txt` holds commands and the output
//! each must produce. `UPDATE_GOLDEN=1 cargo test -p petrel-core --test route_golden` rewrites
//! the expected output; review the diff before committing it.
//!
//! Commands (one per case, `key=value` arguments):
//!   register conn= now= cluster= name= addr= id= [version=] [topics=a:r:w:perm,..] [timeout=] [acting=]
//!   unregister cluster= addr= name= id=      close conn=      tick now=
//!   route topic=      cluster      topics [cluster=]      delete topic= [cluster=]
//!   perm name= write=true|false      reset [acting] [delete-with-registration]
//! After each command every action the table emitted is printed, then invariants are checked.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod golden;

use std::collections::{BTreeMap, HashMap};

use petrel_core::model::{DataVersion, TopicConfig, TopicConfigWrapper};
use petrel_core::route::{Registration, RouteTable, RouteTableConfig};

fn args(words: &[&str]) -> HashMap<String, String> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn num(a: &HashMap<String, String>, key: &str) -> u64 {
    a.get(key).unwrap_or_else(|| panic!("missing {key}")).parse().expect("a number")
}

fn topics(spec: &str, version: i64) -> TopicConfigWrapper {
    let mut table = BTreeMap::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        let config = TopicConfig {
            topic_name: parts[0].to_owned(),
            read_queue_nums: parts.get(1).map_or(4, |v| v.parse().expect("queues")),
            write_queue_nums: parts.get(2).map_or(4, |v| v.parse().expect("queues")),
            perm: parts.get(3).map_or(6, |v| v.parse().expect("perm")),
            ..TopicConfig::default()
        };
        table.insert(parts[0].to_owned(), config);
    }
    TopicConfigWrapper {
        data_version: DataVersion { counter: version, state_version: 0, timestamp: version },
        topic_config_table: table,
    }
}

fn register(table: &mut RouteTable, a: &HashMap<String, String>) -> String {
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let version = a.get("version").map_or(1, |v| v.parse().expect("version"));
    let reg = Registration {
        cluster_name: get("cluster"),
        broker_addr: get("addr"),
        broker_name: get("name"),
        broker_id: num(a, "id") as i64,
        ha_server_addr: format!("ha-{}", get("addr")),
        heartbeat_timeout_ms: a.get("timeout").map(|t| t.parse().expect("ms")),
        enable_acting_master: a.get("acting").map(|v| v == "true"),
        topics: a.get("topics").map(|s| topics(s, version)),
        ..Registration::default()
    };
    format!("{:?}\n", table.register(num(a, "now"), num(a, "conn"), reg))
}

fn run(table: &mut RouteTable, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let a = args(&words[1..]);
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let json = |v: &dyn erased::Json| v.pretty();
    let mut out = match words[0] {
        "register" => register(table, &a),
        "unregister" => {
            table.unregister(&get("cluster"), &get("addr"), &get("name"), num(&a, "id") as i64);
            String::new()
        }
        "close" => {
            table.connection_closed(num(&a, "conn"));
            String::new()
        }
        "tick" => {
            table.tick(num(&a, "now"));
            format!("next scan: {:?}\n", table.poll_timeout())
        }
        "route" => match table.topic_route(&get("topic")) {
            Some(route) => json(&route),
            None => "no route\n".to_owned(),
        },
        "cluster" => json(&table.cluster_info()),
        "system" => json(&table.system_topics()),
        "topics" => match a.get("cluster") {
            Some(c) => format!("{:?}\n", table.topics_of_cluster(c)),
            None => format!("{:?}\n", table.topics()),
        },
        "delete" => format!(
            "removed: {}\n",
            table.delete_topic(&get("topic"), a.get("cluster").map(String::as_str))
        ),
        "perm" => {
            format!("changed: {}\n", table.set_write_perm(&get("name"), get("write") == "true"))
        }
        other => panic!("unknown command {other}"),
    };
    while let Some(action) = table.poll_action() {
        out.push_str(&format!("action: {action:?}\n"));
    }
    table.check_invariants();
    out
}

mod erased {
    pub trait Json {
        fn pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).expect("model data serializes") + "\n"
        }
    }
}

#[test]
fn route_table_golden() {
    let mut table = RouteTable::new(RouteTableConfig::default());
    golden::check("testdata/route_table.txt", |command| {
        if !command.starts_with("reset") {
            return run(&mut table, command);
        }
        table = RouteTable::new(RouteTableConfig {
            support_acting_master: command.contains("acting"),
            delete_topic_with_broker_registration: command.contains("delete-with-registration"),
            ..RouteTableConfig::default()
        });
        String::new()
    });
}
