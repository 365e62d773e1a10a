//! A broker in controller mode (RocketMQ 5's `ReplicasManager` and the sync-state-set half of
//! `AutoSwitchHAService`): its role as the controller names it, and, while it is master, its
//! sync-state set, widened and narrowed from its slaves' acknowledgements (`docs/failover.md`,
//! "A broker in controller mode").
//!
//! No I/O and no clock. The shell hands in what the controller answered (register, replica
//! info, NOTIFY_BROKER_ROLE_CHANGED), what the HA port saw of each slave, how far the log is,
//! and ticks; it carries out the [`ReplicasAction`]s: role changes, elections to ask for, set
//! changes to propose, and which slaves' acknowledgements the confirm machine counts.
//!
//! ```text
//!   Fenced ── view: master is me ──▶ Master(epoch) ── view: newer epoch, other master ──▶ Slave
//!     │                                  ▲                                                 │
//!     └── view: other master ──▶ Slave ──┴──────── view: newer epoch, master is me ◀───────┘
//!   a view without a master, newer than the last: ask for an election (the role stays)
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::controller::BrokerId;
use crate::Millis;

/// RocketMQ's `haMaxTimeSlaveNotCatchup`.
pub const NOT_CATCHUP_DEFAULT_MS: Millis = 15_000;

/// The settings the role and the set depend on (RocketMQ's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicasConfig {
    /// `allAckInSyncStateSet`: a producer waits for every member of the set.
    pub all_ack: bool,
    /// `minInSyncReplicas`: a master with a smaller set refuses writes.
    pub min_in_sync: usize,
    /// `haMaxTimeSlaveNotCatchup`: a member behind for longer leaves the set.
    pub not_catchup_ms: Millis,
}

/// What the controller said of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The master and its client address, if the group has one.
    pub master: Option<(BrokerId, String)>,
    pub master_epoch: i32,
    pub set: BTreeSet<BrokerId>,
    pub set_epoch: i32,
}

/// The broker's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not yet told: no writes, no replication.
    Fenced,
    Master,
    Slave {
        master: BrokerId,
        master_addr: String,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicasAction {
    /// Become the group's master in `epoch`: stop following, write in `epoch` from the log's
    /// end, serve slaves, register with the NameServers as broker 0.
    BecomeMaster { epoch: i32 },
    /// Follow `master` at `master_addr` (its client address) in `epoch`.
    BecomeSlave { master: BrokerId, master_addr: String, epoch: i32 },
    /// The group has no master: ask the controller to elect one.
    Elect,
    /// Ask the controller to make `set` the sync-state set (ALTER_SYNC_STATE_SET); the answer
    /// goes to [`Replicas::proposal_answered`] with `seq`. `joiners_hold` is the least log end
    /// held by a member the set adds (`None` if it adds none): the core's confirm offset may
    /// lag the store's, so the shell asks only if nothing past it was acknowledged or
    /// confirmed, read after the actions before this one (the joiners' acks already counted,
    /// so nothing more passes it), and otherwise answers `NotReplicated` itself.
    ProposeSet {
        set: BTreeSet<BrokerId>,
        set_epoch: i32,
        master_epoch: i32,
        seq: u64,
        joiners_hold: Option<u64>,
    },
    /// The confirm machine counts `slave`'s acknowledgements from now on, up to `offset`.
    CountAcks { slave: BrokerId, offset: u64 },
    /// The confirm machine no longer counts `slave`.
    UncountAcks { slave: BrokerId },
    /// How many counted slaves must hold a record before it is acknowledged and confirmed.
    AcksRequired { acks: usize },
}

/// What became of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// The controller replicated this set at this set epoch.
    Replicated(BTreeSet<BrokerId>, i32),
    /// The controller refused it, or no answer came (it may yet have been applied).
    NotReplicated,
}

