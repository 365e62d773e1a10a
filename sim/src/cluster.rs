//! A simulated cluster: a NameServer at 10.0.0.1, brokers `broker-a`, `broker-b`, ... at
//! 10.0.1.1, 10.0.1.2, ..., each a madsim node on its own [`SimDisk`] that outlives kills and
//! restarts, and client nodes at 10.0.2.x. Every broker runs under a supervisor, as an
//! operator runs one under systemd: a broker whose store stopped after a failed fsync exits,
//! and is started again a second later on the same disk, its page cache intact (the process
//! died, not the machine).
//!
//! Faults strike through [`Cluster::strike`], which records them in the run's history;
//! [`Cluster::heal`] ends them, after which the cluster must converge.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use petrel::broker::{self, Broker, BrokerConfig};
use petrel_storage::disk::{SimDisk, SimDiskFaults};
use tokio::sync::Notify;

use crate::faults::{Fault, FaultKind};
use crate::history::{wall_ms, Event, History};

/// Where every node finds the NameServer.
pub const NAMESRV: &str = "10.0.0.1:9876";

/// How long the supervisor waits before starting a broker that exited.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Adjusts every broker's configuration, or broker `i`'s.
type Tune = fn(&mut BrokerConfig);
type TuneEach = fn(usize, &mut BrokerConfig);

/// What a cluster is made of.
pub struct ClusterBuilder {
    brokers: usize,
    tune: Tune,
    tune_each: TuneEach,
    disk_faults: SimDiskFaults,
}

/// One broker: its node, its disk and, while it is up, its state.
pub struct BrokerNode {
    pub name: String,
    /// `ip:port` clients use.
    pub addr: String,
    pub node: NodeHandle,
    pub disk: SimDisk,
    running: Arc<Mutex<Option<Arc<Broker>>>>,
    /// Set while a power loss keeps the node down: the supervisor leaves it alone.
    down: Arc<AtomicBool>,
    supervisor: tokio::task::JoinHandle<()>,
}

/// What [`Cluster::play`] does at a step.
pub enum Strike<'a> {
    /// A fault of broker `i`.
    Broker(usize, Fault),
    /// A client node loses power for `down_for`.
    Client { node: &'a NodeHandle, name: String, down_for: Duration },
}

/// A running simulated cluster.
pub struct Cluster {
    handle: Handle,
    pub namesrv: NodeHandle,
    pub brokers: Vec<BrokerNode>,
    history: History,
    next_client: AtomicU8,
    /// Every client node and its address, so that `stop` can end them.
    clients: Mutex<Vec<(madsim::task::NodeId, Ipv4Addr)>>,
}

impl ClusterBuilder {
    /// How many brokers, each its own broker group (a master).
    pub fn brokers(mut self, count: usize) -> Self {
        self.brokers = count;
        self
    }

    /// Adjusts every broker's configuration (on top of [`crate::sim_broker_config`]).
    pub fn tune(mut self, tune: fn(&mut BrokerConfig)) -> Self {
        self.tune = tune;
        self
    }

    /// Adjusts broker `i`'s configuration after `tune` (a group's roles and ids, say).
    pub fn tune_each(mut self, tune: fn(usize, &mut BrokerConfig)) -> Self {
        self.tune_each = tune;
        self
    }

    /// The faults every broker's disk starts with.
    pub fn disk_faults(mut self, faults: SimDiskFaults) -> Self {
        self.disk_faults = faults;
        self
    }

    /// Starts the nodes in the current runtime; what happens to them goes into `history`.
    pub fn build(self, history: &History) -> Cluster {
        let handle = Handle::current();
        let namesrv = crate::spawn_namesrv(&handle);
        let brokers = (0..self.brokers)
            .map(|i| {
                spawn_broker(&handle, i, (self.tune, self.tune_each), self.disk_faults, history)
            })
            .collect();
        Cluster {
            handle,
            namesrv,
            brokers,
            history: history.clone(),
            next_client: AtomicU8::new(1),
            clients: Mutex::default(),
        }
    }
}

