//! The controller's metadata as a pure state machine (RocketMQ 5's `ReplicasInfoManager` and
//! `DefaultElectPolicy`; `docs/failover.md`): per broker group, its registered brokers, its
//! master and master epoch, its sync-state set and that set's epoch.
//!
//! Two halves, as RocketMQ's controller splits them:
//! - decisions, on the raft leader only: a request, the [`Replicas`] and the leader's view of
//!   which brokers are alive ([`Liveness`]) in; an [`Event`] to replicate and the answer out,
//!   or a [`Refusal`] with RocketMQ's code;
//! - [`Replicas::apply`], on every controller, for each event in the replicated log's order:
//!   deterministic, the only way the state changes.
//!
//! [`node`] replicates the events with raft; `bin/src/controller/` is the shell (sockets,
//! request handlers, the raft state on disk, the scans on a clock).

pub mod body;
pub mod log_store;
pub mod node;

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::Refusal;
use crate::Millis;

/// A broker's id in its group: 0 is never used by controller mode, new brokers get 1, 2, ...
pub type BrokerId = i64;

/// The first id a group hands out (`MixAll.FIRST_BROKER_CONTROLLER_ID`).
pub const FIRST_BROKER_ID: BrokerId = 1;

/// RocketMQ's controller answer codes (`ResponseCode`, 5.1.1 and later).
pub mod code {
    pub const FENCED_MASTER_EPOCH: i32 = 2000;
    pub const FENCED_SYNC_STATE_SET_EPOCH: i32 = 2001;
    pub const INVALID_MASTER: i32 = 2002;
    pub const INVALID_REPLICAS: i32 = 2003;
    pub const MASTER_NOT_AVAILABLE: i32 = 2004;
    pub const INVALID_REQUEST: i32 = 2005;
    pub const BROKER_NOT_ALIVE: i32 = 2006;
    pub const NOT_LEADER: i32 = 2007;
    pub const BROKER_METADATA_NOT_EXIST: i32 = 2008;
    pub const INVALID_CLEAN_BROKER_METADATA: i32 = 2009;
    pub const BROKER_NEED_TO_BE_REGISTERED: i32 = 2010;
    pub const MASTER_STILL_EXIST: i32 = 2011;
    pub const ELECT_MASTER_FAILED: i32 = 2012;
    pub const ALTER_SYNC_STATE_SET_FAILED: i32 = 2013;
    pub const BROKER_ID_INVALID: i32 = 2014;
}

/// One broker group's replicated metadata (`BrokerReplicaInfo` and `SyncStateInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub cluster: String,
    /// Registered brokers: id → address.
    pub brokers: BTreeMap<BrokerId, String>,
    pub master: Option<BrokerId>,
    /// Raised by every election, whether it found a master or not.
    pub master_epoch: i32,
    pub sync_state_set: BTreeSet<BrokerId>,
    /// Raised by every change of the set, elections included.
    pub sync_state_set_epoch: i32,
}

/// What the controllers replicate: each changes [`Replicas`] the same way everywhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A broker took an id (`ApplyBrokerIdEvent`).
    BrokerIdApplied { cluster: String, group: String, id: BrokerId, address: String },
    /// An election's outcome: the new master, or none (`ElectMasterEvent`).
    MasterElected { group: String, master: Option<BrokerId> },
    /// The master changed its sync-state set (`AlterSyncStateSetEvent`).
    SyncStateSetAltered { group: String, set: BTreeSet<BrokerId> },
    /// A registered broker came back at another address (`UpdateBrokerAddressEvent`).
    BrokerAddressUpdated { group: String, id: BrokerId, address: String },
    /// An operator removed brokers from the group, or the whole group when `ids` is `None`
    /// (`CleanBrokerDataEvent`).
    BrokerDataCleaned { group: String, ids: Option<BTreeSet<BrokerId>> },
}

/// What a broker learns of its group (the answers to REGISTER_BROKER and GET_REPLICA_INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The master's id and address.
    pub master: Option<(BrokerId, String)>,
    pub master_epoch: i32,
    pub sync_state_set: BTreeSet<BrokerId>,
    pub sync_state_set_epoch: i32,
}

impl ReplicaInfo {
    fn of(group: &Group) -> ReplicaInfo {
        let master =
            group.master.and_then(|m| group.brokers.get(&m).map(|address| (m, address.clone())));
        ReplicaInfo {
            master,
            master_epoch: group.master_epoch,
            sync_state_set: group.sync_state_set.clone(),
            sync_state_set_epoch: group.sync_state_set_epoch,
        }
    }
}

/// What the leader knows of a broker from its heartbeats (not replicated: each leader learns
/// it afresh, as RocketMQ's `BrokerLiveInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLive {
    pub epoch: i32,
    pub max_offset: i64,
    pub election_priority: i32,
    pub last_heartbeat: Millis,
    pub timeout: Millis,
}