/// Proposals at the current set epoch whose fate is not known. Every member of any of them
/// counts as a member of the set (RocketMQ's `remoteSyncStateSet`), so that a slave that joins
/// holds every record acknowledged from the moment it was proposed, and a member that leaves
/// is waited for until its leaving is replicated. A proposal without an answer may still be
/// applied: the union is dropped only when the controller's set epoch moves past the current
/// one, or a view read after the last answer shows it unchanged.
#[derive(Debug, Clone)]
struct Pending {
    members: BTreeSet<BrokerId>,
    latest: BTreeSet<BrokerId>,
    /// The latest proposal's number, and whether its answer came.
    seq: u64,
    answered: bool,
}

#[derive(Debug, Clone)]
struct Follower {
    /// The connection this slave is on (a reconnect replaces the last).
    conn: u64,
    learner: bool,
    acked: u64,
    caught_up_at: Millis,
}

/// The broker's replication state in controller mode.
#[derive(Debug)]
pub struct Replicas {
    config: ReplicasConfig,
    me: BrokerId,
    role: Role,
    master_epoch: i32,
    set: BTreeSet<BrokerId>,
    set_epoch: i32,
    /// Sets proposed at the current set epoch whose fate is not known yet.
    pending: Option<Pending>,
    /// Numbers the proposals, so that a late answer is not taken for the latest's.
    proposals: u64,
    /// Master only: the slaves connected to the HA port.
    followers: BTreeMap<BrokerId, Follower>,
    /// The slaves whose acks the confirm machine counts, and how many it needs.
    counted: BTreeSet<BrokerId>,
    acks_required: usize,
    /// Master only: where the log ends (as far as slaves are sent it), the confirm offset,
    /// and where this master's epoch began.
    end: u64,
    confirmed: u64,
    epoch_start: u64,
    actions: VecDeque<ReplicasAction>,
}