/// The settings of a replicated group's brokers in the scenarios: group `group`, one 1 MiB
/// commit-log file for the whole run, a 2 s sync timeout, HA heartbeats every second, links
/// given up after 4 s of silence, 4 000-byte transfers (a record often cut by a frame).
pub fn replicated_group(config: &mut BrokerConfig, group: &str) {
    config.broker_name = group.into();
    config.store.commit_log_file_bytes = 1 << 20;
    config.store.sync_flush_timeout_ms = 2_000;
    config.ha_heartbeat_ms = 1_000;
    config.ha_housekeeping_ms = 4_000;
    config.ha_transfer_batch_bytes = 4_000;
}

/// Broker `i`'s name: `broker-a`, `broker-b`, ...
pub fn broker_name(i: usize) -> String {
    format!("broker-{}", char::from(b'a' + i as u8))
}

fn spawn_broker(
    handle: &Handle,
    i: usize,
    (tune, tune_each): (Tune, TuneEach),
    faults: SimDiskFaults,
    history: &History,
) -> BrokerNode {
    let name = broker_name(i);
    let ip = format!("10.0.1.{}", i + 1);
    let disk = SimDisk::new(thread_rng().gen(), 1 << 30, faults);
    let running: Arc<Mutex<Option<Arc<Broker>>>> = Arc::default();
    let exited = Arc::new(Notify::new());
    let starts = Arc::new(AtomicU64::new(0));
    let exited_start = Arc::new(AtomicU64::new(0));
    let mut config = crate::sim_broker_config(&name, &ip, NAMESRV);
    tune(&mut config);
    tune_each(i, &mut config);
    let process = Process {
        name: name.clone(),
        config,
        disk: disk.clone(),
        running: running.clone(),
        exited: exited.clone(),
        starts: starts.clone(),
        exited_start: exited_start.clone(),
        history: history.clone(),
    };
    let node = handle
        .create_node()
        .name(&name)
        .ip(ip.parse().expect("a broker's address"))
        .init(move || process.clone().run())
        .build();
    let down = Arc::new(AtomicBool::new(false));
    let watch = Supervised { node: node.id(), exited, starts, exited_start, down: down.clone() };
    let supervisor = tokio::spawn(supervise(handle.clone(), watch));
    BrokerNode { name, addr: format!("{ip}:10911"), node, disk, running, down, supervisor }
}

/// What a broker node runs each time it starts.
#[derive(Clone)]
struct Process {
    name: String,
    config: BrokerConfig,
    disk: SimDisk,
    running: Arc<Mutex<Option<Arc<Broker>>>>,
    exited: Arc<Notify>,
    /// How many times the node started: the supervisor restarts only the process it saw exit.
    starts: Arc<AtomicU64>,
    /// Which start's process exited last (its number in `starts`).
    exited_start: Arc<AtomicU64>,
    history: History,
}

