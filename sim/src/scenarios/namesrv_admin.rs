//! An operator's NameServer requests under simulation: a NameServer keeping its KV config on a
//! simulated disk, three stand-in brokers registering a topic every 10 s, and an admin node
//! that, 300 times, does one of what mqadmin and the dashboard do to a NameServer: puts,
//! deletes, gets and lists KV entries (mqadmin's updateKvConfig and deleteKvConfig, a client's
//! reads, and the ORDER_TOPIC_CONFIG entry routes carry), sets and reads a setting that takes effect at once
//! (`orderMessageEnable`, UPDATE_/GET_NAMESRV_CONFIG), takes a broker's write permission away
//! and gives it back (wipeWritePerm, addWritePerm), reads the topic's route, and deletes a
//! second topic from the NameServer (DELETE_TOPIC_IN_NAMESRV, as deleteTopic does) and reads
//! which brokers it is routed to. The faults, from a swarm plan, strike the NameServer: power losses (its disk keeps, drops or tears each
//! unsynced write), partitions, one-way cuts, latency, failed fsyncs, full disks and flipped
//! reads. Once they are over the NameServer loses power once more and every KV entry is read
//! back.
//!
//! The promise checked ([`crate::registers`]): every value read (a KV entry, by GET or by list
//! or in a route's `orderTopicConf`; the setting, by GET_NAMESRV_CONFIG or by a route carrying
//! `orderTopicConf`; a broker's permission in the route; whether the deleted topic is routed to
//! a broker) is one some write could still have
//! left there. A KV change answered SUCCESS is on disk, so no restart loses it; the setting
//! and the permissions go back to their defaults at a restart (the NameServer starts from its
//! configuration, the brokers' next registrations bring their own permissions), and a broker's
//! registration may give its permission back and route the deleted topic to it again (a
//! first registration does: after a restart, or when the NameServer had dropped the broker, a
//! fact the admin cannot see); a restart forgets every route until the brokers register.
//!
//! Run one seed: `cargo sim --seed 7 --scenario namesrv_admin`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use petrel::namesrv::{self, NamesrvConfig};
use petrel_core::kv::NAMESPACE_ORDER_TOPIC_CONFIG;
use petrel_core::model::{KvTable, TopicRouteData};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::from_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::namesrv::{
    BrokerPermRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetKvConfigResponseHeader,
    GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader, KvConfigKeyRequestHeader,
    PutKvConfigRequestHeader,
};
use petrel_storage::disk::{SimDisk, SimDiskFaults};
use tokio::time::Instant;

use crate::faults::{FaultKind, FaultPlan};
use crate::registers::{Operator, Recorded, Registers};
use crate::{report, SimBroker};

const NAMESRV: &str = "10.0.0.1:9876";
const TOPIC: &str = "SimOrderTopic";
const BROKERS: usize = 3;
/// The admin's requests; the faults are placed along them.
const STEPS: u64 = 300;
/// How often the brokers register: RocketMQ's shortest `registerNameServerPeriod`.
const REGISTER_EVERY: Duration = Duration::from_secs(10);
const KV_PATH: &str = "/namesrv/kvConfig.json";
const NAMESPACES: [&str; 2] = [NAMESPACE_ORDER_TOPIC_CONFIG, "SimNamespace"];
const KEYS: [&str; 3] = [TOPIC, "SimKeyA", "SimKeyB"];
/// The setting changed and read back; false by default.
const SETTING: &str = "orderMessageEnable";
/// A topic the brokers register and the operator deletes from the NameServer
/// (DELETE_TOPIC_IN_NAMESRV): gone until a broker's first registration brings it back.
const DELETED_TOPIC: &str = "SimDeletedTopic";
/// The value of a broker's `routed` register while the NameServer routes [`DELETED_TOPIC`] to it.
const ROUTED: &str = "routed";
/// A broker's topics' permission as it registers them (read and write), and wiped (read).
const PERM_READ_WRITE: &str = "6";
/// Once the faults are over, the NameServer answers within this.
const LIVENESS: Duration = Duration::from_secs(20);

