//! Golden cases for the send planner: `testdata/send_plan.txt` holds commands and the plan
//! or refusal each must produce. `UPDATE_GOLDEN=1 cargo test -p petrel-core --test
//! send_plan_golden` rewrites the expected output; review the diff before committing it.
//!
//! Commands (one per case, `key=value` arguments; properties as `NAME:value,NAME:value`):
//!   reset [perm=] [max_body=] [auto_group=true|false] [slave=] [reject_transaction=] [timer=]
//!         [max_delay_sec=]  a new broker
//!   topic name= queues= [perm=]      group name= [retry_queues=] [retry_max=]
//!   send topic= [queue=] [props=] [reconsume=] [max=] [sysflag=] [body=] [batch] [default=]
//!        [default_queues=] [pick=] [now=] (ms; 1 700 000 000 000 when not named)
//!   back group= topic= [reconsume=] [delay=] [max=] [props=] [sysflag=] [pick=] [unreadable]
//!   due [props=] [reconsume=]
//! A plan prints where the message goes, its stored properties and what it creates (the
//! creations are then applied, as the broker would); a refusal prints its code and remark.
//! Every plan's invariants are checked.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod golden;

use std::collections::HashMap;

use petrel_core::broker::schedule::DelayLevels;
use petrel_core::broker::send_plan::{
    plan_due, plan_send, plan_send_back, BrokerView, FailedRecord, SendBackRequest, SendConfig,
    SendPlan, SendRequest,
};
use petrel_core::broker::subscriptions::{SubscriptionGroupConfig, SubscriptionGroups};
use petrel_core::broker::timer::TimerSettings;
use petrel_core::broker::topics::{topic_config, TopicTable};
use petrel_core::broker::{Refusal, AUTO_CREATE_TOPIC, SCHEDULE_TOPIC};
use petrel_core::codes::response_name;
use petrel_core::model::perm;
use petrel_core::record::{properties, put_property};

/// The clock of a send that names none.
const NOW_MS: i64 = 1_700_000_000_000;

struct Broker {
    topics: TopicTable,
    groups: SubscriptionGroups,
    config: SendConfig,
}

impl Broker {
    fn new(a: &HashMap<String, String>) -> Broker {
        let mut topics = TopicTable::default();
        let rw = perm::READ | perm::WRITE;
        topics.ensure(
            [
                topic_config(AUTO_CREATE_TOPIC, 8, perm::INHERIT | rw),
                topic_config(SCHEDULE_TOPIC, 18, rw),
            ],
            0,
        );
        let config = SendConfig {
            broker_permission: a.get("perm").map_or(6, |p| p.parse().unwrap()),
            broker_addr: "10.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            message_bytes_max: a.get("max_body").map_or(4 << 20, |m| m.parse().unwrap()),
            delay_levels: DelayLevels::default(),
            timer: TimerSettings::new(
                a.get("timer").is_none_or(|v| v == "true"),
                1_000,
                172_800,
                a.get("max_delay_sec").map_or(259_200, |m| m.parse().unwrap()),
            ),
            auto_create_group: a.get("auto_group").is_none_or(|v| v == "true"),
            slave: a.get("slave").is_some_and(|v| v == "true"),
            reject_transaction_message: a.get("reject_transaction").is_some_and(|v| v == "true"),
        };
        Broker { topics, groups: SubscriptionGroups::default(), config }
    }