impl Process {
    /// Starts the broker and serves until its store stops; then exits, telling the supervisor.
    /// A start may fail only while the disk fails syncs or writes (the supervisor tries again);
    /// with a sound disk, failing to recover is a failed run.
    async fn run(self) {
        let start = self.starts.fetch_add(1, Ordering::AcqRel) + 1;
        match broker::start(self.config.clone(), Arc::new(self.disk.clone())).await {
            Ok(running) => {
                let (node, end) = (self.name.clone(), running.recovered_end);
                self.history.record(Event::Recovered { node, end });
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(running.state.clone());
                let watcher = tokio::spawn(record_confirmed(
                    self.name.clone(),
                    running.state.clone(),
                    self.history.clone(),
                ));
                let reason = running.failed().await;
                watcher.abort();
                tracing::info!(broker = %self.name, %reason, "broker exits: its store stopped");
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => {
                assert!(
                    self.disk.faults().fails_writes(),
                    "{} must recover from any crash: {e}",
                    self.name
                );
                tracing::info!(broker = %self.name, error = %e, "broker failed to start");
            }
        }
        self.history.record(Event::Stopped { node: self.name.clone(), wall: wall_ms() });
        self.exited_start.store(start, Ordering::Release);
        self.exited.notify_one();
    }
}

/// Records each workload message the broker makes visible to consumers, as dispatch moves
/// past it ([`Event::Confirmed`]); on each start, everything visible already. Ends when the
/// store's dispatch stops (or the node goes).
async fn record_confirmed(node: String, broker: Arc<Broker>, history: History) {
    let (store, dispatched) = (broker.store().clone(), broker.dispatched());
    let mut seen = store.min_physical_offset();
    loop {
        let now = dispatched.get();
        if now > seen {
            let records = crate::stores::records_in(&store, seen, now);
            if !records.is_empty() {
                history.record(Event::Confirmed { node: node.clone(), records });
            }
        }
        // A truncation takes it back: what comes again past the cut is new.
        seen = now;
        if !dispatched.wait_for(|at| at != now).await {
            return;
        }
    }
}

/// What the supervisor watches of one broker node.
struct Supervised {
    node: madsim::task::NodeId,
    exited: Arc<Notify>,
    starts: Arc<AtomicU64>,
    exited_start: Arc<AtomicU64>,
    /// Set while a power loss holds the node down (the power coming back restarts it).
    down: Arc<AtomicBool>,
}

/// When the broker exits, ends its process (its tasks and sockets go) and starts it again a
/// while later, unless a power loss holds the node down or restarted it meanwhile. An exit
/// of a process that a power loss has since replaced is old news: the process running now
/// did not exit, and is left alone.
async fn supervise(handle: Handle, watch: Supervised) {
    loop {
        watch.exited.notified().await;
        let starts = watch.starts.load(Ordering::Acquire);
        let current = watch.exited_start.load(Ordering::Acquire) == starts;
        if watch.down.load(Ordering::Acquire) || !current {
            continue;
        }
        handle.kill(watch.node);
        tokio::time::sleep(RESTART_DELAY).await;
        if !watch.down.load(Ordering::Acquire) && watch.starts.load(Ordering::Acquire) == starts {
            handle.restart(watch.node);
        }
    }
}

impl BrokerNode {
    /// The broker while it is up.
    pub fn running(&self) -> Option<Arc<Broker>> {
        self.watch().get()
    }

