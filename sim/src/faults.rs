//! The fault plan: what goes wrong in a run, drawn from the run's seed. Every knob defaults to
//! zero, so `FaultPlan::default()` is a run where nothing goes wrong; [`FaultPlan::swarm`]
//! turns on a random subset of fault kinds at random rates, so that each seed tries a
//! different mix and rare combinations are reached over many seeds.
//!
//! A plan becomes a [`Schedule`]: the faults placed along the workload's progress, which the
//! scenario plays against its nodes and notes in its report, so a replay shows what happened
//! when.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use petrel_storage::disk::SimDiskFaults;

/// What may go wrong, and how often.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultPlan {
    /// Power losses of the target node: killed, its disk crashed (unsynced writes kept,
    /// dropped or torn per `disk`), restarted after an outage.
    pub power_losses: u32,
    /// Partitions: the target node is clogged both ways for an outage, then healed.
    pub partitions: u32,
    /// One-way cuts: for an outage, the target node's incoming or its outgoing messages do not
    /// get through (requests arrive and their answers do not, or the other way round). madsim
    /// retransmits them with a backoff, as TCP does, so they may arrive long after.
    pub one_way_cuts: u32,
    /// How long an outage lasts, drawn uniformly from this range.
    pub outage: Range<Duration>,
    /// Extra latency of every network message, drawn uniformly from this range (the
    /// simulator's default when empty).
    pub latency: Range<Duration>,
    /// Faults of the target's disk until the run heals: torn unsynced writes at a power loss,
    /// failed fsyncs (the broker's store stops, the broker exits and its supervisor starts it
    /// again), writes failing with ENOSPC, and reads returning a flipped bit.
    pub disk: SimDiskFaults,
}

/// What a fault does to the target node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    PowerLoss,
    Partition,
    /// Messages to the node do not get through (they arrive after the cut, late).
    CutIn,
    /// Messages from the node do not get through (they arrive after the cut, late).
    CutOut,
}

/// One fault, placed by the workload's progress: it strikes once the workload has taken
/// `after` steps (sends, for instance), and the node is out for `down_for`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub after: u64,
    pub down_for: Duration,
}

/// The faults of one run, in order of their steps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    pub faults: Vec<Fault>,
    pub latency: Range<Duration>,
    pub disk: SimDiskFaults,
}

impl FaultPlan {
    /// [`FaultPlan::swarm`] for the failover scenarios: two more power losses and partitions,
    /// one more one-way cut, outages of 0.5-8 s (many past a heartbeat timeout), and no flipped
    /// reads (a controller reads its raft state once, at its start: a bit flipped there stops
    /// it, not a fault these scenarios are about).
    pub fn failover() -> FaultPlan {
        let mut plan = FaultPlan::swarm();
        plan.disk.read_bitflip_ratio = 0.0;
        plan.power_losses += 2;
        plan.partitions += 2;
        plan.one_way_cuts += 1;
        plan.outage = Duration::from_millis(500)..Duration::from_secs(8);
        plan
    }

    /// A swarm plan with two more power losses: for scenarios whose promises are about what
    /// survives restarts and recovery.
    pub fn swarm_restarting() -> FaultPlan {
        let mut plan = FaultPlan::swarm();
        plan.power_losses += 2;
        plan
    }

    /// A random subset of the fault kinds at random rates: each kind is on with probability
    /// one half. At least one outage happens, so every seed faces something.
    pub fn swarm() -> FaultPlan {
        let mut rng = thread_rng();
        let mut plan = FaultPlan {
            outage: Duration::from_millis(100)..Duration::from_millis(rng.gen_range(500..4_000)),
            ..FaultPlan::default()
        };
        if rng.gen_bool(0.5) {
            plan.power_losses = rng.gen_range(1..=3);
        }
        if rng.gen_bool(0.5) {
            plan.partitions = rng.gen_range(1..=2);
        }
        if plan.power_losses + plan.partitions == 0 {
            plan.power_losses = 1;
        }
        if rng.gen_bool(0.5) {
            let high = rng.gen_range(2..20);
            plan.latency = Duration::from_millis(1)..Duration::from_millis(high);
        }
        if rng.gen_bool(0.5) {
            plan.disk.torn_write_ratio = rng.gen_range(0.0..=1.0);
        }
        if rng.gen_bool(0.3) {
            plan.one_way_cuts = rng.gen_range(1..=2);
        }
        if rng.gen_bool(0.25) {
            plan.disk.fsync_fail_ratio = rng.gen_range(0.002..0.03);
        }
        if rng.gen_bool(0.25) {
            plan.disk.enospc_ratio = rng.gen_range(0.001..0.02);
        }
        if rng.gen_bool(0.25) {
            plan.disk.read_bitflip_ratio = rng.gen_range(0.001..0.02);
        }
        plan
    }