impl BrokerLive {
    /// Whether the heartbeat's timeout has not passed at `now`.
    fn alive_at(&self, now: Millis) -> bool {
        now < self.last_heartbeat.saturating_add(self.timeout)
    }
}

/// The leader's view of which brokers are alive, by group and id.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    groups: BTreeMap<String, BTreeMap<BrokerId, BrokerLive>>,
}

impl Liveness {
    /// A BROKER_HEARTBEAT.
    pub fn heartbeat(&mut self, group: &str, id: BrokerId, live: BrokerLive) {
        if let Some(brokers) = self.groups.get_mut(group) {
            brokers.insert(id, live);
        } else {
            self.groups.insert(group.to_owned(), BTreeMap::from([(id, live)]));
        }
    }

    /// Forgets the brokers whose heartbeats stopped before `now`: the ones forgotten
    /// (`scanNotActiveBroker`).
    pub fn expire(&mut self, now: Millis) -> Vec<(String, BrokerId)> {
        let mut dead = Vec::new();
        for (group, brokers) in &mut self.groups {
            brokers.retain(|id, live| {
                let alive = live.alive_at(now);
                if !alive {
                    dead.push((group.clone(), *id));
                }
                alive
            });
        }
        self.groups.retain(|_, brokers| !brokers.is_empty());
        dead
    }

    /// The broker's last heartbeat, while it has not timed out at `now`.
    pub fn alive(&self, group: &str, id: BrokerId, now: Millis) -> Option<BrokerLive> {
        let live = self.groups.get(group)?.get(&id)?;
        live.alive_at(now).then_some(*live)
    }
}

/// Who asked for an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A broker of the group that found no master (`ofBrokerTrigger`).
    Broker(BrokerId),
    /// An operator naming the broker to elect (`ofAdminTrigger`, `designateElect`).
    Admin(BrokerId),
    /// The controller, having seen the master stop heartbeating (`ofControllerTrigger`).
    Controller,
}

/// What an election answered: the master and its epoch, the set (the refusal codes aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    pub master: BrokerId,
    pub master_epoch: i32,
    pub sync_state_set: BTreeSet<BrokerId>,
    pub sync_state_set_epoch: i32,
    /// The old master stayed (RocketMQ answers CONTROLLER_MASTER_STILL_EXIST, taken as success).
    pub unchanged: bool,
}

/// Every group's metadata, by broker name: what the controllers' snapshots hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replicas {
    groups: BTreeMap<String, Group>,
}