    /// A handle that tells, from anywhere in the run, whether the broker is up and its state.
    pub fn watch(&self) -> Watch {
        Watch(self.running.clone())
    }
}

/// One broker's state while it is up, seen from any task of the run (an omniscient checker).
#[derive(Clone)]
pub struct Watch(Arc<Mutex<Option<Arc<Broker>>>>);

impl Watch {
    pub fn get(&self) -> Option<Arc<Broker>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            brokers: 1,
            tune: |_| {},
            tune_each: |_, _| {},
            disk_faults: SimDiskFaults::default(),
        }
    }

    /// A new client node, at the next free 10.0.2.x address.
    pub fn client(&self, name: &str) -> NodeHandle {
        let ip = self.next_client_ip();
        let node = self.handle.create_node().name(name).ip(ip.into()).build();
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).push((node.id(), ip));
        node
    }

    /// A client node, at the next free 10.0.2.x address, that runs `init` when it starts and
    /// again at every restart (a consumer process, say).
    pub fn process<F: std::future::Future + 'static>(
        &self,
        name: &str,
        init: impl Fn() -> F + Send + Sync + 'static,
    ) -> NodeHandle {
        let ip = self.next_client_ip();
        let node = self.handle.create_node().name(name).ip(ip.into()).init(init).build();
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).push((node.id(), ip));
        node
    }

    fn next_client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 2, self.next_client.fetch_add(1, Ordering::Relaxed))
    }

    /// The address of client node `node` (one [`Cluster::client`] or [`Cluster::process`]
    /// made).
    pub fn client_ip(&self, node: &NodeHandle) -> Option<Ipv4Addr> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.iter().find(|(id, _)| *id == node.id()).map(|(_, ip)| *ip)
    }

    /// A client node loses power for `down_for`, recorded, and starts again.
    pub async fn power_loss(&self, node: &NodeHandle, name: &str, down_for: Duration) {
        self.handle.kill(node.id());
        self.history.record(Event::Crashed { node: name.to_owned(), wall: wall_ms() });
        tokio::time::sleep(down_for).await;
        self.handle.restart(node.id());
    }

    /// Every node of the cluster: the NameServer, the brokers, the clients.
    pub fn nodes(&self) -> Vec<madsim::task::NodeId> {
        let mut nodes = vec![self.namesrv.id()];
        nodes.extend(self.brokers.iter().map(|b| b.node.id()));
        nodes.extend(self.clients.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|c| c.0));
        nodes
    }

    /// Every broker's `ip:port`.
    pub fn broker_addrs(&self) -> Vec<String> {
        self.brokers.iter().map(|b| b.addr.clone()).collect()
    }

    /// Plays `fault` on broker `i`, recording it, and returns when it is over.
    pub async fn strike(&self, i: usize, fault: &Fault) {
        let broker = &self.brokers[i];
        let net = NetSim::current();
        let node = broker.node.id();
        match fault.kind {
            FaultKind::PowerLoss => {
                broker.down.store(true, Ordering::Release);
                self.handle.kill(node);
                broker.disk.crash();
                *broker.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.history.record(Event::Crashed { node: broker.name.clone(), wall: wall_ms() });
                tokio::time::sleep(fault.down_for).await;
                broker.down.store(false, Ordering::Release);
                self.handle.restart(node);
            }
            FaultKind::Partition => {
                net.clog_node(node);
                tokio::time::sleep(fault.down_for).await;
                net.unclog_node(node);
            }
            FaultKind::CutIn | FaultKind::CutOut => {
                let cut_in = fault.kind == FaultKind::CutIn;
                if cut_in {
                    net.clog_node_in(node)
                } else {
                    net.clog_node_out(node)
                }
                tokio::time::sleep(fault.down_for).await;
                if cut_in {
                    net.unclog_node_in(node)
                } else {
                    net.unclog_node_out(node)
                }
            }
        }
    }

    /// Broker `i` loses power and never comes back (its disk is lost with it), recorded.
    pub fn lose_for_good(&self, i: usize) {
        let broker = &self.brokers[i];
        broker.down.store(true, Ordering::Release);
        self.handle.kill(broker.node.id());
        broker.disk.crash();
        *broker.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.history.record(Event::Crashed { node: broker.name.clone(), wall: wall_ms() });
    }

    /// Plays each strike once the workload has taken its step (`steps` counts them), in order
    /// of their steps; a strike whose step never comes, because the workload is `done`, plays
    /// then.
    pub async fn play(
        &self,
        mut strikes: Vec<(u64, Strike<'_>)>,
        steps: impl Fn() -> u64,
        done: impl Fn() -> bool,
    ) {
        strikes.sort_by_key(|(after, _)| *after);
        for (after, strike) in &strikes {
            while steps() < *after && !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            match strike {
                Strike::Broker(i, fault) => self.strike(*i, fault).await,
                Strike::Client { node, name, down_for } => {
                    self.power_loss(node, name, *down_for).await;
                }
            }
        }
    }

    /// The brokers' disks fail as `faults` says from now on (for a scenario that builds its
    /// cluster without disk faults and prepares it before they begin).
    pub fn fault_disks(&self, faults: SimDiskFaults) {
        for broker in &self.brokers {
            broker.disk.set_faults(faults);
        }
    }

    /// The faults are over: disks stop failing, and the history says so.
    pub fn heal(&self) {
        for broker in &self.brokers {
            broker.disk.set_faults(SimDiskFaults::default());
        }
        self.history.record(Event::Healed);
    }

    /// Ends every node and supervisor of the cluster. madsim drops a task only when it runs
    /// or its node is killed: without this, the tasks still waiting when a run ends (and all
    /// they hold, disks included) would outlive it, and a long range of seeds would run out
    /// of memory.
    pub async fn stop(self) {
        for broker in &self.brokers {
            broker.supervisor.abort();
            self.handle.kill(broker.node.id());
        }
        self.handle.kill(self.namesrv.id());
        for (client, _) in self.clients.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.handle.kill(*client);
        }
        // The killed tasks are dropped as the executor comes to them.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// Checks the invariants of every broker that is up.
    pub fn check_invariants(&self) {
        for broker in &self.brokers {
            if let Some(state) = broker.running.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                state.check_invariants();
            }
        }
    }
}
