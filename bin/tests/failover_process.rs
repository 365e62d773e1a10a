//! Failover with real processes, Jepsen-style: three `petrel controller`, a `petrel namesrv`
//! and three `petrel broker` in controller mode (SYNC_FLUSH, `allAckInSyncStateSet`) on
//! loopback, under a bounded load from producers that send to the master the controllers
//! name. Each round kills the master (SIGKILL) or stops it (SIGSTOP), or does the same to the
//! controller leader, and brings it back; then the group must serve again. Over the recorded
//! history: every acknowledged message is on the final master and on each slave at the queue
//! offset its acknowledgement named; no (queue, offset) names two messages. Each master
//! failover's time, from the signal to the first acknowledged send on the new master, is
//! printed (`PETREL_FAILOVER_TRIALS` rounds, 4 by default: each kind once).
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;
#[path = "common/controllers.rs"]
mod controllers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Killed;
use petrel_client::raw::{self, SendOutcome};
use petrel_core::controller::body::SyncStateSet;
use petrel_net::codec::codes::request;
use petrel_net::codec::json::from_json;
use petrel_net::headers::controller::{GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader};
use petrel_net::transport::{ClientConfig, RemotingClient};

const GROUP: &str = "jepsen";
const TOPIC: &str = "Jepsen";
const QUEUES: i32 = 4;
/// The brokers' heartbeat timeout: a failover cannot take less.
const HEARTBEAT_TIMEOUT_MS: u64 = 1_500;

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default(), None)
}

fn spawn(args: &[&str], conf: Option<&Path>, first_line: &str) -> (Killed, String) {
    let conf = conf.map(|c| c.to_str().unwrap().to_owned());
    let args: Vec<&str> = args.iter().copied().chain(conf.as_deref()).collect();
    let (child, line) = common::petrel(&args, &[]);
    assert!(line.contains(first_line), "{line}");
    (child, line)
}

/// The group: its processes and where to start them again.
struct Group {
    dir: PathBuf,
    controllers: Vec<(String, String)>,
    controller_procs: Vec<Option<Killed>>,
    brokers: Vec<Option<Killed>>,
    /// Each broker's client address (it changes when the broker starts again).
    addrs: Arc<Mutex<Vec<String>>>,
    namesrv: String,
}

impl Group {
    fn controller_conf(&self, n: usize) -> PathBuf {
        let peers: Vec<String> =
            self.controllers.iter().map(|(name, addr)| format!("{name}-{addr}")).collect();
        let conf = self.dir.join(format!("controller-{n}.conf"));
        let text = format!(
            "controllerDLegerGroup=Jepsen\ncontrollerDLegerPeers={}\ncontrollerDLegerSelfId=n{n}\n\
             controllerStorePath={}\ntickInterval=50\nscanNotActiveBrokerInterval=300\n",
            peers.join(";"),
            self.dir.join(format!("controller-{n}")).display()
        );
        std::fs::write(&conf, text).unwrap();
        conf
    }

    fn start_controller(&mut self, n: usize) {
        let conf = self.controller_conf(n);
        self.controller_procs[n] = Some(spawn(&["controller", "-c"], Some(&conf), "listening").0);
    }

    fn start_broker(&mut self, n: usize) {
        let addrs: Vec<&str> = self.controllers.iter().map(|(_, a)| a.as_str()).collect();
        let conf = self.dir.join(format!("broker-{n}.conf"));
        let text = format!(
            "brokerName={GROUP}\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\nnamesrvAddr={}\n\
             storePathRootDir={}\nflushDiskType=SYNC_FLUSH\nslaveReadEnable=true\n\
             enableControllerMode=true\ncontrollerAddr={}\nallAckInSyncStateSet=true\n\
             controllerHeartBeatTimeoutMills={HEARTBEAT_TIMEOUT_MS}\nbrokerHeartbeatInterval=300\n\
             syncBrokerMetadataPeriod=500\nhaMaxTimeSlaveNotCatchup=3000\n\
             haSendHeartbeatInterval=1000\nhaHousekeepingInterval=3000\n\
             registerNameServerPeriod=1000\ndefaultTopicQueueNums={QUEUES}\n",
            self.namesrv,
            self.dir.join(format!("broker-{n}")).display(),
            addrs.join(";")
        );
        std::fs::write(&conf, text).unwrap();
        let args = ["broker", "--listen-port", "0", "-c"];
        let (child, line) = spawn(&args, Some(&conf), "clients are told");
        let told = line.split("clients are told ").nth(1).unwrap();
        self.addrs.lock().unwrap()[n] = told.trim().trim_end_matches(')').to_owned();
        self.brokers[n] = Some(child);
    }