    fn view(&self) -> BrokerView<'_> {
        BrokerView { topics: &self.topics, groups: &self.groups, config: &self.config }
    }

    /// Prints a plan and applies what it creates.
    fn show(&mut self, plan: Result<SendPlan, Refusal>, sent: &[u8]) -> String {
        let plan = match plan {
            Ok(plan) => plan,
            Err(refusal) => {
                return format!("refuse {}: {}\n", response_name(refusal.code), refusal.remark)
            }
        };
        plan.check_invariants();
        let stored = plan.stored_properties(sent, || "GENERATED".into());
        let mut out = format!(
            "store {}:{} reconsume={} sysflag={}{}\n",
            plan.topic,
            plan.queue_id,
            plan.reconsume_times,
            plan.sys_flag,
            if plan.dead_letter { " dead-letter" } else { "" }
        );
        let shown: Vec<String> = properties(&stored)
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
            .collect();
        out.push_str(&format!("properties: {}\n", shown.join(" ")));
        for topic in &plan.create_topics {
            out.push_str(&format!(
                "create topic {} queues={} perm={}\n",
                topic.topic_name, topic.write_queue_nums, topic.perm
            ));
            self.topics.ensure([topic.clone()], 1);
        }
        if let Some(group) = &plan.create_group {
            out.push_str(&format!("create group {}\n", group.group_name));
            self.groups.add(group.clone(), 1);
        }
        self.topics.check_invariants();
        out
    }
}

fn args(words: &[&str]) -> HashMap<String, String> {
    words
        .iter()
        .map(|w| w.split_once('=').unwrap_or((w, "")))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn props(spec: Option<&String>) -> Vec<u8> {
    let mut out = Vec::new();
    for pair in spec.map(String::as_str).unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once(':').expect("NAME:value");
        put_property(&mut out, name, value);
    }
    out
}

fn run(broker: &mut Broker, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let a = args(&words[1..]);
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let int = |k: &str, default: i32| a.get(k).map_or(default, |v| v.parse().unwrap());
    let pick = a.get("pick").map_or(0, |v| v.parse().unwrap());
    let sent = props(a.get("props"));
    match words[0] {
        "reset" => {
            *broker = Broker::new(&a);
            String::new()
        }
        "topic" => {
            broker.topics.put(topic_config(&get("name"), int("queues", 4), int("perm", 6)), 1);
            String::new()
        }
        "group" => {
            let config = SubscriptionGroupConfig {
                group_name: get("name"),
                retry_queue_nums: int("retry_queues", 1),
                retry_max_times: int("retry_max", 16),
                ..Default::default()
            };
            broker.groups.put(config, 1);
            String::new()
        }
        "send" => {
            let (topic, default) =
                (get("topic"), a.get("default").cloned().unwrap_or("TBW102".into()));
            let request = SendRequest {
                topic: &topic,
                queue_id: int("queue", -1),
                sys_flag: int("sysflag", 0),
                properties: &sent,
                reconsume_times: int("reconsume", 0),
                max_reconsume_times: a.get("max").map(|m| m.parse().unwrap()),
                default_topic: &default,
                default_topic_queue_nums: int("default_queues", 4),
                body_bytes: int("body", 100) as usize,
                batch: a.contains_key("batch"),
                producer: "10.0.0.9:50000".parse().unwrap(),
                now_ms: a.get("now").map_or(NOW_MS, |n| n.parse().unwrap()),
            };
            let plan = plan_send(&broker.view(), &request, pick);
            broker.show(plan, &sent)
        }
        "back" => {
            let (group, topic) = (get("group"), get("topic"));
            let record = FailedRecord {
                topic: &topic,
                reconsume_times: int("reconsume", 0),
                properties: &sent,
                sys_flag: int("sysflag", 0),
                msg_id: "0A00000100002A9F0000000000001234",
            };
            let request = SendBackRequest {
                group: &group,
                delay_level: int("delay", 0),
                max_reconsume_times: a.get("max").map(|m| m.parse().unwrap()),
                offset: 4660,
                record: (!a.contains_key("unreadable")).then_some(record),
            };
            match plan_send_back(&broker.view(), &request, pick) {
                Ok(None) => "nothing stored: the group keeps no retries\n".into(),
                Ok(Some(plan)) => broker.show(Ok(plan), &sent),
                Err(refusal) => broker.show(Err(refusal), &sent),
            }
        }
        "due" => {
            let plan = plan_due(&sent, int("sysflag", 0), int("reconsume", 0));
            broker.show(plan, &sent)
        }
        other => panic!("unknown command {other}"),
    }
}

#[test]
fn send_plan_golden() {
    let mut broker = Broker::new(&HashMap::new());
    golden::check("testdata/send_plan.txt", |command| run(&mut broker, command));
}