fn kv_register(namespace: &str, key: &str) -> String {
    format!("kv {namespace}/{key}")
}

fn perm_register(broker: &str) -> String {
    format!("perm of {broker}")
}

fn routed_register(broker: &str) -> String {
    format!("{DELETED_TOPIC} routed to {broker}")
}

fn broker_name(i: usize) -> String {
    format!("broker-{i}")
}

type Shared = Arc<Mutex<Recorded>>;

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    // Two more power losses than a swarm's: what this scenario promises is about restarts.
    let mut plan = FaultPlan::swarm();
    plan.power_losses += 2;
    let schedule = plan.schedule(STEPS);
    report::note(format!(
        "fault schedule of the NameServer (a step is an admin request):\n{schedule}"
    ));
    schedule.apply_latency();
    let start = Instant::now();
    let shared = Operator::record(start);
    {
        let registers = &mut shared.lock().unwrap().registers;
        let at_start = (start, start);
        for namespace in NAMESPACES {
            for key in KEYS {
                registers.took(&kv_register(namespace, key), None, at_start, "the start");
            }
        }
        forgotten(registers, at_start, "the start");
    }
    let disk = SimDisk::new(thread_rng().gen(), 1 << 24, schedule.disk);
    let namesrv = spawn_namesrv(&handle, disk.clone());
    let brokers: Vec<NodeHandle> =
        (0..BROKERS).map(|i| spawn_broker(&handle, i, &shared)).collect();
    let steps = Arc::new(AtomicU64::new(0));
    let admin = handle.create_node().name("admin").ip([10, 0, 2, 1].into()).build();
    let operating = admin.spawn({
        let (shared, steps) = (shared.clone(), steps.clone());
        async move { operate(&shared, &steps).await }
    });

    for fault in &schedule.faults {
        while steps.load(Ordering::Acquire) < fault.after {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match fault.kind {
            FaultKind::PowerLoss => {
                power_loss(&handle, &namesrv, &disk, fault.down_for, &shared).await
            }
            _ => crate::controllers::cut(namesrv.id(), fault).await,
        }
    }
    disk.set_faults(SimDiskFaults::default());
    operating.await.unwrap();
    // What a KV change answered SUCCESS stood for is on disk: a last power loss, then every
    // entry read back.
    power_loss(&handle, &namesrv, &disk, Duration::from_millis(500), &shared).await;
    let reading = admin.spawn({
        let shared = shared.clone();
        async move { read_back(&shared).await }
    });
    reading.await.unwrap();

    Operator::conclude(&shared, Vec::new());
    for node in brokers.iter().chain([&namesrv, &admin]) {
        handle.kill(node.id());
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let stats = disk.stats();
    format!(
        "{STEPS} admin requests; the NameServer lost power {} times, {} of its fsyncs and {} writes failed",
        stats.crashes, stats.failed_syncs, stats.enospc
    )
}

/// The NameServer node: started again at each power-on, after a second when a start fails
/// (a KV file that does not read), as a supervisor would.
fn spawn_namesrv(handle: &Handle, disk: SimDisk) -> NodeHandle {
    handle
        .create_node()
        .name("namesrv")
        .ip([10, 0, 0, 1].into())
        .init(move || {
            let disk = disk.clone();
            async move {
                let config = NamesrvConfig {
                    kv_config_path: Some(KV_PATH.into()),
                    ..NamesrvConfig::default()
                };
                let _running = loop {
                    match namesrv::start(config.clone(), Arc::new(disk.clone())).await {
                        Ok(running) => break running,
                        Err(e) => {
                            tracing::warn!(error = %e, "the NameServer does not start");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                };
                std::future::pending::<()>().await;
            }
        })
        .build()
}

/// Kills the NameServer, crashes its disk and powers it on after `down_for`. The setting and
/// the permissions go back to their defaults somewhere in between.
async fn power_loss(
    handle: &Handle,
    node: &NodeHandle,
    disk: &SimDisk,
    down_for: Duration,
    shared: &Shared,
) {
    let killed = Instant::now();
    handle.kill(node.id());
    disk.crash();
    tokio::time::sleep(down_for).await;
    handle.restart(node.id());
    forgotten(&mut shared.lock().unwrap().registers, (killed, Instant::now()), "a restart");
}

/// What a NameServer holds only in memory, back to what it starts with within `window`: the
/// setting's default, each broker's own permission, and no route of the deleted topic.
fn forgotten(registers: &mut Registers, window: (Instant, Instant), what: &'static str) {
    registers.took(SETTING, Some("false".into()), window, what);
    for i in 0..BROKERS {
        let (broker, value) = (broker_name(i), Some(PERM_READ_WRITE.into()));
        registers.took(&perm_register(&broker), value, window, what);
        registers.took(&routed_register(&broker), None, window, what);
    }
}

/// Broker `i` at 10.0.1.(i+1), registering the topic from a random moment of its first 5 s,
/// then every [`REGISTER_EVERY`]; each registration may give it its permission back.
fn spawn_broker(handle: &Handle, i: usize, shared: &Shared) -> NodeHandle {
    let broker = SimBroker {
        cluster: "SimCluster".into(),
        name: broker_name(i),
        addr: format!("10.0.1.{}:10911", i + 1),
        // More than one topic: a first registration of one is refused (RocketMQ reserves it).
        topics: vec![TOPIC.into(), "TBW102".into(), DELETED_TOPIC.into()],
    };
    let first = Duration::from_millis(thread_rng().gen_range(0..5_000));
    let shared = shared.clone();
    let node = handle.create_node().name(broker_name(i)).ip([10, 0, 1, i as u8 + 1].into()).build();
    node.spawn(async move {
        let namesrv = Operator::new(NAMESRV, &shared);
        tokio::time::sleep(first).await;
        loop {
            let sent = Instant::now();
            let reply = namesrv.ask("REGISTER_BROKER", broker.registration()).await;
            let answered =
                matches!(&reply, Some(r) if r.code == response::SUCCESS).then(Instant::now);
            // A first registration gives the broker its permission back and routes the deleted
            // topic to it again; the operator cannot tell which registration is a first.
            {
                let mut recorded = namesrv.recorded();
                let registers = &mut recorded.registers;
                let value = Some(PERM_READ_WRITE.into());
                let registration = "a registration";
                registers.may_have_taken(
                    &perm_register(&broker.name),
                    value,
                    sent,
                    answered,
                    registration,
                );
                let value = Some(ROUTED.into());
                registers.may_have_taken(
                    &routed_register(&broker.name),
                    value,
                    sent,
                    answered,
                    registration,
                );
            }
            tokio::time::sleep(REGISTER_EVERY).await;
        }
    });
    node
}

/// The admin's requests: [`STEPS`] of them, 50-250 ms apart, each drawn at random.
async fn operate(shared: &Shared, steps: &AtomicU64) {
    let op = &Operator::new(NAMESRV, shared);
    for step in 0..STEPS {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(50..250))).await;
        let namespace = NAMESPACES[thread_rng().gen_range(0..NAMESPACES.len())];
        let key = KEYS[thread_rng().gen_range(0..KEYS.len())];
        let broker = broker_name(thread_rng().gen_range(0..BROKERS));
        match thread_rng().gen_range(0..12) {
            0 | 1 => {
                // An ORDER_TOPIC_CONFIG value as mqadmin writes one: broker:queues;...
                let value = format!("{broker}:{}", step + 1);
                put(op, namespace, key, Some(value)).await;
            }
            2 => put(op, namespace, key, None).await,
            3 => {
                get(op, namespace, key).await;
            }
            4 => list(op, namespace).await,
            5 => set(op, thread_rng().gen_bool(0.5)).await,
            6 => get_setting(op).await,
            7 => perm(op, &broker, thread_rng().gen_bool(0.5)).await,
            10 => delete_topic(op).await,
            11 => routed(op).await,
            _ => route(op).await,
        }
        steps.store(step + 1, Ordering::Release);
    }
}

/// PUT_KV_CONFIG of `value`, or DELETE_KV_CONFIG for `None`.
async fn put(op: &Operator, namespace: &str, key: &str, value: Option<String>) {
    let (ns, k) = (namespace.to_owned(), key.to_owned());
    let (name, command) = match &value {
        Some(value) => {
            let header = PutKvConfigRequestHeader { namespace: ns, key: k, value: value.clone() };
            ("PUT_KV_CONFIG", RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&header))
        }
        None => {
            let header = KvConfigKeyRequestHeader { namespace: ns, key: k };
            let command = RemotingCommand::request(request::DELETE_KV_CONFIG).with_header(&header);
            ("DELETE_KV_CONFIG", command)
        }
    };
    op.write((name, command), &kv_register(namespace, key), value).await;
}

