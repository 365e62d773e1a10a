//! One controller's raft replica of the metadata: a raft-rs `RawNode` whose log carries
//! [`Event`]s (bincode), applied to [`Replicas`] in commit order.
//!
//! Pure, as raft-rs itself is: the shell ticks it, hands it the messages that arrive, and
//! after each [`ControllerNode::drive`] persists what the [`Output`] says, then sends its
//! messages. Election jitter is the shell's: raft-rs draws its randomized election timeout
//! from a generator the simulator cannot seed, so the node's election timeout has a single
//! value (`min_election_tick + 1 == max_election_tick`) and each shell ticks on its own
//! seeded schedule (shared/reference/SIMULATION.md).

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use super::{Event, Replicas};

/// Ticks without a leader's word before a follower stands for election.
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;

/// What a node must keep across a restart: its hard state (term, vote, commit) and its log.
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

/// What one [`ControllerNode::drive`] asks of the shell, in this order: send `messages` (they
/// need nothing persisted), persist `hard_state` and append `entries` (replacing any persisted
/// entries from the first one's index on), then send `persisted_messages`.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub persisted_messages: Vec<Message>,
    /// The events committed and applied by this drive, in log order.
    pub applied: Vec<Event>,
}

/// A proposal made to a node that is not the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this controller is not the raft leader (the leader is {leader}, 0 if none is known)")]
pub struct NotLeader {
    pub leader: u64,
}

/// One controller: raft state, the log's events applied so far, and the metadata they built.
pub struct ControllerNode {
    raw: RawNode<MemStorage>,
    replicas: Replicas,
}

