//! An operator's broker configuration changes under simulation: a SYNC_FLUSH broker whose
//! disk and network are under a swarm plan (two more power losses than a swarm's), and an
//! admin node that, 300 times, creates or changes a topic (UPDATE_AND_CREATE_TOPIC, with 1-8
//! queues), deletes one (DELETE_TOPIC_IN_BROKER), creates or changes a consumer group
//! (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, with a retry count of 1-16), deletes one
//! (DELETE_SUBSCRIPTIONGROUP), or reads them all back (GET_ALL_TOPIC_CONFIG, then one topic
//! alone with GET_TOPIC_CONFIG; GET_ALL_SUBSCRIPTIONGROUP_CONFIG): what mqadmin's updateTopic,
//! deleteTopic, updateSubGroup and deleteSubGroup and the dashboard's topic and group pages
//! do. Once the faults are over
//! the broker loses power once more and everything is read back.
//!
//! The promise checked ([`crate::registers`]): every topic's and group's configuration read
//! is one some write could still have left there. A change answered SUCCESS is in the
//! broker's config files (`topics.json`, `subscriptionGroup.json`), so no restart undoes it.
//!
//! Run one seed: `cargo sim --seed 7 --scenario broker_admin`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel_core::broker::subscriptions::{SubscriptionGroupConfig, SubscriptionGroupWrapper};
use petrel_core::model::{TopicConfig, TopicConfigWrapper};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    CreateTopicRequestHeader, DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    TopicRequestHeader,
};
use tokio::time::Instant;

use crate::cluster::{Cluster, Strike};
use crate::faults::{Fault, FaultKind, FaultPlan};
use crate::history::History;
use crate::registers::Operator;
use crate::report;

const TOPICS: [&str; 3] = ["SimAdminTopicA", "SimAdminTopicB", "SimAdminTopicC"];
const GROUPS: [&str; 3] = ["SimAdminGroupA", "SimAdminGroupB", "SimAdminGroupC"];
/// The admin's requests; the faults are placed along them.
const STEPS: u64 = 300;
/// Once the faults are over, the restarted broker answers within this.
const LIVENESS: Duration = Duration::from_secs(30);

fn topic_register(topic: &str) -> String {
    format!("topic {topic}")
}

fn group_register(group: &str) -> String {
    format!("group {group}")
}

/// A topic's configuration as the register holds it: its queues and permission.
fn topic_value(read: i32, write: i32, perm: i32) -> String {
    format!("{read} read, {write} write queues, perm {perm}")
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let schedule = FaultPlan::swarm_restarting().schedule(STEPS);
    report::note(format!("fault schedule of broker-a (a step is an admin request):\n{schedule}"));
    schedule.apply_latency();
    let history = History::default();
    let cluster = Cluster::builder().disk_faults(schedule.disk).build(&history);
    let broker = cluster.broker_addrs()[0].clone();
    let start = Instant::now();
    let shared = Operator::record(start);
    {
        let registers = &mut shared.lock().unwrap().registers;
        for topic in TOPICS {
            registers.took(&topic_register(topic), None, (start, start), "the start");
        }
        for group in GROUPS {
            registers.took(&group_register(group), None, (start, start), "the start");
        }
    }
    let steps = Arc::new(AtomicU64::new(0));
    let admin = cluster.client("admin");
    let operating = admin.spawn({
        let (shared, steps, broker) = (shared.clone(), steps.clone(), broker.clone());
        async move { operate(&Operator::new(&broker, &shared), &steps).await }
    });
    let strikes = schedule.faults.iter().map(|f| (f.after, Strike::Broker(0, f.clone()))).collect();
    cluster.play(strikes, || steps.load(Ordering::Acquire), || operating.is_finished()).await;
    cluster.heal();
    operating.await.unwrap();
    // What a change answered SUCCESS stood for is on disk: a last power loss, then
    // everything read back.
    let last =
        Fault { kind: FaultKind::PowerLoss, after: STEPS, down_for: Duration::from_millis(500) };
    cluster.strike(0, &last).await;
    let reading = admin.spawn({
        let shared = shared.clone();
        async move { read_back(&Operator::new(&broker, &shared)).await }
    });
    reading.await.unwrap();
    cluster.check_invariants();

    Operator::conclude(&shared, Vec::new());
    cluster.stop().await;
    format!("{STEPS} admin requests under {} faults", schedule.faults.len())
}

/// The admin's requests: [`STEPS`] of them, 50-250 ms apart, each drawn at random.
async fn operate(op: &Operator, steps: &AtomicU64) {
    for step in 0..STEPS {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(50..250))).await;
        let topic = TOPICS[thread_rng().gen_range(0..TOPICS.len())];
        let group = GROUPS[thread_rng().gen_range(0..GROUPS.len())];
        match thread_rng().gen_range(0..8) {
            0 | 1 => create_topic(op, topic, thread_rng().gen_range(1..=8)).await,
            2 => delete_topic(op, topic).await,
            3 | 4 => create_group(op, group, thread_rng().gen_range(1..=16)).await,
            5 => delete_group(op, group).await,
            6 => {
                read_topics(op).await;
                read_topic(op, topic).await;
            }
            _ => {
                read_groups(op).await;
            }
        }
        steps.store(step + 1, Ordering::Release);
    }
}