/// GET_KV_CONFIG: the entry, or QUERY_NOT_FOUND for none.
async fn get(op: &Operator, namespace: &str, key: &str) -> bool {
    let header = KvConfigKeyRequestHeader { namespace: namespace.to_owned(), key: key.to_owned() };
    let command = RemotingCommand::request(request::GET_KV_CONFIG).with_header(&header);
    let sent = Instant::now();
    let value = match op.ask("GET_KV_CONFIG", command).await {
        Some(r) if r.code == response::SUCCESS => {
            let header: GetKvConfigResponseHeader =
                r.header().expect("GET_KV_CONFIG's answer header");
            Some(header.value.expect("a found entry has a value"))
        }
        Some(r) if r.code == response::QUERY_NOT_FOUND => None,
        _ => return false,
    };
    op.recorded().registers.read(&kv_register(namespace, key), value, sent, Instant::now());
    true
}

/// GET_KVLIST_BY_NAMESPACE: a read of every key of the namespace at once.
async fn list(op: &Operator, namespace: &str) {
    let header = GetKvListByNamespaceRequestHeader { namespace: namespace.to_owned() };
    let command = RemotingCommand::request(request::GET_KVLIST_BY_NAMESPACE).with_header(&header);
    let sent = Instant::now();
    let table = match op.ask("GET_KVLIST_BY_NAMESPACE", command).await {
        Some(r) if r.code == response::SUCCESS => {
            from_json::<KvTable>(&r.body).expect("a KV list's body").table
        }
        Some(r) if r.code == response::QUERY_NOT_FOUND => BTreeMap::new(),
        _ => return,
    };
    let answered = Instant::now();
    let mut seen = op.recorded();
    for key in KEYS {
        let value = table.get(key).cloned();
        seen.registers.read(&kv_register(namespace, key), value, sent, answered);
    }
}