impl Replicas {
    /// A broker with controller id `me`, fenced until the controller names its role.
    pub fn new(config: ReplicasConfig, me: BrokerId) -> Replicas {
        Replicas {
            config,
            me,
            role: Role::Fenced,
            master_epoch: 0,
            set: BTreeSet::new(),
            set_epoch: 0,
            pending: None,
            proposals: 0,
            followers: BTreeMap::new(),
            counted: BTreeSet::new(),
            acks_required: 0,
            end: 0,
            confirmed: 0,
            epoch_start: 0,
            actions: VecDeque::new(),
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn me(&self) -> BrokerId {
        self.me
    }

    pub fn master_epoch(&self) -> i32 {
        self.master_epoch
    }

    /// The sync-state set and its epoch, as last replicated.
    pub fn set(&self) -> (&BTreeSet<BrokerId>, i32) {
        (&self.set, self.set_epoch)
    }

    /// Why this broker may not take writes now (`None`: it may): it is not the master, or its
    /// set is smaller than `minInSyncReplicas` (RocketMQ's IN_SYNC_REPLICAS_NOT_ENOUGH).
    pub fn write_refusal(&self) -> Option<String> {
        match self.role {
            Role::Fenced => Some("the broker waits for its controller to name its role".into()),
            Role::Slave { .. } => Some("the broker is a slave in controller mode".into()),
            Role::Master if self.counting().len() < self.config.min_in_sync => Some(format!(
                "in-sync replicas not enough: the sync-state set {:?} is smaller than \
                 minInSyncReplicas {}",
                self.set, self.config.min_in_sync
            )),
            Role::Master => None,
        }
    }

    /// What the controller said (an answer to registration or to GET_REPLICA_INFO, or a
    /// NOTIFY_BROKER_ROLE_CHANGED). Only a newer master epoch changes the role.
    pub fn view(&mut self, view: GroupView) {
        if view.master_epoch < self.master_epoch {
            return;
        }
        let names_me = view.master.as_ref().is_some_and(|(id, _)| *id == self.me);
        if view.master_epoch == self.master_epoch && self.role != Role::Fenced {
            if self.role == Role::Master && names_me {
                self.settle(view.set, view.set_epoch);
            }
            return;
        }
        match view.master {
            Some((id, _)) if id == self.me => {
                self.master_epoch = view.master_epoch;
                self.role = Role::Master;
                self.followers.clear();
                self.pending = None;
                self.actions.push_back(ReplicasAction::BecomeMaster { epoch: view.master_epoch });
                self.replicated_set(view.set, view.set_epoch);
            }
            Some((master, master_addr)) => {
                self.master_epoch = view.master_epoch;
                self.role = Role::Slave { master, master_addr: master_addr.clone() };
                self.followers.clear();
                self.pending = None;
                (self.set, self.set_epoch) = (view.set, view.set_epoch);
                let epoch = view.master_epoch;
                self.actions.push_back(ReplicasAction::BecomeSlave { master, master_addr, epoch });
                self.recount();
            }
            None if view.master_epoch > self.master_epoch || self.role == Role::Fenced => {
                self.actions.push_back(ReplicasAction::Elect);
            }
            None => {}
        }
    }

    /// The master's view of its own set: a newer set epoch is the controller's set, replacing
    /// any pending proposals; the same epoch with the answer of the latest proposal in says
    /// none of them was applied.
    fn settle(&mut self, set: BTreeSet<BrokerId>, set_epoch: i32) {
        if set_epoch > self.set_epoch {
            self.replicated_set(set, set_epoch);
        } else if set_epoch == self.set_epoch && self.pending.as_ref().is_some_and(|p| p.answered) {
            self.pending = None;
            self.recount();
        }
    }

    /// The controller replicated `set`. The master is always a member of its set (the
    /// controller's rule); a set without it is taken with it.
    fn replicated_set(&mut self, mut set: BTreeSet<BrokerId>, set_epoch: i32) {
        if set_epoch < self.set_epoch && self.role == Role::Master {
            return;
        }
        set.insert(self.me);
        (self.set, self.set_epoch) = (set, set_epoch);
        self.pending = None;
        self.recount();
    }

    /// The answer to proposal `seq`. Unless it was replicated, its members go on counting
    /// until a view settles its fate.
    pub fn proposal_answered(&mut self, seq: u64, outcome: ProposalOutcome) {
        if self.role != Role::Master {
            return;
        }
        match outcome {
            ProposalOutcome::Replicated(set, set_epoch) => self.replicated_set(set, set_epoch),
            ProposalOutcome::NotReplicated => {
                if let Some(pending) = self.pending.as_mut().filter(|p| p.seq == seq) {
                    pending.answered = true;
                }
            }
        }
    }

    /// A slave said hello on connection `conn`.
    pub fn slave_connected(&mut self, now: Millis, slave: BrokerId, conn: u64, learner: bool) {
        if self.role != Role::Master || slave == self.me {
            return;
        }
        let follower = Follower { conn, learner, acked: 0, caught_up_at: now };
        self.followers.insert(slave, follower);
    }

    /// The slave on `conn` holds the log up to `offset`.
    pub fn slave_acked(&mut self, now: Millis, slave: BrokerId, conn: u64, offset: u64) {
        let end = self.end;
        let Some(follower) = self.followers.get_mut(&slave).filter(|f| f.conn == conn) else {
            return;
        };
        follower.acked = follower.acked.max(offset);
        if follower.learner {
            return;
        }
        if follower.acked >= end {
            follower.caught_up_at = now;
        }
        if self.counted.contains(&slave) {
            self.actions.push_back(ReplicasAction::CountAcks { slave, offset: follower.acked });
        }
        self.maybe_expand();
    }

    /// RocketMQ's `maybeExpandInSyncStateSet`: a slave outside the set that holds the log up
    /// to the confirm offset and into this master's epoch is proposed in, one at a time.
    fn maybe_expand(&mut self) {
        if self.role != Role::Master || self.pending.as_ref().is_some_and(|p| !p.answered) {
            return;
        }
        let (confirmed, epoch_start) = (self.confirmed, self.epoch_start);
        let joining = self.followers.iter().find(|(id, f)| {
            !self.set.contains(id) && !f.learner && f.acked >= confirmed && f.acked >= epoch_start
        });
        if let Some((&slave, _)) = joining {
            let mut set = self.set.clone();
            set.insert(slave);
            self.propose(set);
        }
    }

    /// The slave's connection `conn` closed.
    pub fn slave_gone(&mut self, slave: BrokerId, conn: u64) {
        if self.followers.get(&slave).is_some_and(|f| f.conn == conn) {
            self.followers.remove(&slave);
        }
    }

    /// The master's log: where it ends (as sent to slaves), the confirm offset, and where this
    /// master's epoch began.
    pub fn log(&mut self, end: u64, confirmed: u64, epoch_start: u64) {
        (self.end, self.confirmed, self.epoch_start) = (end, confirmed, epoch_start);
    }

    /// Time passed: members behind for `haMaxTimeSlaveNotCatchup`, or not connected for as
    /// long, are proposed out of the set (RocketMQ's `maybeShrinkSyncStateSet`), and a slave
    /// that caught up while another proposal was pending is proposed in.
    pub fn tick(&mut self, now: Millis) {
        if self.role != Role::Master {
            return;
        }
        // A slave that holds everything there is to send is caught up now, reporting or not
        // (RocketMQ counts one whose connection has nothing to send).
        let end = self.end;
        for follower in self.followers.values_mut().filter(|f| f.acked >= end) {
            follower.caught_up_at = now;
        }
        if self.pending.as_ref().is_some_and(|p| !p.answered) {
            return;
        }
        self.maybe_expand();
        if self.pending.as_ref().is_some_and(|p| !p.answered) {
            return;
        }
        let limit = self.config.not_catchup_ms;
        let behind = |id: &BrokerId| match self.followers.get(id) {
            Some(f) => now.saturating_sub(f.caught_up_at) > limit,
            None => true,
        };
        let keep: BTreeSet<BrokerId> =
            self.set.iter().copied().filter(|id| *id == self.me || !behind(id)).collect();
        if keep != self.set {
            self.propose(keep);
        } else if let Some(latest) = self.pending.as_ref().map(|p| p.latest.clone()) {
            // Nothing else to change: ask again, until the fate of the last one is known.
            self.propose(latest);
        }
    }

    fn propose(&mut self, set: BTreeSet<BrokerId>) {
        self.proposals += 1;
        let seq = self.proposals;
        let pending = self.pending.get_or_insert_with(|| Pending {
            members: BTreeSet::new(),
            latest: BTreeSet::new(),
            seq,
            answered: false,
        });
        pending.members.extend(set.iter().copied());
        (pending.latest, pending.seq, pending.answered) = (set.clone(), seq, false);
        self.recount();
        let (set_epoch, master_epoch) = (self.set_epoch, self.master_epoch);
        let joiners_hold =
            set.difference(&self.set).map(|id| self.followers.get(id).map_or(0, |f| f.acked)).min();
        let propose =
            ReplicasAction::ProposeSet { set, set_epoch, master_epoch, seq, joiners_hold };
        self.actions.push_back(propose);
    }

    /// The members whose acks count: the set, and a proposed set's members meanwhile.
    fn counting(&self) -> BTreeSet<BrokerId> {
        let mut counting = self.set.clone();
        counting.extend(self.pending.iter().flat_map(|p| p.members.iter().copied()));
        counting
    }

    /// Tells the confirm machine whose acks count, and how many it needs. The machine never
    /// needs fewer acks than the members it counts at any moment between two of these actions:
    /// a higher requirement goes first, members leave before others join, a lower requirement
    /// goes last (a new member's acks counted before the requirement rose, or beside one about
    /// to leave, would let one member's ack stand for two).
    fn recount(&mut self) {
        let wanted: BTreeSet<BrokerId> = match self.role {
            Role::Master => self.counting().into_iter().filter(|id| *id != self.me).collect(),
            _ => BTreeSet::new(),
        };
        let acks = match self.config.all_ack {
            true => wanted.len(),
            false => 0,
        };
        if acks > self.acks_required {
            self.actions.push_back(ReplicasAction::AcksRequired { acks });
        }
        for gone in self.counted.difference(&wanted) {
            self.actions.push_back(ReplicasAction::UncountAcks { slave: *gone });
        }
        for new in wanted.difference(&self.counted) {
            let offset = self.followers.get(new).map_or(0, |f| f.acked);
            self.actions.push_back(ReplicasAction::CountAcks { slave: *new, offset });
        }
        if acks <= self.acks_required {
            self.actions.push_back(ReplicasAction::AcksRequired { acks });
        }
        self.counted = wanted;
        self.acks_required = acks;
    }

    pub fn poll_action(&mut self) -> Option<ReplicasAction> {
        self.actions.pop_front()
    }

    pub fn check_invariants(&self) {
        if self.role == Role::Master {
            assert!(self.set.contains(&self.me), "a master outside its set {:?}", self.set);
            assert!(
                self.counted.iter().all(|id| self.counting().contains(id)),
                "counted outside the set"
            );
        } else {
            assert!(self.counted.is_empty(), "a non-master counts acks");
            assert!(self.followers.is_empty(), "a non-master has followers");
        }
        if let Some(pending) = &self.pending {
            assert!(pending.latest.contains(&self.me), "a proposal without the master");
            assert!(pending.latest.is_subset(&pending.members), "the latest proposal counted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(all_ack: bool) -> ReplicasConfig {
        ReplicasConfig { all_ack, min_in_sync: 1, not_catchup_ms: 15_000 }
    }

    fn set(ids: &[BrokerId]) -> BTreeSet<BrokerId> {
        ids.iter().copied().collect()
    }

    fn view(
        master: Option<BrokerId>,
        epoch: i32,
        members: &[BrokerId],
        set_epoch: i32,
    ) -> GroupView {
        GroupView {
            master: master.map(|id| (id, format!("10.0.1.{id}:10911"))),
            master_epoch: epoch,
            set: set(members),
            set_epoch,
        }
    }

    fn drain(r: &mut Replicas) -> Vec<ReplicasAction> {
        r.check_invariants();
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    use ProposalOutcome::*;
    use ReplicasAction::*;

    #[test]
    fn the_controllers_views_name_the_role_and_only_newer_epochs_change_it() {
        let mut r = Replicas::new(config(true), 2);
        assert!(r.write_refusal().is_some(), "fenced");
        r.view(view(None, 0, &[], 0));
        assert_eq!(drain(&mut r), [Elect], "no master yet: ask for one");
        r.view(view(Some(1), 1, &[1], 1));
        let slave = BecomeSlave { master: 1, master_addr: "10.0.1.1:10911".into(), epoch: 1 };
        assert_eq!(drain(&mut r), [slave, AcksRequired { acks: 0 }]);
        assert!(r.write_refusal().unwrap().contains("slave"));
        r.view(view(Some(1), 1, &[1, 2], 2));
        assert_eq!(drain(&mut r), [], "the same epoch changes nothing on a slave");
        r.view(view(None, 2, &[1, 2], 2));
        assert_eq!(drain(&mut r), [Elect], "the master died");
        r.view(view(Some(2), 3, &[2], 3));
        assert_eq!(drain(&mut r), [BecomeMaster { epoch: 3 }, AcksRequired { acks: 0 }]);
        assert_eq!(r.write_refusal(), None);
        r.view(view(Some(1), 2, &[1], 2));
        assert_eq!(drain(&mut r), [], "an older view is ignored");
        assert_eq!(r.role(), &Role::Master);
    }

    /// A slave that catches up joins the set through a proposal; its acks count from the
    /// proposal on; one that falls behind for haMaxTimeSlaveNotCatchup is proposed out.
    #[test]
    fn the_set_widens_when_a_slave_catches_up_and_narrows_when_it_falls_behind() {
        let mut r = Replicas::new(config(true), 1);
        r.view(view(Some(1), 1, &[1], 1));
        drain(&mut r);
        r.log(1000, 1000, 0);
        r.slave_connected(0, 2, 7, false);
        r.slave_acked(1, 2, 7, 500);
        assert_eq!(drain(&mut r), [], "behind the confirm offset");
        r.slave_acked(2, 2, 7, 1000);
        let propose = ProposeSet {
            set: set(&[1, 2]),
            set_epoch: 1,
            master_epoch: 1,
            seq: 1,
            joiners_hold: Some(1000),
        };
        assert_eq!(
            drain(&mut r),
            [AcksRequired { acks: 1 }, CountAcks { slave: 2, offset: 1000 }, propose]
        );
        r.proposal_answered(1, Replicated(set(&[1, 2]), 2));
        assert_eq!(drain(&mut r), [AcksRequired { acks: 1 }]);
        assert_eq!(r.set(), (&set(&[1, 2]), 2));
        r.log(3000, 1000, 0);
        r.slave_acked(3, 2, 7, 1500);
        assert_eq!(drain(&mut r), [CountAcks { slave: 2, offset: 1500 }]);
        r.tick(15_002);
        assert_eq!(drain(&mut r), []);
        r.tick(15_003);
        let propose = ProposeSet {
            set: set(&[1]),
            set_epoch: 2,
            master_epoch: 1,
            seq: 2,
            joiners_hold: None,
        };
        assert_eq!(drain(&mut r), [AcksRequired { acks: 1 }, propose], "counted until replicated");
        r.proposal_answered(2, Replicated(set(&[1]), 3));
        assert_eq!(drain(&mut r), [UncountAcks { slave: 2 }, AcksRequired { acks: 0 }]);
    }

    /// The core's confirm offset is the one it last read; a proposal names what its joining
    /// member holds, so that the shell can hold it against the store's, and when the shell
    /// refuses it the core asks again, at the member's next ack or tick, with what it holds.
    #[test]
    fn a_proposal_names_what_its_joining_member_holds() {
        let mut r = Replicas::new(config(true), 1);
        r.view(view(Some(1), 1, &[1], 1));
        r.log(1000, 600, 0);
        r.slave_connected(0, 2, 7, false);
        r.slave_acked(1, 2, 7, 700);
        let holds = |actions: Vec<ReplicasAction>| -> Vec<Option<u64>> {
            let proposals = actions.into_iter().filter_map(|a| match a {
                ProposeSet { joiners_hold, .. } => Some(joiners_hold),
                _ => None,
            });
            proposals.collect()
        };
        assert_eq!(holds(drain(&mut r)), [Some(700)]);
        r.proposal_answered(1, NotReplicated);
        r.slave_acked(2, 2, 7, 800);
        assert_eq!(holds(drain(&mut r)), [Some(800)], "asked again, holding more");
        r.proposal_answered(2, NotReplicated);
        r.tick(3);
        assert_eq!(holds(drain(&mut r)), [Some(800)], "and at the next tick");
        r.proposal_answered(3, Replicated(set(&[1, 2]), 2));
        r.slave_connected(4, 3, 8, false);
        r.slave_acked(5, 3, 8, 1000);
        assert_eq!(holds(drain(&mut r)), [Some(1000)]);
        r.proposal_answered(4, Replicated(set(&[1, 2, 3]), 3));
        r.tick(20_000);
        assert_eq!(holds(drain(&mut r)), [None], "slave 2 fell behind: a narrowing adds nobody");
    }

    /// A slave that caught up while another's proposal was pending joins at the next tick;
    /// an idle slave that holds the whole log stays in the set however long it is quiet.
    #[test]
    fn a_slave_waiting_behind_a_proposal_joins_later_and_an_idle_one_stays() {
        let mut r = Replicas::new(config(true), 1);
        r.view(view(Some(1), 1, &[1], 1));
        r.log(100, 100, 0);
        r.slave_connected(0, 2, 1, false);
        r.slave_connected(0, 3, 2, false);
        r.slave_acked(1, 2, 1, 100);
        r.slave_acked(1, 3, 2, 100);
        let proposals = |actions: Vec<ReplicasAction>| -> Vec<BTreeSet<BrokerId>> {
            actions
                .into_iter()
                .filter_map(|a| match a {
                    ProposeSet { set, .. } => Some(set),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(proposals(drain(&mut r)), [set(&[1, 2])]);
        r.proposal_answered(1, Replicated(set(&[1, 2]), 2));
        drain(&mut r);
        r.tick(2);
        assert_eq!(proposals(drain(&mut r)), [set(&[1, 2, 3])]);
        r.proposal_answered(2, Replicated(set(&[1, 2, 3]), 3));
        for now in (1_000..100_000).step_by(1_000) {
            r.tick(now);
            assert_eq!(proposals(drain(&mut r)), Vec::<BTreeSet<BrokerId>>::new(), "at {now}");
        }
    }

    /// A learner never joins; without allAckInSyncStateSet no acks are required; a set below
    /// minInSyncReplicas refuses writes; a refused proposal is dropped.
    #[test]
    fn learners_min_in_sync_and_refused_proposals() {
        let mut r = Replicas::new(ReplicasConfig { min_in_sync: 2, ..config(false) }, 1);
        r.view(view(Some(1), 1, &[1], 1));
        assert_eq!(drain(&mut r), [BecomeMaster { epoch: 1 }, AcksRequired { acks: 0 }]);
        assert!(r.write_refusal().unwrap().contains("minInSyncReplicas 2"));
        r.slave_connected(0, 3, 1, true);
        r.slave_acked(1, 3, 1, 0);
        assert_eq!(drain(&mut r), [], "a learner never joins");
        r.slave_connected(0, 2, 2, false);
        r.slave_acked(1, 2, 2, 0);
        assert!(matches!(drain(&mut r).last(), Some(ProposeSet { .. })));
        assert_eq!(r.write_refusal(), None, "a proposed member counts meanwhile");
        r.proposal_answered(1, NotReplicated);
        assert_eq!(drain(&mut r), [], "an unanswered proposal may yet be applied");
        r.view(view(Some(1), 1, &[1], 1));
        let dropped = [UncountAcks { slave: 2 }, AcksRequired { acks: 0 }];
        assert_eq!(drain(&mut r), dropped, "a view read after the answer shows it was not");
        assert!(r.write_refusal().is_some());
    }

    proptest::proptest! {
        /// Whatever the views, connections, acks and time, the invariants hold and a master
        /// epoch never goes back.
        #[test]
        fn invariants_hold_under_any_events(
            steps in proptest::collection::vec((0u8..6, 1i64..4, 0u64..3000), 1..80),
        ) {
            let mut r = Replicas::new(config(true), 1);
            let (mut now, mut epoch, mut set_epoch) = (0u64, 0i32, 0i32);
            let (mut counted, mut required) = (BTreeSet::new(), 0usize);
            for (kind, id, amount) in steps {
                now += amount % 5000;
                match kind {
                    0 => {
                        epoch += (amount % 2) as i32;
                        set_epoch += 1;
                        let master = (amount % 3 != 0).then_some(id);
                        let members: Vec<BrokerId> = master.into_iter().collect();
                        r.view(view(master, epoch, &members, set_epoch));
                    }
                    1 => r.slave_connected(now, id, amount % 3, amount % 5 == 0),
                    2 => r.slave_acked(now, id, amount % 3, amount),
                    3 => r.slave_gone(id, amount % 3),
                    4 => {
                        set_epoch += 1;
                        let mut members = r.set().0.clone();
                        members.insert(id);
                        let outcome = match amount % 2 {
                            0 => Replicated(members, set_epoch),
                            _ => NotReplicated,
                        };
                        r.proposal_answered(amount % 4, outcome);
                    }
                    _ => { r.log(amount, amount / 2, 0); r.tick(now) }
                }
                let before = r.master_epoch();
                r.check_invariants();
                // The confirm machine as the actions leave it, one at a time: it never needs
                // fewer acks than the members it counts (all acks required).
                for action in drain(&mut r) {
                    match action {
                        CountAcks { slave, .. } => { counted.insert(slave); }
                        UncountAcks { slave } => { counted.remove(&slave); }
                        AcksRequired { acks } => required = acks,
                        _ => {}
                    }
                    proptest::prop_assert!(required >= counted.len(), "{required} < {counted:?}");
                }
                proptest::prop_assert!(r.master_epoch() >= before);
            }
        }
    }

    proptest::proptest! {
        /// With a controller modelled beside it (proposals delivered, applied or not, answered
        /// or not, in any order; views of its set at any time), the confirm machine, as the
        /// actions leave it, always counts every member the controller has in the set, and
        /// every member of a proposal that may still be applied: whoever the controller
        /// elects holds what was acknowledged. (The model's one assumption: a proposal whose
        /// answer came, refused or lost, is not applied later.)
        #[test]
        fn every_member_the_controller_may_have_is_counted(
            steps in proptest::collection::vec((0u8..6, 2i64..5, 0u64..1000), 1..120),
        ) {
            let mut r = Replicas::new(config(true), 1);
            r.view(view(Some(1), 1, &[1], 1));
            let (mut controller_set, mut controller_epoch) = (set(&[1]), 1);
            let mut in_flight: Vec<(u64, BTreeSet<BrokerId>, i32)> = Vec::new();
            let (mut counted, mut now) = (BTreeSet::new(), 0u64);
            for (kind, id, amount) in steps {
                now += amount;
                match kind {
                    0 => r.slave_connected(now, id, id as u64, false),
                    1 => { r.log(amount, amount / 2, 0); r.slave_acked(now, id, id as u64, amount) }
                    2 => r.slave_gone(id, id as u64),
                    3 if !in_flight.is_empty() => {
                        // The controller takes a proposal; the answer may be lost.
                        let (seq, proposed, epoch) = in_flight.remove(amount as usize % in_flight.len());
                        let applied = epoch == controller_epoch && proposed != controller_set;
                        if applied {
                            controller_set = proposed.clone();
                            controller_epoch += 1;
                        }
                        let outcome = match applied && amount % 3 != 0 {
                            true => Replicated(proposed, controller_epoch),
                            false => NotReplicated,
                        };
                        r.proposal_answered(seq, outcome);
                    }
                    4 => r.view(GroupView {
                        master: Some((1, "m".into())),
                        master_epoch: 1,
                        set: controller_set.clone(),
                        set_epoch: controller_epoch,
                    }),
                    _ => r.tick(now),
                }
                r.check_invariants();
                for action in drain(&mut r) {
                    match action {
                        CountAcks { slave, .. } => { counted.insert(slave); }
                        UncountAcks { slave } => { counted.remove(&slave); }
                        ProposeSet { set, set_epoch, seq, .. } => in_flight.push((seq, set, set_epoch)),
                        _ => {}
                    }
                }
                let mut may_have = controller_set.clone();
                for (_, proposed, epoch) in &in_flight {
                    if *epoch == controller_epoch {
                        may_have.extend(proposed.iter().copied());
                    }
                }
                may_have.remove(&1);
                proptest::prop_assert!(may_have.is_subset(&counted), "{may_have:?} not all in {counted:?}");
            }
        }
    }
}