    /// Places the plan's outages over a workload of `steps` steps, in a random order: each
    /// in its own share of the steps, at a random step of that share.
    pub fn schedule(&self, steps: u64) -> Schedule {
        let mut rng = thread_rng();
        let mut kinds: Vec<FaultKind> = (0..self.power_losses)
            .map(|_| FaultKind::PowerLoss)
            .chain((0..self.partitions).map(|_| FaultKind::Partition))
            .chain((0..self.one_way_cuts).map(|i| match i % 2 {
                0 => FaultKind::CutIn,
                _ => FaultKind::CutOut,
            }))
            .collect();
        // Fisher-Yates with the seeded generator.
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.gen_range(0..=i));
        }
        let share = (steps / kinds.len().max(1) as u64).max(1);
        let faults = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Fault {
                kind,
                after: share * i as u64 + rng.gen_range(0..share),
                down_for: if self.outage.is_empty() {
                    self.outage.start
                } else {
                    rng.gen_range(self.outage.clone())
                },
            })
            .collect();
        Schedule { faults, latency: self.latency.clone(), disk: self.disk }
    }
}

impl Schedule {
    /// Sets the network's latency, when the plan gives one.
    pub fn apply_latency(&self) {
        if !self.latency.is_empty() {
            NetSim::current().update_config(|c| c.send_latency = self.latency.clone());
        }
    }

    /// Waits, once every fault is over, until the messages the network held back have all
    /// arrived. madsim keeps a message sent over a cut link and tries it again after 1 ms,
    /// 2 ms, 4 ms and so on (10 s at most): one held for `d` arrives up to `d` after the cut
    /// ends. A send its producer gave up on can still reach a broker then and grow its log, so
    /// a scenario that compares the replicas' final logs waits this out first.
    pub async fn held_back_delivered(&self) {
        let longest = (self.faults.iter())
            .filter(|fault| fault.kind != FaultKind::PowerLoss)
            .map(|fault| fault.down_for.min(MADSIM_BACKOFF_MAX))
            .max();
        if let Some(longest) = longest {
            let latency = self.latency.end.max(MADSIM_LATENCY_MAX);
            tokio::time::sleep(longest + latency + Duration::from_millis(1)).await;
        }
    }
}

/// The longest madsim waits before trying a held-back message again.
const MADSIM_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The top of madsim's default send latency (1-10 ms).
const MADSIM_LATENCY_MAX: Duration = Duration::from_millis(10);

impl fmt::Display for Schedule {
    /// One line per fault, then the network and disk settings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults {
            let kind = match fault.kind {
                FaultKind::PowerLoss => "power loss",
                FaultKind::Partition => "partition",
                FaultKind::CutIn => "incoming messages held back",
                FaultKind::CutOut => "outgoing messages held back",
            };
            let (after, out) = (fault.after, fault.down_for.as_secs_f64());
            writeln!(f, "  after step {after:>4}: {kind} for {out:.3} s")?;
        }
        if !self.latency.is_empty() {
            writeln!(f, "  network latency {:?}..{:?}", self.latency.start, self.latency.end)?;
        }
        let disk = &self.disk;
        write!(
            f,
            "  disk: {:.0}% of unsynced writes torn at a crash, {:.1}% of fsyncs fail, \
             {:.1}% of writes ENOSPC, {:.1}% of reads flip a bit",
            disk.torn_write_ratio * 100.0,
            disk.fsync_fail_ratio * 100.0,
            disk.enospc_ratio * 100.0,
            disk.read_bitflip_ratio * 100.0,
        )
    }
}