/// UPDATE_NAMESRV_CONFIG of [`SETTING`].
async fn set(op: &Operator, on: bool) {
    let body = format!("{SETTING}={on}\n");
    let command = RemotingCommand::request(request::UPDATE_NAMESRV_CONFIG).with_body(body);
    let value = Some(on.to_string());
    op.write(("UPDATE_NAMESRV_CONFIG", command), SETTING, value).await;
}

/// GET_NAMESRV_CONFIG: the setting's line of the properties.
async fn get_setting(op: &Operator) {
    let command = RemotingCommand::request(request::GET_NAMESRV_CONFIG);
    let sent = Instant::now();
    let Some(reply) = op.ask("GET_NAMESRV_CONFIG", command).await else { return };
    if reply.code != response::SUCCESS {
        return;
    }
    let text = String::from_utf8(reply.body.to_vec()).expect("properties are text");
    let prefix = format!("{SETTING}=");
    let line = text.lines().find_map(|l| l.strip_prefix(&prefix)).expect("the setting is listed");
    op.recorded().registers.read(SETTING, Some(line.trim().to_owned()), sent, Instant::now());
}

/// WIPE_WRITE_PERM_OF_BROKER, or ADD_WRITE_PERM_OF_BROKER when `writeable`.
async fn perm(op: &Operator, broker: &str, writeable: bool) {
    let header = BrokerPermRequestHeader { broker_name: broker.to_owned() };
    let (name, code, value) = match writeable {
        true => ("ADD_WRITE_PERM_OF_BROKER", request::ADD_WRITE_PERM_OF_BROKER, PERM_READ_WRITE),
        false => ("WIPE_WRITE_PERM_OF_BROKER", request::WIPE_WRITE_PERM_OF_BROKER, "4"),
    };
    let command = RemotingCommand::request(code).with_header(&header);
    let value = Some(value.to_owned());
    op.write((name, command), &perm_register(broker), value).await;
}