/// UPDATE_AND_CREATE_TOPIC with `queues` read and write queues, readable and writable.
async fn create_topic(op: &Operator, topic: &str, queues: i32) {
    let header = CreateTopicRequestHeader {
        topic: topic.to_owned(),
        default_topic: "TBW102".to_owned(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".to_owned(),
        topic_sys_flag: None,
        order: None,
        attributes: None,
        force: None,
    };
    let command = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header);
    let value = Some(topic_value(queues, queues, 6));
    op.write(("UPDATE_AND_CREATE_TOPIC", command), &topic_register(topic), value).await;
}

async fn delete_topic(op: &Operator, topic: &str) {
    let header = DeleteTopicRequestHeader { topic: topic.to_owned() };
    let command = RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_header(&header);
    op.write(("DELETE_TOPIC_IN_BROKER", command), &topic_register(topic), None).await;
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP with `retries` as its retryMaxTimes.
async fn create_group(op: &Operator, group: &str, retries: i32) {
    let config = SubscriptionGroupConfig {
        retry_max_times: retries,
        ..SubscriptionGroupConfig::named(group)
    };
    let command = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(to_json(&config, JsonStyle::Fastjson));
    let value = Some(format!("retryMaxTimes {retries}"));
    op.write(("UPDATE_AND_CREATE_SUBSCRIPTIONGROUP", command), &group_register(group), value).await;
}

async fn delete_group(op: &Operator, group: &str) {
    let header =
        DeleteSubscriptionGroupRequestHeader { group_name: group.to_owned(), clean_offset: None };
    let command = RemotingCommand::request(request::DELETE_SUBSCRIPTIONGROUP).with_header(&header);
    op.write(("DELETE_SUBSCRIPTIONGROUP", command), &group_register(group), None).await;
}

/// GET_ALL_TOPIC_CONFIG: a read of every topic's register; false when not answered.
async fn read_topics(op: &Operator) -> bool {
    let sent = Instant::now();
    let command = RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG);
    let table = match op.ask("GET_ALL_TOPIC_CONFIG", command).await {
        Some(r) if r.code == response::SUCCESS => {
            from_json::<TopicConfigWrapper>(&r.body).expect("a topic table").topic_config_table
        }
        _ => return false,
    };
    for topic in TOPICS {
        let value =
            table.get(topic).map(|c| topic_value(c.read_queue_nums, c.write_queue_nums, c.perm));
        op.read(&topic_register(topic), value, sent);
    }
    true
}

/// GET_TOPIC_CONFIG: a read of one topic's register (TOPIC_NOT_EXIST reads it absent);
/// false when not answered.
async fn read_topic(op: &Operator, topic: &str) -> bool {
    let sent = Instant::now();
    let header = TopicRequestHeader { topic: topic.to_owned() };
    let command = RemotingCommand::request(request::GET_TOPIC_CONFIG).with_header(&header);
    let value = match op.ask("GET_TOPIC_CONFIG", command).await {
        Some(r) if r.code == response::SUCCESS => {
            let c: TopicConfig = from_json(&r.body).expect("a topic's configuration");
            Some(topic_value(c.read_queue_nums, c.write_queue_nums, c.perm))
        }
        Some(r) if r.code == response::TOPIC_NOT_EXIST => None,
        _ => return false,
    };
    op.read(&topic_register(topic), value, sent);
    true
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: a read of every group's register; false when not
/// answered.
async fn read_groups(op: &Operator) -> bool {
    let sent = Instant::now();
    let command = RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG);
    let table = match op.ask("GET_ALL_SUBSCRIPTIONGROUP_CONFIG", command).await {
        Some(r) if r.code == response::SUCCESS => {
            let wrapper: SubscriptionGroupWrapper = from_json(&r.body).expect("a group table");
            wrapper.subscription_group_table
        }
        _ => return false,
    };
    for group in GROUPS {
        let value = table.get(group).map(|c| format!("retryMaxTimes {}", c.retry_max_times));
        op.read(&group_register(group), value, sent);
    }
    true
}

/// After the last power loss: both tables and each topic alone read, asked again until all
/// are answered, within [`LIVENESS`].
async fn read_back(op: &Operator) {
    let deadline = Instant::now() + LIVENESS;
    loop {
        let mut answered = read_topics(op).await && read_groups(op).await;
        for topic in TOPICS {
            answered &= read_topic(op, topic).await;
        }
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not answer {LIVENESS:?} after the faults"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
