//! Three `petrel controller` nodes for a scenario (10.0.3.1-3, port 9878), each on its own
//! disk, which keeps its raft state across power losses, under a supervisor that starts a
//! controller again a second after it exits; and the faults that strike one.
#![allow(clippy::unwrap_used)] // A scenario's harness may unwrap: a panic is the failure report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use petrel::controller::{self, AppliedHook, ControllerConfig};
use petrel_core::controller::node::Persisted;
use petrel_core::controller::{Event, Replicas};
use petrel_storage::disk::{self, SimDisk, SimDiskFaults};

use crate::faults::{Fault, FaultKind};
use crate::report;

/// The controllers' addresses.
pub const CONTROLLERS: [&str; 3] = ["10.0.3.1:9878", "10.0.3.2:9878", "10.0.3.3:9878"];
/// How often a controller's supervisor asks whether it leads.
const LEADS_POLL: Duration = Duration::from_millis(100);
const STORE: &str = "/controller";

/// A controller node and its disk; `leads` while it is the raft leader, as it last said.
pub struct ControllerNode {
    pub node: NodeHandle,
    pub disk: SimDisk,
    pub leads: Arc<AtomicBool>,
    /// Every event the controller applied, on any of its starts, by log index; and each
    /// index where a later start applied another event than an earlier one.
    applied: Arc<Mutex<Applied>>,
}

#[derive(Default)]
struct Applied {
    events: BTreeMap<u64, Event>,
    forks: Vec<String>,
}

impl ControllerNode {
    pub fn spawn(handle: &Handle, i: usize, faults: SimDiskFaults) -> ControllerNode {
        let disk = SimDisk::new(thread_rng().gen(), 1 << 26, faults);
        let peers: Vec<(String, String)> = CONTROLLERS
            .iter()
            .enumerate()
            .map(|(n, a)| (format!("n{n}"), (*a).to_owned()))
            .collect();
        let applied = Arc::new(Mutex::new(Applied::default()));
        let record = applied.clone();
        let hook = move |index: u64, event: &Event| {
            let mut applied = record.lock().unwrap();
            match applied.events.insert(index, event.clone()) {
                Some(earlier) if earlier != *event => {
                    let fork = format!("index {index}: {earlier:?}, then {event:?}");
                    applied.forks.push(fork);
                }
                _ => {}
            }
        };
        // Snapshots every few entries, so that restarts start from one and lagging
        // controllers are sent one.
        let snapshot_entries = thread_rng().gen_range(2..8);
        let config = ControllerConfig {
            group: "SimControllers".into(),
            peers,
            self_id: format!("n{i}"),
            store_path: PathBuf::from(STORE),
            scan_not_active_broker_ms: 1_000,
            snapshot_entries,
            on_applied: Some(AppliedHook(Arc::new(hook))),
            ..ControllerConfig::default()
        };
        let leads = Arc::new(AtomicBool::new(false));
        let (process_disk, process_leads) = (disk.clone(), leads.clone());
        let node = handle
            .create_node()
            .name(format!("controller-{i}"))
            .ip(CONTROLLERS[i].split(':').next().unwrap().parse().unwrap())
            .init(move || serve(config.clone(), process_disk.clone(), process_leads.clone()))
            .build();
        ControllerNode { node, disk, leads, applied }
    }

    /// Plays `fault`; half the partitions cut this controller off from its `peers` only,
    /// the brokers still reaching it: a leader that does not know yet that it was deposed.
    pub async fn strike(&self, handle: &Handle, fault: &Fault, peers: &[madsim::task::NodeId]) {
        let node = self.node.id();
        match fault.kind {
            FaultKind::PowerLoss => {
                handle.kill(node);
                self.leads.store(false, Ordering::Release);
                self.disk.crash();
                tokio::time::sleep(fault.down_for).await;
                handle.restart(node);
            }
            FaultKind::Partition if thread_rng().gen_bool(0.5) => {
                report::note(format!("{} cut off from the other controllers only", node));
                let net = NetSim::current();
                for &peer in peers {
                    net.clog_link(node, peer);
                    net.clog_link(peer, node);
                }
                tokio::time::sleep(fault.down_for).await;
                for &peer in peers {
                    net.unclog_link(node, peer);
                    net.unclog_link(peer, node);
                }
            }
            _ => cut(node, fault).await,
        }
    }

    /// What this controller applied, by log index, on all its starts; `Err` naming an index
    /// where two starts applied different events.
    pub fn applied(&self) -> Result<BTreeMap<u64, Event>, String> {
        let applied = self.applied.lock().unwrap();
        match applied.forks.first() {
            Some(fork) => Err(fork.clone()),
            None => Ok(applied.events.clone()),
        }
    }

    /// The metadata its disk stands for (its snapshot and the committed entries after it),
    /// and the index that is at.
    pub fn on_disk(&self) -> (u64, Replicas) {
        let path = Path::new(STORE).join("raft-state");
        let Some(bytes) = disk::read_small(&self.disk, &path, 64 << 20).unwrap() else {
            return (0, Replicas::default());
        };
        let persisted = Persisted::decode(&bytes).expect("a sound disk reads a sound state file");
        persisted.replayed().expect("committed entries are events")
    }
}

/// A controller process: serves until its raft state cannot be written, then starts again a
/// second later, as a supervisor would.
async fn serve(config: ControllerConfig, disk: SimDisk, leads: Arc<AtomicBool>) {
    loop {
        match controller::start(config.clone(), Arc::new(disk.clone())).await {
            Ok(running) => {
                let why = loop {
                    // Biased: tokio's unbiased pick draws from a generator seeded outside the
                    // simulation (signal.rs), and two runs of a seed would differ.
                    tokio::select! {
                        biased;
                        why = running.failed() => break why,
                        () = tokio::time::sleep(LEADS_POLL) => {
                            leads.store(running.is_leader().await, Ordering::Release);
                        }
                    }
                };
                leads.store(false, Ordering::Release);
                tracing::info!(%why, "controller exits");
                running.shutdown().await;
            }
            Err(e) => {
                assert!(
                    disk.faults().fails_writes(),
                    "a controller must start from any crash: {e}"
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn cut(node: madsim::task::NodeId, fault: &Fault) {
    let net = NetSim::current();
    match fault.kind {
        FaultKind::Partition => net.clog_node(node),
        FaultKind::CutIn => net.clog_node_in(node),
        _ => net.clog_node_out(node),
    }
    tokio::time::sleep(fault.down_for).await;
    match fault.kind {
        FaultKind::Partition => net.unclog_node(node),
        FaultKind::CutIn => net.unclog_node_in(node),
        _ => net.unclog_node_out(node),
    }
}