/// GET_ROUTEINFO_BY_TOPIC: each broker's permission, and, when the route carries
/// `orderTopicConf`, the setting (on) and the topic's ORDER_TOPIC_CONFIG entry.
async fn route(op: &Operator) {
    let header =
        GetRouteInfoRequestHeader { topic: TOPIC.to_owned(), accept_standard_json_only: None };
    let command = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
    let sent = Instant::now();
    let Some(reply) = op.ask("GET_ROUTEINFO_BY_TOPIC", command).await else { return };
    if reply.code != response::SUCCESS {
        return;
    }
    let route: TopicRouteData = from_json(&reply.body).expect("a route's body");
    let answered = Instant::now();
    let mut seen = op.recorded();
    for queues in &route.queue_datas {
        let value = Some(queues.perm.to_string());
        seen.registers.read(&perm_register(&queues.broker_name), value, sent, answered);
    }
    if let Some(conf) = route.order_topic_conf {
        seen.registers.read(SETTING, Some("true".into()), sent, answered);
        let register = kv_register(NAMESPACE_ORDER_TOPIC_CONFIG, TOPIC);
        seen.registers.read(&register, Some(conf), sent, answered);
    }
}

/// DELETE_TOPIC_IN_NAMESRV of [`DELETED_TOPIC`], from every broker.
async fn delete_topic(op: &Operator) {
    let header =
        DeleteTopicFromNamesrvRequestHeader { topic: DELETED_TOPIC.to_owned(), cluster_name: None };
    let command = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(&header);
    let writes = (0..BROKERS).map(|i| (routed_register(&broker_name(i)), None)).collect();
    op.write_each(("DELETE_TOPIC_IN_NAMESRV", command), writes).await;
}

/// GET_ROUTEINFO_BY_TOPIC of [`DELETED_TOPIC`]: which brokers it is routed to (none, when
/// answered TOPIC_NOT_EXIST).
async fn routed(op: &Operator) {
    let header = GetRouteInfoRequestHeader {
        topic: DELETED_TOPIC.to_owned(),
        accept_standard_json_only: None,
    };
    let command = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
    let sent = Instant::now();
    let route = match op.ask("GET_ROUTEINFO_BY_TOPIC", command).await {
        Some(r) if r.code == response::SUCCESS => {
            from_json::<TopicRouteData>(&r.body).expect("a route's body")
        }
        Some(r) if r.code == response::TOPIC_NOT_EXIST => TopicRouteData::default(),
        _ => return,
    };
    for i in 0..BROKERS {
        let broker = broker_name(i);
        let routed = route.queue_datas.iter().any(|q| q.broker_name == broker);
        op.read(&routed_register(&broker), routed.then(|| ROUTED.to_owned()), sent);
    }
}

/// After the last power loss: every KV entry read, each asked again until answered, within
/// [`LIVENESS`].
async fn read_back(shared: &Shared) {
    let op = &Operator::new(NAMESRV, shared);
    let deadline = Instant::now() + LIVENESS;
    for namespace in NAMESPACES {
        for key in KEYS {
            while !get(op, namespace, key).await {
                assert!(
                    Instant::now() < deadline,
                    "the NameServer did not answer {LIVENESS:?} after the faults"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