    fn controller_addrs(&self) -> Vec<String> {
        self.controllers.iter().map(|(_, a)| a.clone()).collect()
    }

    /// The master the controllers name (its index among the brokers) and the set's size.
    async fn master(&self, client: &RemotingClient) -> (Option<usize>, usize) {
        let ask = GetReplicaInfoRequestHeader { broker_name: GROUP.into() };
        let code = request::CONTROLLER_GET_REPLICA_INFO;
        let reply = controllers::leader_call(client, &self.controller_addrs(), code, &ask).await;
        let Ok(header) = reply.header::<GetReplicaInfoResponseHeader>() else { return (None, 0) };
        let set: SyncStateSet = from_json(reply.body_bytes().as_ref()).unwrap_or_default();
        let addrs = self.addrs.lock().unwrap();
        let index = header.master_address.and_then(|a| addrs.iter().position(|b| *b == a));
        (index, set.sync_state_set.len())
    }

    /// The controller that leads now.
    async fn leader(&self, client: &RemotingClient) -> Option<usize> {
        for (n, (_, addr)) in self.controllers.iter().enumerate() {
            let ask =
                petrel_net::codec::RemotingCommand::request(request::CONTROLLER_GET_METADATA_INFO);
            let Ok(reply) = client.invoke(addr, ask, Duration::from_secs(1)).await else {
                continue;
            };
            let header: Result<petrel_net::headers::controller::GetMetaDataResponseHeader, _> =
                reply.header();
            if header.is_ok_and(|h| h.is_leader) {
                return Some(n);
            }
        }
        None
    }
}