impl Replicas {
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Applies one replicated event. Events are decided against the state they apply to, so
    /// every one applies; one that no longer fits (replayed twice, say) changes nothing.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::BrokerIdApplied { cluster, group, id, address } => {
                let entry = self.groups.entry(group.clone()).or_default();
                entry.cluster.clone_from(cluster);
                entry.brokers.insert(*id, address.clone());
            }
            Event::MasterElected { group, master } => {
                let Some(entry) = self.groups.get_mut(group) else { return };
                entry.master = *master;
                entry.master_epoch += 1;
                if let Some(master) = master {
                    entry.sync_state_set = BTreeSet::from([*master]);
                    entry.sync_state_set_epoch += 1;
                }
            }
            Event::SyncStateSetAltered { group, set } => {
                let Some(entry) = self.groups.get_mut(group) else { return };
                entry.sync_state_set.clone_from(set);
                entry.sync_state_set_epoch += 1;
            }
            Event::BrokerAddressUpdated { group, id, address } => {
                let Some(entry) = self.groups.get_mut(group) else { return };
                if let Some(held) = entry.brokers.get_mut(id) {
                    held.clone_from(address);
                }
            }
            Event::BrokerDataCleaned { group, ids: None } => {
                self.groups.remove(group);
            }
            Event::BrokerDataCleaned { group, ids: Some(ids) } => {
                let Some(entry) = self.groups.get_mut(group) else { return };
                for id in ids {
                    entry.brokers.remove(id);
                    entry.sync_state_set.remove(id);
                }
                // RocketMQ keeps a cleaned master's id; Petrel drops it, so that the master
                // is always a registered member of its set, and the next election says who.
                if entry.master.is_some_and(|m| ids.contains(&m)) {
                    entry.master = None;
                }
                if entry.brokers.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }

    /// CONTROLLER_REGISTER_BROKER, once a broker holds its id: what it must know of its group
    /// (the master only while alive), and the address change to replicate, if any.
    pub fn register(
        &self,
        group: &str,
        id: BrokerId,
        address: &str,
        liveness: &Liveness,
        now: Millis,
    ) -> Result<(Option<Event>, ReplicaInfo), Refusal> {
        let Some(entry) = self.group(group) else {
            let why = format!("broker group {group} has no registered broker; apply for an id");
            return Err(Refusal::new(code::BROKER_NEED_TO_BE_REGISTERED, why));
        };
        let Some(held) = entry.brokers.get(&id) else {
            let why = format!("broker id {id} is not registered in {group}; apply for an id");
            return Err(Refusal::new(code::BROKER_NEED_TO_BE_REGISTERED, why));
        };
        let moved = (held != address).then(|| Event::BrokerAddressUpdated {
            group: group.to_owned(),
            id,
            address: address.to_owned(),
        });
        let mut info = ReplicaInfo::of(entry);
        if entry.master.is_none_or(|m| liveness.alive(group, m, now).is_none()) {
            info.master = None;
        }
        Ok((moved, info))
    }

    /// CONTROLLER_GET_REPLICA_INFO: the group as replicated, alive or not.
    pub fn replica_info(&self, group: &str) -> Result<ReplicaInfo, Refusal> {
        self.group(group).map(ReplicaInfo::of).ok_or_else(|| {
            let why = format!("the controller has no metadata of broker group {group}");
            Refusal::new(code::BROKER_METADATA_NOT_EXIST, why)
        })
    }

    /// Groups whose master is missing or has stopped heartbeating while another broker of
    /// theirs lives: the leader elects anew in each (`scanInactiveMasterAndTriggerReelect`).
    pub fn needing_election(&self, liveness: &Liveness, now: Millis) -> Vec<String> {
        let orphaned = |(name, group): (&String, &Group)| {
            let gone = group.master.is_none_or(|m| liveness.alive(name, m, now).is_none());
            let someone = group.brokers.keys().any(|id| liveness.alive(name, *id, now).is_some());
            (gone && someone).then(|| name.clone())
        };
        self.groups.iter().filter_map(orphaned).collect()
    }

    /// CLEAN_BROKER_DATA: forget `ids` of the group, or the whole group without ids. Unless
    /// `clean_living`, refused while a named broker lives, or, naming none, while the group
    /// has a master.
    pub fn clean(
        &self,
        group: &str,
        ids: Option<BTreeSet<BrokerId>>,
        clean_living: bool,
        liveness: &Liveness,
        now: Millis,
    ) -> Result<Event, Refusal> {
        let refuse = |why: String| Err(Refusal::new(code::INVALID_CLEAN_BROKER_METADATA, why));
        let Some(entry) = self.group(group) else {
            return refuse(format!("broker group {group} does not exist; nothing to clean"));
        };
        if !clean_living {
            match &ids {
                None if entry.master.is_some() => {
                    return refuse(format!("broker group {group} still has a master; name the ids to clean or clean living brokers"));
                }
                Some(ids) => {
                    if let Some(id) =
                        ids.iter().find(|id| liveness.alive(group, **id, now).is_some())
                    {
                        return refuse(format!("broker {id} of {group} is still alive"));
                    }
                }
                None => {}
            }
        }
        Ok(Event::BrokerDataCleaned { group: group.to_owned(), ids })
    }

    /// CONTROLLER_GET_NEXT_BROKER_ID: one more than the group's highest id.
    pub fn next_broker_id(&self, group: &str) -> BrokerId {
        let last = self.group(group).and_then(|g| g.brokers.keys().next_back().copied());
        last.map_or(FIRST_BROKER_ID, |id| id + 1)
    }

    /// CONTROLLER_APPLY_BROKER_ID: the next id, or the id this address already holds
    /// (a broker that restarted). `None`: nothing to replicate.
    pub fn apply_broker_id(
        &self,
        cluster: &str,
        group: &str,
        id: BrokerId,
        address: &str,
    ) -> Result<Option<Event>, Refusal> {
        let held = self.group(group).and_then(|g| g.brokers.get(&id));
        match held {
            Some(same) if same == address => Ok(None),
            None if id == self.next_broker_id(group) => Ok(Some(Event::BrokerIdApplied {
                cluster: cluster.to_owned(),
                group: group.to_owned(),
                id,
                address: address.to_owned(),
            })),
            _ => {
                let next = self.next_broker_id(group);
                let why = format!(
                    "broker id {id} of {group} is taken or out of turn (the next is {next}); \
                     ask CONTROLLER_GET_NEXT_BROKER_ID again"
                );
                Err(Refusal::new(code::BROKER_ID_INVALID, why))
            }
        }
    }

    /// CONTROLLER_ELECT_MASTER, decided on the leader at `now`: the event to replicate, if
    /// any, and the answer. An election the controller started that finds no one to replace a
    /// master still replicates its outcome, a group with no master (RocketMQ's
    /// `ElectMasterEvent(false)`); for a group already without one it replicates nothing, where
    /// RocketMQ raises the epoch again on every scan.
    pub fn elect(
        &self,
        group: &str,
        trigger: Trigger,
        liveness: &Liveness,
        now: Millis,
        unclean: bool,
    ) -> (Option<Event>, Result<Elected, Refusal>) {
        let Some(entry) = self.group(group) else {
            let why = format!("broker group {group} has no registered broker");
            return (None, Err(Refusal::new(code::BROKER_NEED_TO_BE_REGISTERED, why)));
        };
        let alive = |id: BrokerId| liveness.alive(group, id, now);
        let preferred = match trigger {
            Trigger::Admin(id) => Some(id),
            Trigger::Broker(id) if !entry.brokers.contains_key(&id) => {
                let why = format!("broker {id} is not registered in {group}");
                return (None, Err(Refusal::new(code::BROKER_NEED_TO_BE_REGISTERED, why)));
            }
            Trigger::Broker(_) | Trigger::Controller => None,
        };
        // The old master stays while it is alive, unless an operator named another.
        let keep =
            entry.master.filter(|m| alive(*m).is_some() && preferred.is_none_or(|p| p == *m));
        let all: BTreeSet<BrokerId> = entry.brokers.keys().copied().collect();
        // A group's first election has no set to choose from: any registered broker may win
        // (RocketMQ's `isFirstTimeForElect`); later ones go outside the set only when unclean.
        let anyone = unclean || entry.master_epoch == 0;
        let chosen = keep
            .or_else(|| choose(&entry.sync_state_set, preferred, &alive))
            .or_else(|| anyone.then(|| choose(&all, preferred, &alive)).flatten());
        let Some(master) = chosen else {
            let why = format!(
                "no alive broker of {group} can be master (sync-state set {:?}{})",
                entry.sync_state_set,
                if anyone {
                    ", nor any other replica"
                } else {
                    "; enableElectUncleanMaster is off"
                }
            );
            return match trigger {
                Trigger::Controller => {
                    let event = entry
                        .master
                        .map(|_| Event::MasterElected { group: group.to_owned(), master: None });
                    (event, Err(Refusal::new(code::MASTER_NOT_AVAILABLE, why)))
                }
                _ => (None, Err(Refusal::new(code::ELECT_MASTER_FAILED, why))),
            };
        };
        if Some(master) == entry.master {
            return (None, Ok(elected(entry, true)));
        }
        let event = Event::MasterElected { group: group.to_owned(), master: Some(master) };
        let mut after = Replicas { groups: BTreeMap::from([(group.to_owned(), entry.clone())]) };
        after.apply(&event);
        (Some(event), Ok(elected(&after.groups[group], false)))
    }

    /// CONTROLLER_ALTER_SYNC_STATE_SET from the group's master, decided on the leader.
    pub fn alter_sync_state_set(
        &self,
        group: &str,
        request: AlterRequest,
        liveness: &Liveness,
        now: Millis,
    ) -> Result<(Event, i32), Refusal> {
        let refuse = |code, why: String| Err(Refusal::new(code, why));
        let Some(entry) = self.group(group) else {
            return refuse(code::ALTER_SYNC_STATE_SET_FAILED, format!("no broker group {group}"));
        };
        if request.set == entry.sync_state_set {
            let why = "the new sync-state set is the current one".to_owned();
            return refuse(code::ALTER_SYNC_STATE_SET_FAILED, why);
        }
        if entry.master != Some(request.master) {
            let why = format!("broker {} is not the master of {group}", request.master);
            return refuse(code::INVALID_MASTER, why);
        }
        if request.master_epoch != entry.master_epoch {
            let why = format!(
                "master epoch {} is not the current {}",
                request.master_epoch, entry.master_epoch
            );
            return refuse(code::FENCED_MASTER_EPOCH, why);
        }
        if request.set_epoch != entry.sync_state_set_epoch {
            let why = format!(
                "sync-state set epoch {} is not the current {}",
                request.set_epoch, entry.sync_state_set_epoch
            );
            return refuse(code::FENCED_SYNC_STATE_SET_EPOCH, why);
        }
        if let Some(id) = request.set.iter().find(|id| !entry.brokers.contains_key(id)) {
            return refuse(code::INVALID_REPLICAS, format!("broker {id} is not registered"));
        }
        if let Some(id) = request.set.iter().find(|id| liveness.alive(group, **id, now).is_none()) {
            return refuse(code::BROKER_NOT_ALIVE, format!("broker {id} is not alive"));
        }
        if !request.set.contains(&request.master) {
            let why = "the new sync-state set lacks the master".to_owned();
            return refuse(code::ALTER_SYNC_STATE_SET_FAILED, why);
        }
        let event = Event::SyncStateSetAltered { group: group.to_owned(), set: request.set };
        Ok((event, entry.sync_state_set_epoch + 1))
    }

    /// Every group: the master in its set, the set and the master among its brokers.
    pub fn check_invariants(&self) {
        for (name, group) in &self.groups {
            if let Some(master) = group.master {
                assert!(
                    group.brokers.contains_key(&master),
                    "{name}: master {master} unregistered"
                );
                assert!(group.sync_state_set.contains(&master), "{name}: master outside its set");
            }
            assert!(
                group.sync_state_set.iter().all(|id| group.brokers.contains_key(id)),
                "{name}: the sync-state set names unregistered brokers"
            );
            assert!(group.master_epoch >= 0 && group.sync_state_set_epoch >= 0);
        }
    }
}

