//! The controllers under simulation: three `petrel controller` nodes (10.0.3.1-3, each on its
//! own disk, which keeps its raft state across power losses) and three stand-in brokers of one
//! group (10.0.1.1-3) that speak the controller protocol as RocketMQ's brokers do: they take an
//! id once (kept across their restarts, as a broker's `brokerIdentity` file), register,
//! heartbeat to every controller, poll their group's replica info, ask for an election when it
//! has no master, and, as master, try to take the others into the sync-state set. The faults
//! come from a swarm [`FaultPlan`], each striking one of the six nodes: power losses (a
//! controller's disk keeps, drops or tears each unsynced write; its fsyncs and writes may fail,
//! and a controller whose raft state cannot be written exits and is started again), partitions
//! (half of a controller's cut it off from the other controllers only, the brokers still
//! reaching it), one-way cuts, latency.
//!
//! The promises checked:
//! - every answer and notice the brokers receive names one master per master epoch and one
//!   set per sync-state set epoch, whichever controller gave it (`one master per epoch`);
//! - once the faults are over: the controllers' committed logs (read from their disks) agree,
//!   each a prefix of the longest; replayed, they keep the metadata's invariants, and every
//!   master elected after the first came from the sync-state set of its time (`elected from
//!   the set`);
//! - within [`SETTLE`] of the faults' end the group has a master, named by the leader
//!   (`a master after the faults`).
//!
//! Run one seed: `cargo sim --seed 7 --scenario controller`.
#![allow(clippy::unwrap_used)] // A scenario may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::checkers::{self, Verdict};
use crate::controllers::{cut, ControllerNode, CONTROLLERS};
use crate::faults::{Fault, FaultKind, FaultPlan};
use crate::report;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use petrel_core::controller::body::{ElectMasterResponseBody, SyncStateSet};
use petrel_core::controller::{code, Event, Replicas};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{from_json, to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::controller::{
    AlterSyncStateSetRequestHeader, ApplyBrokerIdRequestHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader,
    GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader,
    NotifyBrokerRoleChangedRequestHeader, RegisterBrokerToControllerRequestHeader,
};
use petrel_net::headers::namesrv::BrokerHeartbeatRequestHeader;
use petrel_net::transport::{
    ClientConfig, Connection, Handled, RemotingClient, RequestHandler, Server, ServerConfig,
};
use petrel_storage::disk::SimDiskFaults;

const GROUP: &str = "broker-a";
/// The workload's steps: one every 100 ms, a minute in all.
const STEPS: u64 = 600;
const STEP: Duration = Duration::from_millis(100);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
const HEARTBEAT_TIMEOUT_MS: i64 = 3_000;
/// How long after the faults the group must have a master again.
const SETTLE: Duration = Duration::from_secs(30);

/// What the brokers were told, by epoch, with who told them first; and every answer as an
/// operation in time, for the linearizability check.
#[derive(Default)]
struct Seen {
    masters: BTreeMap<i32, (Option<i64>, String)>,
    sets: BTreeMap<i32, (BTreeSet<i64>, String)>,
    conflicts: Vec<String>,
    answers: u64,
    ops: Vec<Op>,
}

/// One request and its answer: when it was asked and answered (simulated time), and the
/// epochs the answer reported.
struct Op {
    start: Instant,
    end: Instant,
    master_epoch: Option<i32>,
    set_epoch: Option<i32>,
    source: String,
}

type Shared = Arc<Mutex<Seen>>;

impl Seen {
    fn master(&mut self, epoch: i32, master: Option<i64>, source: &str) {
        self.answers += 1;
        let first = self.masters.entry(epoch).or_insert_with(|| (master, source.to_owned()));
        if first.0 != master {
            let why = format!(
                "master epoch {epoch}: {:?} ({}) and {master:?} ({source})",
                first.0, first.1
            );
            self.conflicts.push(why);
        }
    }

    fn op(
        &mut self,
        start: Instant,
        master_epoch: Option<i32>,
        set_epoch: Option<i32>,
        source: &str,
    ) {
        let (end, source) = (Instant::now(), source.to_owned());
        self.ops.push(Op { start, end, master_epoch, set_epoch, source });
    }

    fn set(&mut self, epoch: i32, set: &BTreeSet<i64>, source: &str) {
        let first = self.sets.entry(epoch).or_insert_with(|| (set.clone(), source.to_owned()));
        if &first.0 != set {
            let why =
                format!("set epoch {epoch}: {:?} ({}) and {set:?} ({source})", first.0, first.1);
            self.conflicts.push(why);
        }
    }
}

/// One run; a summary of what happened.
pub async fn run() -> String {
    let handle = Handle::current();
    let schedule = FaultPlan::failover().schedule(STEPS);
    let targets: Vec<usize> =
        schedule.faults.iter().map(|_| thread_rng().gen_range(0..8)).collect();
    report::note(format!("fault schedule (a step is 100 ms):\n{schedule}"));
    report::note(format!(
        "targets, in order (0-2 controllers, 3-5 brokers, 6 the master of the moment, \
         7 the controller leader of the moment): {targets:?}"
    ));
    schedule.apply_latency();
    let seen: Shared = Arc::default();
    let controllers: Vec<ControllerNode> =
        (0..3).map(|i| ControllerNode::spawn(&handle, i, schedule.disk)).collect();
    let ids: Vec<Arc<AtomicI64>> = (0..3).map(|_| Arc::default()).collect();
    let brokers: Vec<NodeHandle> =
        (0..3).map(|i| spawn_broker(&handle, i, ids[i].clone(), seen.clone())).collect();
    let started = tokio::time::Instant::now();
    for (fault, &target) in schedule.faults.iter().zip(&targets) {
        tokio::time::sleep_until(started + STEP * fault.after as u32).await;
        let target = match target {
            6 => latest_master(&seen, &ids).map_or(3, |i| i + 3),
            7 => controllers.iter().position(|c| c.leads.load(Ordering::Acquire)).unwrap_or(0),
            other => other,
        };
        match target {
            0..=2 => {
                let peers: Vec<_> = (controllers.iter().enumerate())
                    .filter(|(i, _)| *i != target)
                    .map(|(_, c)| c.node.id())
                    .collect();
                controllers[target].strike(&handle, fault, &peers).await;
            }
            _ => strike_broker(&handle, &brokers[target - 3], fault).await,
        }
    }
    tokio::time::sleep_until(started + STEP * STEPS as u32).await;
    for node in &controllers {
        node.disk.set_faults(SimDiskFaults::default());
    }
    let checker = handle.create_node().name("checker").ip("10.0.2.1".parse().unwrap()).build();
    let master = checker.spawn(settle()).await.unwrap();
    let verdicts = [
        one_master_per_epoch(&seen),
        linearizable(&seen.lock().unwrap().ops),
        elected_from_the_set(&controllers),
        master,
    ];
    checkers::conclude(&verdicts);
    let crashes: u64 = controllers.iter().map(|c| c.disk.stats().crashes).sum();
    let answers = seen.lock().unwrap().answers;
    let nodes = brokers.iter().chain([&checker]).chain(controllers.iter().map(|c| &c.node));
    for node in nodes.map(NodeHandle::id) {
        handle.kill(node);
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("{answers} answers seen, {crashes} controller power losses")
}

/// Which broker node (0-2) was master at the highest master epoch seen.
fn latest_master(seen: &Shared, ids: &[Arc<AtomicI64>]) -> Option<usize> {
    let seen = seen.lock().unwrap();
    let (_, (master, _)) = seen.masters.iter().next_back()?;
    let master = (*master)?;
    ids.iter().position(|id| id.load(Ordering::Acquire) == master)
}

async fn strike_broker(handle: &Handle, node: &NodeHandle, fault: &Fault) {
    if fault.kind == FaultKind::PowerLoss {
        handle.kill(node.id());
        tokio::time::sleep(fault.down_for).await;
        handle.restart(node.id());
    } else {
        cut(node.id(), fault).await;
    }
}

fn spawn_broker(handle: &Handle, i: usize, id: Arc<AtomicI64>, seen: Shared) -> NodeHandle {
    let ip = format!("10.0.1.{}", i + 1);
    handle
        .create_node()
        .name(format!("broker-{i}"))
        .ip(ip.parse().unwrap())
        .init(move || {
            let stand_in = StandIn {
                addr: format!("{ip}:10911"),
                id: id.clone(),
                seen: seen.clone(),
                client: Arc::new(RemotingClient::new(ClientConfig::default(), None)),
            };
            stand_in.run()
        })
        .build()
}

/// A broker as the controllers see it.
#[derive(Clone)]
struct StandIn {
    addr: String,
    /// Its id, once taken: kept across restarts, as `brokerIdentity` on its disk.
    id: Arc<AtomicI64>,
    seen: Shared,
    client: Arc<RemotingClient>,
}

impl RequestHandler for StandIn {
    fn handle(&self, _conn: &Connection, command: RemotingCommand) -> Handled {
        if command.code == request::NOTIFY_BROKER_ROLE_CHANGED {
            let header: NotifyBrokerRoleChangedRequestHeader = command.header().unwrap();
            let set: SyncStateSet = from_json(command.body_bytes().as_ref()).unwrap();
            let mut seen = self.seen.lock().unwrap();
            let source = format!("notice to {}", self.addr);
            seen.master(header.master_epoch.unwrap(), header.master_broker_id, &source);
            seen.set(set.sync_state_set_epoch, &set.sync_state_set, &source);
        }
        Handled::Now(RemotingCommand::response(response::SUCCESS, None))
    }
}

impl StandIn {
    async fn run(self) {
        let server = Server::bind(&self.addr, ServerConfig::default()).await.unwrap();
        let handler = Arc::new(self.clone());
        tokio::spawn(async move { server.serve(handler, std::future::pending()).await });
        while self.id.load(Ordering::Acquire) == 0 {
            if let Some(id) = self.take_id().await {
                self.id.store(id, Ordering::Release);
            }
            tokio::time::sleep(STEP).await;
        }
        let id = self.id.load(Ordering::Acquire);
        let beats = self.clone();
        tokio::spawn(async move { beats.heartbeat(id).await });
        let mut registered = false;
        loop {
            tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(500..1_500))).await;
            if !registered {
                registered = self.register(id).await;
                continue;
            }
            self.poll(id).await;
        }
    }

    async fn ask(&self, command: RemotingCommand) -> Option<RemotingCommand> {
        ask(&self.client, command).await.map(|(_, reply)| reply)
    }

    async fn take_id(&self) -> Option<i64> {
        let header =
            GetNextBrokerIdRequestHeader { cluster_name: "c".into(), broker_name: GROUP.into() };
        let ask =
            RemotingCommand::request(request::CONTROLLER_GET_NEXT_BROKER_ID).with_header(&header);
        let reply = self.ask(ask).await?;
        let next = reply.header::<GetNextBrokerIdResponseHeader>().ok()?.next_broker_id;
        let apply = ApplyBrokerIdRequestHeader {
            cluster_name: "c".into(),
            broker_name: GROUP.into(),
            applied_broker_id: next,
            register_check_code: format!("{};0", self.addr),
        };
        let ask = RemotingCommand::request(request::CONTROLLER_APPLY_BROKER_ID).with_header(&apply);
        (self.ask(ask).await?.code == response::SUCCESS).then_some(next)
    }

    async fn register(&self, id: i64) -> bool {
        let header = RegisterBrokerToControllerRequestHeader {
            cluster_name: "c".into(),
            broker_name: GROUP.into(),
            broker_id: id,
            broker_address: self.addr.clone(),
            invoke_time: None,
        };
        let ask =
            RemotingCommand::request(request::CONTROLLER_REGISTER_BROKER).with_header(&header);
        let start = Instant::now();
        let Some(reply) = self.ask(ask).await else { return false };
        if reply.code != response::SUCCESS {
            return false;
        }
        let set: SyncStateSet = from_json(reply.body_bytes().as_ref()).unwrap();
        let mut seen = self.seen.lock().unwrap();
        let source = format!("registration of {id}");
        seen.set(set.sync_state_set_epoch, &set.sync_state_set, &source);
        seen.op(start, None, Some(set.sync_state_set_epoch), &source);
        true
    }

    async fn heartbeat(self, id: i64) {
        let mut max_offset = 0;
        loop {
            max_offset += thread_rng().gen_range(0..100);
            let header = BrokerHeartbeatRequestHeader {
                cluster_name: "c".into(),
                broker_addr: self.addr.clone(),
                broker_name: GROUP.into(),
                broker_id: Some(id),
                epoch: None,
                max_offset: Some(max_offset),
                confirm_offset: None,
                heartbeat_timeout_mills: Some(HEARTBEAT_TIMEOUT_MS),
                election_priority: None,
            };
            for addr in CONTROLLERS {
                let beat = RemotingCommand::request(request::BROKER_HEARTBEAT).with_header(&header);
                let _ = self.client.invoke_oneway(addr, beat).await;
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }

    /// Reads the group's replica info; asks for an election without a master; as master,
    /// tries to widen the set.
    async fn poll(&self, id: i64) {
        let Some((master, master_epoch, set)) = replica_info(&self.client, &self.seen, id).await
        else {
            return;
        };
        match master {
            None => self.elect(id).await,
            Some(m) if m == id && set.sync_state_set.len() < 3 => {
                let mut wanted: BTreeSet<i64> =
                    (1..=3).filter(|_| thread_rng().gen_bool(0.7)).collect();
                wanted.insert(id);
                self.alter(id, master_epoch, SyncStateSet { sync_state_set: wanted, ..set }).await;
            }
            Some(_) => {}
        }
    }

    async fn elect(&self, id: i64) {
        let header = ElectMasterRequestHeader {
            cluster_name: "c".into(),
            broker_name: GROUP.into(),
            broker_id: id,
            designate_elect: false,
            invoke_time: None,
        };
        let ask = RemotingCommand::request(request::CONTROLLER_ELECT_MASTER).with_header(&header);
        let start = Instant::now();
        let Some(reply) = self.ask(ask).await else { return };
        if ![response::SUCCESS, code::MASTER_STILL_EXIST].contains(&reply.code) {
            return;
        }
        let header: ElectMasterResponseHeader = reply.header().unwrap();
        let body: ElectMasterResponseBody = from_json(reply.body_bytes().as_ref()).unwrap();
        let mut seen = self.seen.lock().unwrap();
        let source = format!("election asked by {id}");
        seen.master(header.master_epoch.unwrap(), header.master_broker_id, &source);
        seen.set(header.sync_state_set_epoch.unwrap(), &body.sync_state_set, &source);
        seen.op(start, header.master_epoch, header.sync_state_set_epoch, &source);
    }

    async fn alter(&self, id: i64, master_epoch: i32, proposed: SyncStateSet) {
        let header = AlterSyncStateSetRequestHeader {
            broker_name: GROUP.into(),
            master_broker_id: id,
            master_epoch,
            invoke_time: None,
        };
        let ask = RemotingCommand::request(request::CONTROLLER_ALTER_SYNC_STATE_SET)
            .with_header(&header)
            .with_body(to_json(&proposed, JsonStyle::Fastjson));
        let start = Instant::now();
        let Some(reply) = self.ask(ask).await else { return };
        if reply.code == response::SUCCESS {
            let set: SyncStateSet = from_json(reply.body_bytes().as_ref()).unwrap();
            let mut seen = self.seen.lock().unwrap();
            let source = format!("set change by {id}");
            seen.set(set.sync_state_set_epoch, &set.sync_state_set, &source);
            seen.op(start, None, Some(set.sync_state_set_epoch), &source);
        }
    }
}

/// Sends to each controller until one that leads answers: which one, and its answer.
async fn ask(client: &RemotingClient, command: RemotingCommand) -> Option<(&str, RemotingCommand)> {
    for addr in CONTROLLERS {
        let reply = client.invoke(addr, command.clone(), Duration::from_secs(2)).await;
        match reply {
            Ok(reply) if reply.code != code::NOT_LEADER => return Some((addr, reply)),
            _ => {}
        }
    }
    None
}

/// The group's replica info from the leader, recorded in `seen`.
async fn replica_info(
    client: &RemotingClient,
    seen: &Shared,
    asker: i64,
) -> Option<(Option<i64>, i32, SyncStateSet)> {
    let header = GetReplicaInfoRequestHeader { broker_name: GROUP.into() };
    let request =
        RemotingCommand::request(request::CONTROLLER_GET_REPLICA_INFO).with_header(&header);
    let start = Instant::now();
    let (addr, reply) = ask(client, request).await?;
    if reply.code != response::SUCCESS {
        return None;
    }
    let header: GetReplicaInfoResponseHeader = reply.header().unwrap();
    let set: SyncStateSet = from_json(reply.body_bytes().as_ref()).unwrap();
    let epoch = header.master_epoch.unwrap();
    let mut seen = seen.lock().unwrap();
    let source = format!("replica info from {addr} to {asker}");
    seen.master(epoch, header.master_broker_id, &source);
    seen.set(set.sync_state_set_epoch, &set.sync_state_set, &source);
    seen.op(start, Some(epoch), Some(set.sync_state_set_epoch), &source);
    Some((header.master_broker_id, epoch, set))
}

/// Waits until the leader names a master; the verdict.
async fn settle() -> Verdict {
    let client = RemotingClient::new(ClientConfig::default(), None);
    let seen: Shared = Arc::default();
    let deadline = tokio::time::Instant::now() + SETTLE;
    let outcome = loop {
        if let Some((Some(master), epoch, _)) = replica_info(&client, &seen, 0).await {
            break Ok(format!("broker {master} at master epoch {epoch}"));
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(format!("no master {} s after the faults", SETTLE.as_secs()));
        }
        tokio::time::sleep(STEP).await;
    };
    Verdict::new("a master after the faults", outcome)
}

fn one_master_per_epoch(seen: &Shared) -> Verdict {
    let seen = seen.lock().unwrap();
    let outcome = match seen.conflicts.first() {
        Some(conflict) => Err(conflict.clone()),
        None => Ok(format!(
            "{} master epochs, {} set epochs over {} answers",
            seen.masters.len(),
            seen.sets.len(),
            seen.answers
        )),
    };
    Verdict::new("one master per epoch", outcome)
}

/// The answers linearize: the metadata's epochs only rise in log order, so an answer must
/// report epochs no lower than any answer completed before it was asked (whichever
/// controller gave either).
fn linearizable(ops: &[Op]) -> Verdict {
    let mut by_end: Vec<&Op> = ops.iter().collect();
    by_end.sort_by_key(|op| op.end);
    let mut by_start: Vec<&Op> = ops.iter().collect();
    by_start.sort_by_key(|op| op.start);
    let (mut done, mut master, mut set) = (0, None::<&Op>, None::<&Op>);
    for op in by_start {
        while done < by_end.len() && by_end[done].end < op.start {
            let prior = by_end[done];
            if prior.master_epoch > master.and_then(|m| m.master_epoch) {
                master = Some(prior);
            }
            if prior.set_epoch > set.and_then(|s| s.set_epoch) {
                set = Some(prior);
            }
            done += 1;
        }
        let stale_master =
            master.filter(|p| op.master_epoch.is_some_and(|e| Some(e) < p.master_epoch));
        let stale_set = set.filter(|p| op.set_epoch.is_some_and(|e| Some(e) < p.set_epoch));
        let stale = stale_master.or(stale_set);
        if let Some(prior) = stale {
            let why = format!(
                "{} (asked at {:?}) reported epochs {:?}/{:?}, older than {} (answered at {:?}) with {:?}/{:?}",
                op.source, op.start, op.master_epoch, op.set_epoch,
                prior.source, prior.end, prior.master_epoch, prior.set_epoch
            );
            return Verdict::new("linearizable", Err(why));
        }
    }
    Verdict::new("linearizable", Ok(format!("{} answers in time order", ops.len())))
}

/// The controllers applied one log: no index got two events, on one controller across its
/// starts or on two; that log, replayed in index order, keeps the metadata's invariants and
/// elects every master after the first from the sync-state set of its time; and what each
/// controller's disk stands for (snapshot and committed entries) is that log replayed to the
/// same index.
pub(crate) fn elected_from_the_set(controllers: &[ControllerNode]) -> Verdict {
    let verdict = |outcome| Verdict::new("elected from the set", outcome);
    let mut log: BTreeMap<u64, Event> = BTreeMap::new();
    for (i, controller) in controllers.iter().enumerate() {
        let applied = match controller.applied() {
            Ok(applied) => applied,
            Err(fork) => {
                return verdict(Err(format!("controller {i} applied two events at {fork}")))
            }
        };
        for (index, event) in applied {
            if let Some(other) = log.insert(index, event.clone()).filter(|o| *o != event) {
                let why = format!("controller {i} applied {event:?} at {index}, another {other:?}");
                return verdict(Err(why));
            }
        }
    }
    let mut disks: Vec<(u64, usize, Replicas)> = controllers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.on_disk(), i))
        .map(|((at, r), i)| (at, i, r))
        .collect();
    disks.sort_by_key(|(at, i, _)| (*at, *i));
    let mut disks = disks.into_iter().peekable();
    let mut replicas = Replicas::default();
    let mut compare = |replicas: &Replicas, upto: u64| -> Result<(), String> {
        while let Some((at, i, disk)) = disks.next_if(|(at, _, _)| *at < upto) {
            if disk != *replicas {
                return Err(format!("controller {i}'s disk at index {at} is not the log replayed"));
            }
        }
        Ok(())
    };
    for (&index, event) in &log {
        if let Err(why) = compare(&replicas, index) {
            return verdict(Err(why));
        }
        if let Event::MasterElected { group, master: Some(m) } = event {
            let before = replicas.group(group).cloned().unwrap_or_default();
            if before.master_epoch > 0 && !before.sync_state_set.contains(m) {
                let why = format!(
                    "index {index}: broker {m} elected outside the set {:?} at master epoch {}",
                    before.sync_state_set, before.master_epoch
                );
                return verdict(Err(why));
            }
        }
        replicas.apply(event);
        replicas.check_invariants();
    }
    if let Err(why) = compare(&replicas, u64::MAX) {
        return verdict(Err(why));
    }
    let elections =
        log.values().filter(|e| matches!(e, Event::MasterElected { master: Some(_), .. })).count();
    verdict(Ok(format!("{} events, {elections} masters elected", log.len())))
}