fn signal(child: &Killed, signal: &str) {
    let status = Command::new("kill").args([signal, &child.0.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal}");
}

/// What the producers saw: each acknowledged message's broker, queue and queue offset.
#[derive(Default)]
struct Acked {
    by_id: BTreeMap<u64, (String, i32, i64)>,
}

async fn produce(
    lane: u64,
    addrs: Arc<Mutex<Vec<String>>>,
    master: Arc<Mutex<Option<usize>>>,
    acked: Arc<Mutex<Acked>>,
    last_ack: Arc<Mutex<Option<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
) {
    let client = client();
    while !stop.load(Ordering::Acquire) {
        let Some(broker) = master.lock().unwrap().map(|m| addrs.lock().unwrap()[m].clone()) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let id = next.fetch_add(1, Ordering::AcqRel);
        let queue = ((id + lane) % QUEUES as u64) as i32;
        match raw::send(&client, &broker, TOPIC, queue, id, 256).await {
            SendOutcome::Acked { queue_offset, .. } => {
                acked.lock().unwrap().by_id.insert(id, (broker.clone(), queue, queue_offset));
                *last_ack.lock().unwrap() = Some((broker, Instant::now()));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fails_over_through_kills_and_stops_of_its_master_and_controller_leader() {
    let trials: usize =
        std::env::var("PETREL_FAILOVER_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let (namesrv_proc, namesrv_line) = spawn(&["namesrv", "--listen-port", "0"], None, "listening");
    let _namesrv = namesrv_proc;
    let namesrv = format!("127.0.0.1:{}", namesrv_line.trim().rsplit(':').next().unwrap());
    let mut group = Group {
        dir: dir.path().to_path_buf(),
        controllers: controllers::peers(3),
        controller_procs: vec![None, None, None],
        brokers: vec![None, None, None],
        addrs: Arc::new(Mutex::new(vec![String::new(); 3])),
        namesrv,
    };
    for n in 0..3 {
        group.start_controller(n);
    }
    let admin = client();
    for n in 0..3 {
        group.start_broker(n);
    }
    let master = Arc::new(Mutex::new(None));
    let (acked, last_ack) = (Arc::new(Mutex::new(Acked::default())), Arc::new(Mutex::new(None)));
    let (stop, next) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let producers: Vec<_> = (0..4)
        .map(|lane| {
            tokio::spawn(produce(
                lane,
                group.addrs.clone(),
                master.clone(),
                acked.clone(),
                last_ack.clone(),
                stop.clone(),
                next.clone(),
            ))
        })
        .collect();
    let mut failovers = Vec::new();
    for round in 0..trials {
        let (current, _) = whole_group(&group, &admin, &master).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kill = round % 2 == 0;
        let (signal_name, stop_name) =
            if kill { ("-KILL", "SIGKILL") } else { ("-STOP", "SIGSTOP") };
        if round % 4 < 2 {
            let old = group.addrs.lock().unwrap()[current].clone();
            let struck = Instant::now();
            signal(group.brokers[current].as_ref().unwrap(), signal_name);
            let took = wait_for_new_master(&group, &admin, &master, &last_ack, &old, struck).await;
            eprintln!(
                "round {round}: master {old} {stop_name}: new master acknowledged after {took:?}"
            );
            failovers.push((stop_name, took));
            if kill {
                drop(group.brokers[current].take());
                group.start_broker(current);
            } else {
                signal(group.brokers[current].as_ref().unwrap(), "-CONT");
            }
        } else {
            let leader = group.leader(&admin).await.unwrap_or(0);
            signal(group.controller_procs[leader].as_ref().unwrap(), signal_name);
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            eprintln!("round {round}: controller leader n{leader} {stop_name}");
            if kill {
                drop(group.controller_procs[leader].take());
                group.start_controller(leader);
            } else {
                signal(group.controller_procs[leader].as_ref().unwrap(), "-CONT");
            }
        }
    }
    whole_group(&group, &admin, &master).await;
    stop.store(true, Ordering::Release);
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = std::mem::take(&mut acked.lock().unwrap().by_id);
    assert!(acked.len() > 100, "only {} messages acknowledged", acked.len());
    check_every_broker_holds(&group, &admin, &acked).await;
    for kind in ["SIGKILL", "SIGSTOP"] {
        let mut took: Vec<Duration> =
            failovers.iter().filter(|(k, _)| *k == kind).map(|(_, t)| *t).collect();
        took.sort();
        let Some(&max) = took.last() else { continue };
        let at = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
        eprintln!(
            "failover after {kind} of the master, {} trials: p50 {:?}, p99 {:?}, max {max:?} \
             (heartbeat timeout {HEARTBEAT_TIMEOUT_MS} ms)",
            took.len(),
            at(50),
            at(99)
        );
    }
    eprintln!(
        "{} messages acknowledged, every one on every broker where acknowledged",
        acked.len()
    );
}

/// Waits until the controllers name a master and all three brokers are in its set; tells the
/// producers; returns the master's index.
async fn whole_group(
    group: &Group,
    admin: &RemotingClient,
    master: &Mutex<Option<usize>>,
) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (named, size) = group.master(admin).await;
        *master.lock().unwrap() = named;
        if let (Some(m), 3) = (named, size) {
            return (m, size);
        }
        assert!(Instant::now() < deadline, "the group never became whole: {named:?}, {size}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows the controllers' master for the producers until a broker other than `old`
/// acknowledges a send; the time since `struck`.
async fn wait_for_new_master(
    group: &Group,
    admin: &RemotingClient,
    master: &Mutex<Option<usize>>,
    last_ack: &Mutex<Option<(String, Instant)>>,
    old: &str,
    struck: Instant,
) -> Duration {
    let deadline = struck + Duration::from_secs(60);
    loop {
        if let Some((broker, at)) = last_ack.lock().unwrap().clone() {
            if broker != old && at > struck {
                return at - struck;
            }
        }
        let (named, _) = group.master(admin).await;
        *master.lock().unwrap() = named;
        assert!(Instant::now() < deadline, "no new master acknowledged a send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every broker holds every acknowledged message where its acknowledgement said, and no
/// (queue, offset) holds another message than the one acknowledged there.
async fn check_every_broker_holds(
    group: &Group,
    admin: &RemotingClient,
    acked: &BTreeMap<u64, (String, i32, i64)>,
) {
    let addrs = group.addrs.lock().unwrap().clone();
    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut held: BTreeMap<(i32, i64), u64> = BTreeMap::new();
            for queue in 0..QUEUES {
                for (offset, id) in common::drain(admin, addr, TOPIC, queue).await {
                    held.insert((queue, offset), id);
                }
            }
            let missing: Vec<u64> = acked
                .iter()
                .filter(|(id, (_, queue, offset))| held.get(&(*queue, *offset)) != Some(*id))
                .map(|(id, _)| *id)
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} lacks {} acknowledged messages where acknowledged, first {:?}",
                missing.len(),
                acked.get(&missing[0])
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