impl ControllerNode {
    /// Node `id` of the group `peers`, from what it persisted before (nothing, at first).
    pub fn new(
        id: u64,
        peers: &[u64],
        persisted: &Persisted,
    ) -> Result<ControllerNode, raft::Error> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((peers.to_vec(), vec![])));
        {
            let mut store = storage.wl();
            store.append(&persisted.entries)?;
            store.set_hardstate(persisted.hard_state.clone());
        }
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            min_election_tick: ELECTION_TICKS,
            max_election_tick: ELECTION_TICKS + 1,
            pre_vote: true,
            check_quorum: true,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&config, storage, &logger)?;
        Ok(ControllerNode { raw, replicas: Replicas::default() })
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A message from another controller.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        self.raw.step(message)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of, 0 for none.
    pub fn leader(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Appends `event` to the replicated log, on the leader only. It is applied once committed.
    pub fn propose(&mut self, event: &Event) -> Result<(), NotLeader> {
        if !self.is_leader() {
            return Err(NotLeader { leader: self.leader() });
        }
        let data = bincode::serialize(event).expect("an event always encodes");
        self.raw.propose(Vec::new(), data).map_err(|_| NotLeader { leader: self.leader() })
    }

    /// One turn of raft's Ready cycle; see [`Output`] for what the shell does with it.
    pub fn drive(&mut self) -> Output {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return out;
        }
        let mut ready = self.raw.ready();
        out.messages = ready.take_messages();
        self.apply(ready.take_committed_entries(), &mut out.applied);
        if !ready.entries().is_empty() {
            out.entries = ready.entries().clone();
            self.raw
                .mut_store()
                .wl()
                .append(&out.entries)
                .expect("raft hands over entries in order");
        }
        if let Some(hard_state) = ready.hs() {
            out.hard_state = Some(hard_state.clone());
            self.raw.mut_store().wl().set_hardstate(hard_state.clone());
        }
        out.persisted_messages = ready.take_persisted_messages();
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().wl().mut_hard_state().set_commit(commit);
            let hard_state =
                out.hard_state.get_or_insert_with(|| self.raw.store().rl().hard_state().clone());
            hard_state.set_commit(commit);
        }
        out.persisted_messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out.applied);
        self.raw.advance_apply();
        out
    }

    fn apply(&mut self, entries: Vec<Entry>, applied: &mut Vec<Event>) {
        for entry in entries {
            // Empty entries are a new leader's no-op; configuration changes are not used.
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            match bincode::deserialize::<Event>(&entry.data) {
                Ok(event) => {
                    self.replicas.apply(&event);
                    applied.push(event);
                }
                Err(error) => panic!("committed entry {} is not an event: {error}", entry.index),
            }
        }
        self.replicas.check_invariants();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use super::*;

    /// Three controllers exchanging messages in memory, each with its persisted state.
    struct Cluster {
        nodes: BTreeMap<u64, ControllerNode>,
        disks: BTreeMap<u64, Persisted>,
        wire: VecDeque<Message>,
        applied: BTreeMap<u64, Vec<Event>>,
        ticks: u64,
    }

    const PEERS: [u64; 3] = [1, 2, 3];

    impl Cluster {
        fn new() -> Cluster {
            let mut cluster = Cluster {
                nodes: BTreeMap::new(),
                disks: BTreeMap::new(),
                wire: VecDeque::new(),
                applied: BTreeMap::new(),
                ticks: 0,
            };
            for id in PEERS {
                cluster.restart(id);
            }
            cluster
        }

        /// Node `id` starts again from its persisted state (its applied events replayed).
        fn restart(&mut self, id: u64) {
            let disk = self.disks.entry(id).or_default();
            self.nodes.insert(id, ControllerNode::new(id, &PEERS, disk).unwrap());
            self.applied.insert(id, Vec::new());
        }

        fn stop(&mut self, id: u64) {
            self.nodes.remove(&id);
        }

        /// One round: every node ticks (node `n` skips every `n + 2`th tick: the jitter),
        /// drives, persists and sends; messages to stopped nodes are lost.
        fn round(&mut self) {
            self.ticks += 1;
            for (id, node) in &mut self.nodes {
                if !self.ticks.is_multiple_of(id + 2) {
                    node.tick();
                }
            }
            for _ in 0..10 {
                let ids: Vec<u64> = self.nodes.keys().copied().collect();
                for id in ids {
                    let out = self.nodes.get_mut(&id).unwrap().drive();
                    let disk = self.disks.get_mut(&id).unwrap();
                    if let Some(first) = out.entries.first() {
                        disk.entries.retain(|e| e.index < first.index);
                        disk.entries.extend(out.entries.iter().cloned());
                    }
                    if let Some(hard_state) = out.hard_state {
                        disk.hard_state = hard_state;
                    }
                    self.wire.extend(out.messages);
                    self.wire.extend(out.persisted_messages);
                    self.applied.get_mut(&id).unwrap().extend(out.applied);
                }
                while let Some(message) = self.wire.pop_front() {
                    if let Some(node) = self.nodes.get_mut(&message.to) {
                        node.step(message).unwrap();
                    }
                }
            }
        }

        fn leader(&mut self) -> u64 {
            for _ in 0..200 {
                self.round();
                if let Some((id, _)) = self.nodes.iter().find(|(_, n)| n.is_leader()) {
                    return *id;
                }
            }
            panic!("no leader after 200 rounds");
        }
    }

    /// Whether one sequence is a prefix of the other.
    fn agree(a: &[Event], b: &[Event]) -> bool {
        a.iter().zip(b).all(|(x, y)| x == y)
    }

    proptest::proptest! {
        /// Under any run of stops, restarts, lost messages and proposals, every two
        /// controllers applied the same events in the same order (one's a prefix of the
        /// other's), and once all run and talk again they end equal.
        #[test]
        fn controllers_never_disagree_on_the_log(
            ops in proptest::collection::vec((0..6u8, 1..4u64), 0..60),
        ) {
            let mut cluster = Cluster::new();
            let mut next = 1;
            for (op, id) in ops {
                match op {
                    0 => cluster.stop(id),
                    1 if !cluster.nodes.contains_key(&id) => cluster.restart(id),
                    2 => cluster.wire.clear(),
                    3 => {
                        if let Some(leader) = cluster.nodes.values_mut().find(|n| n.is_leader()) {
                            if leader.propose(&applied_id(next)).is_ok() {
                                next += 1;
                            }
                        }
                    }
                    _ => cluster.round(),
                }
                let logs: Vec<&Vec<Event>> = cluster.applied.values().collect();
                for a in &logs {
                    for b in &logs {
                        proptest::prop_assert!(agree(a, b), "{a:?} against {b:?}");
                    }
                }
            }
            for id in PEERS {
                if !cluster.nodes.contains_key(&id) {
                    cluster.restart(id);
                }
            }
            cluster.leader();
            (0..40).for_each(|_| cluster.round());
            let first = &cluster.applied[&1];
            for id in PEERS {
                proptest::prop_assert_eq!(&cluster.applied[&id], first);
                cluster.nodes[&id].replicas().check_invariants();
            }
        }
    }

    fn applied_id(id: i64) -> Event {
        Event::BrokerIdApplied {
            cluster: "c".into(),
            group: "g".into(),
            id,
            address: format!("b{id}:1"),
        }
    }

    #[test]
    fn events_reach_every_controller_in_one_order_across_crashes() {
        let mut cluster = Cluster::new();
        let leader = cluster.leader();
        let follower = PEERS.into_iter().find(|id| *id != leader).unwrap();
        assert_eq!(
            cluster.nodes.get_mut(&follower).unwrap().propose(&applied_id(1)),
            Err(NotLeader { leader })
        );
        cluster.nodes.get_mut(&leader).unwrap().propose(&applied_id(1)).unwrap();
        (0..5).for_each(|_| cluster.round());
        for id in PEERS {
            assert_eq!(cluster.applied[&id], vec![applied_id(1)], "node {id}");
        }

        // The leader stops; the other two elect one of themselves and go on.
        cluster.stop(leader);
        let second = cluster.leader();
        assert_ne!(second, leader);
        cluster.nodes.get_mut(&second).unwrap().propose(&applied_id(2)).unwrap();
        (0..5).for_each(|_| cluster.round());

        // The old leader comes back from its disk: it replays what it had and catches up.
        cluster.restart(leader);
        (0..30).for_each(|_| cluster.round());
        let expected = vec![applied_id(1), applied_id(2)];
        for id in PEERS {
            assert_eq!(cluster.applied[&id].last(), expected.last(), "node {id}");
            assert_eq!(cluster.nodes[&id].replicas(), cluster.nodes[&second].replicas());
        }
        assert_eq!(cluster.applied[&leader], expected, "the restarted node replays its log");
        assert_eq!(cluster.nodes[&leader].replicas().next_broker_id("g"), 3);
    }
}