/// A master's request to change its group's sync-state set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterRequest {
    pub master: BrokerId,
    pub master_epoch: i32,
    /// The set's epoch the master last saw.
    pub set_epoch: i32,
    pub set: BTreeSet<BrokerId>,
}

fn elected(group: &Group, unchanged: bool) -> Elected {
    Elected {
        master: group.master.expect("an elected group has a master"),
        master_epoch: group.master_epoch,
        sync_state_set: group.sync_state_set.clone(),
        sync_state_set_epoch: group.sync_state_set_epoch,
        unchanged,
    }
}

/// `DefaultElectPolicy.tryElect`: the preferred broker if it is a live candidate, else the
/// live candidate with the highest epoch, then the highest max offset, then the lowest
/// election priority number (then the lowest id, so that the choice is total).
fn choose(
    candidates: &BTreeSet<BrokerId>,
    preferred: Option<BrokerId>,
    alive: &dyn Fn(BrokerId) -> Option<BrokerLive>,
) -> Option<BrokerId> {
    if let Some(p) = preferred {
        return (candidates.contains(&p) && alive(p).is_some()).then_some(p);
    }
    candidates
        .iter()
        .filter_map(|&id| alive(id).map(|live| (id, live)))
        .min_by_key(|(id, live)| {
            (
                std::cmp::Reverse(live.epoch),
                std::cmp::Reverse(live.max_offset),
                live.election_priority,
                *id,
            )
        })
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const G: &str = "broker-a";

    fn live(epoch: i32, max_offset: i64, now: Millis) -> BrokerLive {
        BrokerLive { epoch, max_offset, election_priority: 0, last_heartbeat: now, timeout: 10 }
    }

    /// A group with brokers 1..=n registered.
    fn registered(n: BrokerId) -> Replicas {
        let mut r = Replicas::default();
        for id in 1..=n {
            let event = r.apply_broker_id("c", G, id, &format!("b{id}:1")).unwrap().unwrap();
            r.apply(&event);
        }
        r.check_invariants();
        r
    }

    fn elect(
        r: &mut Replicas,
        trigger: Trigger,
        l: &Liveness,
        unclean: bool,
    ) -> Result<Elected, i32> {
        let (event, answer) = r.elect(G, trigger, l, 0, unclean);
        if let Some(event) = event {
            r.apply(&event);
        }
        r.check_invariants();
        answer.map_err(|refusal| refusal.code)
    }

    #[test]
    fn brokers_take_ids_in_turn() {
        let mut r = Replicas::default();
        assert_eq!(r.next_broker_id(G), 1);
        let event = r.apply_broker_id("c", G, 1, "a:1").unwrap().unwrap();
        r.apply(&event);
        assert_eq!(r.next_broker_id(G), 2);
        assert_eq!(r.apply_broker_id("c", G, 1, "a:1"), Ok(None), "a restart keeps its id");
        let taken = r.apply_broker_id("c", G, 1, "b:1").unwrap_err();
        assert_eq!(taken.code, code::BROKER_ID_INVALID);
        assert_eq!(r.apply_broker_id("c", G, 3, "b:1").unwrap_err().code, code::BROKER_ID_INVALID);
        assert_eq!(r.group(G).unwrap().cluster, "c");
    }

    #[test]
    fn the_first_election_takes_the_most_advanced_live_broker() {
        let mut r = registered(3);
        let mut l = Liveness::default();
        l.heartbeat(G, 1, live(0, 100, 0));
        l.heartbeat(G, 2, live(0, 300, 0));
        l.heartbeat(G, 3, live(0, 200, 0));
        // The set is empty before the first election, which may take any registered broker.
        let won = elect(&mut r, Trigger::Broker(1), &l, false).unwrap();
        assert_eq!((won.master, won.master_epoch, won.sync_state_set_epoch), (2, 1, 1));
        assert_eq!(won.sync_state_set, BTreeSet::from([2]));
        // Asked again while it lives: it stays, nothing replicated.
        let again = elect(&mut r, Trigger::Broker(3), &l, true).unwrap();
        assert!(again.unchanged && again.master == 2 && again.master_epoch == 1);
    }

    #[test]
    fn a_dead_master_is_replaced_from_its_sync_state_set_only() {
        let mut r = registered(3);
        let mut l = Liveness::default();
        (1..=3).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        elect(&mut r, Trigger::Admin(1), &l, true).unwrap();
        let event = r.alter_sync_state_set(G, alter(&r, 1, &[1, 2]), &l, 0).unwrap().0;
        r.apply(&event);
        // Broker 1 stops heartbeating; 3 is further ahead but outside the set.
        let mut l = Liveness::default();
        l.heartbeat(G, 2, live(1, 10, 0));
        l.heartbeat(G, 3, live(1, 99, 0));
        let won = elect(&mut r, Trigger::Controller, &l, false).unwrap();
        assert_eq!((won.master, won.master_epoch), (2, 2));
        // Then 2 dies too: the controller records a group with no master.
        let mut l = Liveness::default();
        l.heartbeat(G, 3, live(1, 99, 0));
        assert_eq!(elect(&mut r, Trigger::Controller, &l, false), Err(code::MASTER_NOT_AVAILABLE));
        let group = r.group(G).unwrap();
        assert_eq!((group.master, group.master_epoch), (None, 3));
        assert_eq!(group.sync_state_set, BTreeSet::from([2]), "the set stays for 2's return");
        // Unclean: 3 may take over.
        assert_eq!(elect(&mut r, Trigger::Controller, &l, true).unwrap().master, 3);
    }

    #[test]
    fn an_operator_names_a_live_member_of_the_set() {
        let mut r = registered(2);
        let mut l = Liveness::default();
        (1..=2).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        elect(&mut r, Trigger::Admin(1), &l, true).unwrap();
        assert_eq!(elect(&mut r, Trigger::Admin(2), &l, false), Err(code::ELECT_MASTER_FAILED));
        let event = r.alter_sync_state_set(G, alter(&r, 1, &[1, 2]), &l, 0).unwrap().0;
        r.apply(&event);
        assert_eq!(elect(&mut r, Trigger::Admin(2), &l, false).unwrap().master, 2);
        assert_eq!(
            elect(&mut r, Trigger::Broker(9), &l, false),
            Err(code::BROKER_NEED_TO_BE_REGISTERED)
        );
    }

    fn alter(r: &Replicas, master: BrokerId, set: &[BrokerId]) -> AlterRequest {
        let group = r.group(G).unwrap();
        AlterRequest {
            master,
            master_epoch: group.master_epoch,
            set_epoch: group.sync_state_set_epoch,
            set: set.iter().copied().collect(),
        }
    }

    #[test]
    fn only_the_current_master_alters_its_set_and_only_to_live_brokers() {
        let mut r = registered(3);
        let mut l = Liveness::default();
        (1..=2).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        elect(&mut r, Trigger::Admin(1), &l, true).unwrap();
        let code_of = |r: &Replicas, req| r.alter_sync_state_set(G, req, &l, 0).unwrap_err().code;
        let stale = AlterRequest { master_epoch: 0, ..alter(&r, 1, &[1, 2]) };
        assert_eq!(code_of(&r, stale), code::FENCED_MASTER_EPOCH);
        let stale = AlterRequest { set_epoch: 0, ..alter(&r, 1, &[1, 2]) };
        assert_eq!(code_of(&r, stale), code::FENCED_SYNC_STATE_SET_EPOCH);
        assert_eq!(code_of(&r, alter(&r, 2, &[1, 2])), code::INVALID_MASTER);
        assert_eq!(code_of(&r, alter(&r, 1, &[1])), code::ALTER_SYNC_STATE_SET_FAILED);
        assert_eq!(code_of(&r, alter(&r, 1, &[1, 7])), code::INVALID_REPLICAS);
        assert_eq!(code_of(&r, alter(&r, 1, &[1, 3])), code::BROKER_NOT_ALIVE);
        assert_eq!(code_of(&r, alter(&r, 1, &[2])), code::ALTER_SYNC_STATE_SET_FAILED);
        let (event, epoch) = r.alter_sync_state_set(G, alter(&r, 1, &[1, 2]), &l, 0).unwrap();
        r.apply(&event);
        assert_eq!((epoch, r.group(G).unwrap().sync_state_set_epoch), (2, 2));
        r.check_invariants();
    }

    #[test]
    fn a_brokers_epochs_are_reported_as_rocketmq_writes_them() {
        let mut epochs = crate::ha::epoch::EpochCache::default();
        epochs.append(1, 0).unwrap();
        epochs.append(3, 4096).unwrap();
        let body = body::EpochEntryCache::of("DefaultCluster", "broker-a", 2, &epochs, 5000);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            concat!(
                r#"{"brokerId":2,"brokerName":"broker-a","clusterName":"DefaultCluster","#,
                r#""epochList":[{"endOffset":4096,"epoch":1,"startOffset":0},"#,
                r#"{"endOffset":9223372036854775807,"epoch":3,"startOffset":4096}],"#,
                r#""maxOffset":5000}"#
            )
        );
    }

    #[test]
    fn bodies_are_written_as_fastjson_writes_them() {
        let mut r = registered(2);
        let mut l = Liveness::default();
        l.heartbeat(G, 1, live(0, 0, 0));
        elect(&mut r, Trigger::Admin(1), &l, false).unwrap();
        let group = r.group(G).unwrap();
        let set = body::SyncStateSet {
            sync_state_set: group.sync_state_set.clone(),
            sync_state_set_epoch: group.sync_state_set_epoch,
        };
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"syncStateSet":[1],"syncStateSetEpoch":1}"#
        );
        let elected = body::ElectMasterResponseBody {
            broker_member_group: Some(body::BrokerMemberGroup::of(G, group)),
            sync_state_set: group.sync_state_set.clone(),
        };
        assert_eq!(
            serde_json::to_string(&elected).unwrap(),
            r#"{"brokerMemberGroup":{"brokerAddrs":{"1":"b1:1","2":"b2:1"},"brokerName":"broker-a","cluster":"c"},"syncStateSet":[1]}"#
        );
        let info = body::ReplicasInfo::of(G, group, &l, 0);
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            concat!(
                r#"{"inSyncReplicas":[{"alive":true,"brokerAddress":"b1:1","brokerId":1,"brokerName":"broker-a"}],"#,
                r#""masterAddress":"b1:1","masterBrokerId":1,"masterEpoch":1,"#,
                r#""notInSyncReplicas":[{"alive":false,"brokerAddress":"b2:1","brokerId":2,"brokerName":"broker-a"}],"#,
                r#""syncStateSetEpoch":1}"#
            )
        );
    }

    #[test]
    fn a_heartbeat_keeps_a_broker_alive_for_its_timeout() {
        let mut l = Liveness::default();
        l.heartbeat(G, 1, BrokerLive { last_heartbeat: 100, timeout: 50, ..live(0, 0, 0) });
        assert!(l.alive(G, 1, 149).is_some());
        assert!(l.alive(G, 1, 150).is_none());
        assert!(l.alive(G, 2, 100).is_none());
    }

    #[test]
    fn registering_tells_the_broker_its_live_master_and_records_a_new_address() {
        let mut r = registered(2);
        let mut l = Liveness::default();
        assert_eq!(
            r.register(G, 3, "b3:1", &l, 0).unwrap_err().code,
            code::BROKER_NEED_TO_BE_REGISTERED
        );
        assert_eq!(
            r.register("other", 1, "b1:1", &l, 0).unwrap_err().code,
            code::BROKER_NEED_TO_BE_REGISTERED
        );
        let (moved, info) = r.register(G, 2, "b2:1", &l, 0).unwrap();
        assert_eq!((moved, info.master, info.master_epoch), (None, None, 0));
        (1..=2).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        elect(&mut r, Trigger::Admin(1), &l, false).unwrap();
        let (moved, info) = r.register(G, 2, "b2:2", &l, 0).unwrap();
        assert_eq!(info.master, Some((1, "b1:1".to_owned())));
        assert_eq!((info.master_epoch, info.sync_state_set_epoch), (1, 1));
        r.apply(&moved.unwrap());
        assert_eq!(r.group(G).unwrap().brokers[&2], "b2:2");
        // A master that stopped heartbeating is not named to a registering broker, though
        // GET_REPLICA_INFO still reports what is replicated.
        let (_, info) = r.register(G, 2, "b2:2", &l, 10).unwrap();
        assert_eq!(info.master, None);
        assert_eq!(r.replica_info(G).unwrap().master, Some((1, "b1:1".to_owned())));
        assert_eq!(r.replica_info("other").unwrap_err().code, code::BROKER_METADATA_NOT_EXIST);
        r.check_invariants();
    }

    #[test]
    fn the_scan_finds_groups_whose_master_is_gone_and_forgets_silent_brokers() {
        let mut r = registered(2);
        let mut l = Liveness::default();
        assert!(r.needing_election(&l, 0).is_empty(), "no broker alive to elect");
        (1..=2).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        assert_eq!(r.needing_election(&l, 0), vec![G.to_owned()], "never elected");
        elect(&mut r, Trigger::Controller, &l, false).unwrap();
        assert!(r.needing_election(&l, 5).is_empty());
        l.heartbeat(G, 2, live(0, 0, 8));
        assert_eq!(r.needing_election(&l, 10), vec![G.to_owned()]);
        assert_eq!(l.expire(10), vec![(G.to_owned(), 1)]);
        assert!(l.expire(10).is_empty());
        let won = elect(&mut r, Trigger::Controller, &l, false);
        assert_eq!(won, Err(code::MASTER_NOT_AVAILABLE), "2 was never in the set");
        let epoch = r.group(G).unwrap().master_epoch;
        assert_eq!(elect(&mut r, Trigger::Controller, &l, false), Err(code::MASTER_NOT_AVAILABLE));
        assert_eq!(r.group(G).unwrap().master_epoch, epoch, "no master to lose: no new epoch");
    }

    #[test]
    fn cleaning_forgets_dead_brokers_and_refuses_living_ones() {
        let mut r = registered(3);
        let mut l = Liveness::default();
        (1..=3).for_each(|id| l.heartbeat(G, id, live(0, 0, 0)));
        elect(&mut r, Trigger::Admin(1), &l, false).unwrap();
        let event = r.alter_sync_state_set(G, alter(&r, 1, &[1, 2]), &l, 0).unwrap().0;
        r.apply(&event);
        let code_of = |r: &Replicas, ids: Option<&[BrokerId]>, living: bool, now: Millis| {
            let ids = ids.map(|ids| ids.iter().copied().collect());
            r.clean(G, ids, living, &l, now).unwrap_err().code
        };
        assert_eq!(code_of(&r, None, false, 0), code::INVALID_CLEAN_BROKER_METADATA);
        assert_eq!(code_of(&r, Some(&[2]), false, 0), code::INVALID_CLEAN_BROKER_METADATA);
        assert_eq!(
            r.clean("nope", None, true, &l, 0).unwrap_err().code,
            code::INVALID_CLEAN_BROKER_METADATA
        );
        // Once silent, 2 can go; the master can go only as a living broker.
        r.apply(&r.clean(G, Some(BTreeSet::from([2])), false, &l, 10).unwrap());
        let group = r.group(G).unwrap();
        assert_eq!(group.sync_state_set, BTreeSet::from([1]));
        assert!(!group.brokers.contains_key(&2));
        r.apply(&r.clean(G, Some(BTreeSet::from([1])), true, &l, 0).unwrap());
        assert_eq!(r.group(G).unwrap().master, None);
        r.check_invariants();
        r.apply(&r.clean(G, None, false, &l, 0).unwrap());
        assert_eq!(r.group(G), None);
    }

    proptest! {
        /// Any run of registrations, heartbeats, elections and set changes keeps the
        /// invariants; a master epoch only rises; a clean election's new master was in the
        /// set before it.
        #[test]
        fn any_run_keeps_the_controllers_promises(
            ops in proptest::collection::vec((0..7u8, 1..5i64, 0..4u8, any::<bool>()), 0..60),
        ) {
            let mut r = Replicas::default();
            let mut l = Liveness::default();
            let mut now = 0;
            for (op, id, seed, unclean) in ops {
                now += 7;
                match op {
                    0 => {
                        if let Ok(Some(event)) = r.apply_broker_id("c", G, id, &format!("b{id}")) {
                            r.apply(&event);
                        }
                    }
                    1 => l.heartbeat(G, id, live(i32::from(seed), i64::from(seed) * 10, now)),
                    2 | 3 => {
                        let before = r.group(G).cloned();
                        let trigger = match seed % 3 {
                            0 => Trigger::Controller,
                            1 => Trigger::Broker(id),
                            _ => Trigger::Admin(id),
                        };
                        let (event, answer) = r.elect(G, trigger, &l, now, unclean);
                        if let Some(event) = &event {
                            r.apply(event);
                        }
                        if let (Some(before), Some(after)) = (before, r.group(G)) {
                            prop_assert!(after.master_epoch >= before.master_epoch);
                            prop_assert_eq!(event.is_some(), after.master_epoch > before.master_epoch);
                            let first = before.master_epoch == 0;
                            if let (Ok(won), false, false) = (&answer, unclean, first) {
                                let kept = before.master == Some(won.master);
                                prop_assert!(kept || before.sync_state_set.contains(&won.master));
                            }
                        }
                    }
                    5 => {
                        let ids = (seed > 0).then(|| BTreeSet::from([id]));
                        if let Ok(event) = r.clean(G, ids, unclean, &l, now) {
                            r.apply(&event);
                        }
                    }
                    6 => {
                        let address = format!("b{id}:{seed}");
                        if let Ok((Some(event), _)) = r.register(G, id, &address, &l, now) {
                            r.apply(&event);
                            prop_assert_eq!(&r.group(G).unwrap().brokers[&id], &address);
                        }
                    }
                    _ => {
                        let Some(group) = r.group(G) else { continue };
                        let Some(master) = group.master else { continue };
                        let set: BTreeSet<BrokerId> = (1..=id).chain([master]).collect();
                        let request = AlterRequest {
                            master,
                            master_epoch: group.master_epoch,
                            set_epoch: group.sync_state_set_epoch,
                            set,
                        };
                        if let Ok((event, _)) = r.alter_sync_state_set(G, request, &l, now) {
                            r.apply(&event);
                        }
                    }
                }
                r.check_invariants();
            }
        }
    }
}
