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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persisted {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// Takes in what a drive asked to persist: the new entries replace the log from the first
    /// one's index on, and the hard state replaces the old one.
    pub fn record(&mut self, out: &Output) {
        if let Some(first) = out.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(out.entries.iter().cloned());
        }
        if let Some(hard_state) = &out.hard_state {
            self.hard_state = hard_state.clone();
        }
    }

    /// Whether a drive asked for anything to be persisted.
    pub fn changed_by(out: &Output) -> bool {
        out.hard_state.is_some() || !out.entries.is_empty()
    }
}

impl Output {
    /// Nothing to send, persist or report: the node had nothing ready.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && !Persisted::changed_by(self)
            && self.persisted_messages.is_empty()
            && self.applied.is_empty()
            && self.reads.is_empty()
    }
}

/// The raft state file's first bytes (`docs/failover.md`).
pub const STATE_MAGIC: [u8; 4] = *b"PRFT";
/// Its format version.
pub const STATE_VERSION: u32 = 1;
const STATE_HEADER_BYTES: usize = 4 + 4 + 4 + 8;

/// Why a raft state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    #[error("the raft state file is {0} bytes, shorter than its 20-byte header")]
    Short(usize),
    #[error("the raft state file does not start with PRFT")]
    Magic,
    #[error("the raft state file is of version {0}; this Petrel reads version 1")]
    Version(u32),
    #[error("the raft state file says {said} bytes of state, but holds {held}")]
    Length { said: u64, held: usize },
    #[error("the raft state file's state has CRC {actual}, not the {expected} it records")]
    Crc { expected: u32, actual: u32 },
    #[error("the raft state file's state does not decode: {0}")]
    Decode(String),
    #[error("the raft state file's log is not whole: {0}")]
    Log(String),
}

/// The state as the file holds it (bincode, fixed-width integers).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredState {
    term: u64,
    vote: u64,
    commit: u64,
    entries: Vec<StoredEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEntry {
    kind: i32,
    term: u64,
    index: u64,
    data: Vec<u8>,
    context: Vec<u8>,
}

/// Petrel's bincode settings: fixed-width integers, and no more bytes allocated than `limit`.
fn codec(limit: u64) -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_fixint_encoding().with_limit(limit)
}

impl Persisted {
    /// The raft state file: `PRFT | u32 version | u32 CRC32 of the state | u64 state bytes |
    /// state`, big-endian, the state in bincode.
    pub fn encode(&self) -> Vec<u8> {
        use bincode::Options;
        let state = StoredState {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self.hard_state.commit,
            entries: self
                .entries
                .iter()
                .map(|e| StoredEntry {
                    kind: e.get_entry_type() as i32,
                    term: e.term,
                    index: e.index,
                    data: e.data.to_vec(),
                    context: e.context.to_vec(),
                })
                .collect(),
        };
        framed(&codec(u64::MAX).serialize(&state).expect("a raft state always encodes"))
    }

    /// A raft state file, checked: its header, its CRC, and a log of consecutive indexes and
    /// non-decreasing terms that holds the commit index.
    pub fn decode(bytes: &[u8]) -> Result<Persisted, StateFileError> {
        use bincode::Options;
        if bytes.len() < STATE_HEADER_BYTES {
            return Err(StateFileError::Short(bytes.len()));
        }
        let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if bytes[..4] != STATE_MAGIC {
            return Err(StateFileError::Magic);
        }
        if word(4) != STATE_VERSION {
            return Err(StateFileError::Version(word(4)));
        }
        let said = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let body = &bytes[STATE_HEADER_BYTES..];
        if said != body.len() as u64 {
            return Err(StateFileError::Length { said, held: body.len() });
        }
        let actual = crc32fast::hash(body);
        if actual != word(8) {
            return Err(StateFileError::Crc { expected: word(8), actual });
        }
        let state: StoredState = codec(body.len() as u64)
            .deserialize(body)
            .map_err(|e| StateFileError::Decode(e.to_string()))?;
        let mut entries = Vec::with_capacity(state.entries.len());
        for stored in state.entries {
            let kind = match stored.kind {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                other => return Err(StateFileError::Log(format!("entry kind {other}"))),
            };
            if let Some(last) = entries.last().map(|e: &Entry| (e.index, e.term)) {
                if last.0.checked_add(1) != Some(stored.index) || stored.term < last.1 {
                    let why =
                        format!("entry {} (term {}) after {last:?}", stored.index, stored.term);
                    return Err(StateFileError::Log(why));
                }
            }
            let mut entry = Entry::default();
            entry.set_entry_type(kind);
            entry.term = stored.term;
            entry.index = stored.index;
            entry.data = stored.data.into();
            entry.context = stored.context.into();
            entries.push(entry);
        }
        let last = entries.last().map_or(0, |e| e.index);
        if state.commit > last {
            return Err(StateFileError::Log(format!(
                "commit {} past the last entry {last}",
                state.commit
            )));
        }
        let hard_state = HardState {
            term: state.term,
            vote: state.vote,
            commit: state.commit,
            ..HardState::default()
        };
        Ok(Persisted { hard_state, entries })
    }
}

/// A raft state file holding `body`: its header, then the body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_HEADER_BYTES + body.len());
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&STATE_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The fuzz target `raft_state`'s logic (here so that `cargo test` replays its corpus): the
/// bytes as a whole file, and as the state of a file whose header and CRC fit them (so that
/// the fuzzer reaches past the CRC); either decodes or is refused, never a panic, and what
/// decodes encodes to the same bytes.
pub fn fuzz_raft_state(data: &[u8]) {
    for file in [data, &framed(data)[..]] {
        if let Ok(state) = Persisted::decode(file) {
            assert_eq!(state.encode(), file, "a decoded raft state encodes to the same bytes");
        }
    }
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
    /// Reads a quorum confirmed ([`ControllerNode::read_index`]): the read's tag and the
    /// commit index to apply up to before answering it.
    pub reads: Vec<(u64, u64)>,
}

/// A proposal made to a node that is not the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this controller is not the raft leader (the leader is {leader}, 0 if none is known)")]
pub struct NotLeader {
    pub leader: u64,
}

/// The events of a persisted log up to its commit index, in order: what a controller that
/// persisted it has applied (or will, on its next start). `None` for an entry that does not
/// decode. For checkers comparing the controllers' logs after a run.
pub fn committed_events(persisted: &Persisted) -> Option<Vec<Event>> {
    let commit = persisted.hard_state.commit;
    let committed = persisted.entries.iter().filter(|e| e.index <= commit);
    committed
        .filter(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty())
        .map(|e| bincode::Options::deserialize(codec(e.data.len() as u64), &e.data).ok())
        .collect()
}

/// A confirmed read's tag and index; `None` for a tag this node did not write.
fn read_of(state: raft::ReadState) -> Option<(u64, u64)> {
    let ctx: [u8; 8] = state.request_ctx.as_slice().try_into().ok()?;
    Some((u64::from_be_bytes(ctx), state.index))
}

/// Where a proposal went in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
}

/// What became of a [`Proposal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Applied,
    /// Another leader's entry took its place: the proposal never took effect.
    Replaced,
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

    /// Appends `event` to the replicated log, on the leader only: where it went. A deposed
    /// leader's proposal may be replaced by another leader's entry at the same index, so a
    /// caller asks [`ControllerNode::outcome`] before answering.
    pub fn propose(&mut self, event: &Event) -> Result<Proposal, NotLeader> {
        if !self.is_leader() {
            return Err(NotLeader { leader: self.leader() });
        }
        let data = bincode::Options::serialize(codec(u64::MAX), event).expect("an event encodes");
        self.raw.propose(Vec::new(), data).map_err(|_| NotLeader { leader: self.leader() })?;
        let log = &self.raw.raft.raft_log;
        Ok(Proposal { index: log.last_index(), term: log.last_term() })
    }

    /// The index of the last entry in this node's log.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Whether this node, leading, has committed an entry of its own term: before that raft
    /// drops a read ([`ControllerNode::read_index`]).
    pub fn can_read(&self) -> bool {
        self.is_leader() && self.raw.raft.commit_to_current_term()
    }

    /// Starts a linearizable read tagged `ctx` (raft's ReadIndex): the leader asks a quorum
    /// whether it still leads; once they answer, a drive returns `(ctx, index)` in
    /// [`Output::reads`], and the read may be answered when the log is applied to `index`.
    /// Nothing comes back for a leader that cannot reach a quorum, nor for one that has not
    /// yet committed an entry of its own term: the caller gives up after a while.
    pub fn read_index(&mut self, ctx: u64) {
        self.raw.read_index(ctx.to_be_bytes().to_vec());
    }

    /// What became of a proposal: pending until the log is applied past it, then applied if
    /// the entry at its index is still of its term (one leader per term, one entry per index
    /// per leader: raft's log matching), else replaced.
    pub fn outcome(&self, proposal: Proposal) -> Outcome {
        let log = &self.raw.raft.raft_log;
        if log.applied < proposal.index {
            Outcome::Pending
        } else if log.term(proposal.index) == Ok(proposal.term) {
            Outcome::Applied
        } else {
            Outcome::Replaced
        }
    }

    /// The index of the last log entry applied to [`ControllerNode::replicas`].
    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// One turn of raft's Ready cycle; see [`Output`] for what the shell does with it.
    pub fn drive(&mut self) -> Output {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return out;
        }
        let mut ready = self.raw.ready();
        out.messages = ready.take_messages();
        out.reads = ready.take_read_states().into_iter().filter_map(read_of).collect();
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
            // Committed entries are this group's own proposals: one that does not decode is a
            // damaged log or another version's, and applying past it would fork the metadata.
            match bincode::Options::deserialize::<Event>(
                codec(entry.data.len() as u64),
                &entry.data,
            ) {
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
        /// Reads each node confirmed, not yet taken by the test.
        reads: BTreeMap<u64, Vec<(u64, u64)>>,
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
                reads: BTreeMap::new(),
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
                    self.disks.get_mut(&id).unwrap().record(&out);
                    self.wire.extend(out.messages);
                    self.wire.extend(out.persisted_messages);
                    self.applied.get_mut(&id).unwrap().extend(out.applied);
                    self.reads.entry(id).or_default().extend(out.reads);
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

    #[test]
    fn the_state_file_round_trips_and_refuses_damage() {
        let mut cluster = Cluster::new();
        let leader = cluster.leader();
        cluster.nodes.get_mut(&leader).unwrap().propose(&applied_id(1)).unwrap();
        (0..5).for_each(|_| cluster.round());
        let state = cluster.disks[&leader].clone();
        assert!(state.entries.len() >= 2 && state.hard_state.commit >= 2, "{state:?}");
        assert_eq!(committed_events(&state), Some(vec![applied_id(1)]));
        let bytes = state.encode();
        assert_eq!(&bytes[..4], b"PRFT");
        assert_eq!(Persisted::decode(&bytes), Ok(state.clone()));
        fuzz_raft_state(&bytes);
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(Persisted::decode(&flipped), Err(StateFileError::Crc { .. })));
        assert!(matches!(Persisted::decode(&bytes[..30]), Err(StateFileError::Length { .. })));
        assert_eq!(Persisted::decode(&bytes[..3]), Err(StateFileError::Short(3)));
        let mut version = bytes.clone();
        version[7] = 9;
        assert_eq!(Persisted::decode(&version), Err(StateFileError::Version(9)));
        // A log whose commit index is past its last entry is refused.
        let mut ahead = state;
        ahead.hard_state.commit = 99;
        assert!(matches!(Persisted::decode(&ahead.encode()), Err(StateFileError::Log(_))));
        // A restart from the decoded file applies the same events.
        let restored = Persisted::decode(&bytes).unwrap();
        let mut node = ControllerNode::new(leader, &PEERS, &restored).unwrap();
        node.tick();
        assert_eq!(node.drive().applied, vec![applied_id(1)]);
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

    #[test]
    fn a_deposed_leaders_proposal_is_reported_replaced() {
        let mut cluster = Cluster::new();
        let leader = cluster.leader();
        let mut cut = cluster.nodes.remove(&leader).unwrap();
        // Proposed, but its messages never leave: the others elect a leader of their own.
        let lost = cut.propose(&applied_id(1)).unwrap();
        let _ = cut.drive();
        assert_eq!(cut.outcome(lost), Outcome::Pending);
        let second = cluster.leader();
        let kept = cluster.nodes.get_mut(&second).unwrap().propose(&applied_id(7)).unwrap();
        (0..5).for_each(|_| cluster.round());
        assert_eq!(cluster.nodes[&second].outcome(kept), Outcome::Applied);
        cluster.nodes.insert(leader, cut);
        (0..30).for_each(|_| cluster.round());
        assert_eq!(cluster.nodes[&leader].outcome(lost), Outcome::Replaced);
        assert_eq!(cluster.nodes[&leader].outcome(kept), Outcome::Applied);
    }

    /// Every read, tag and index, that `node` returned over a few rounds.
    fn reads_after(cluster: &mut Cluster, node: u64) -> Vec<(u64, u64)> {
        let mut reads = Vec::new();
        for _ in 0..5 {
            cluster.round();
            reads.extend(cluster.reads.remove(&node).unwrap_or_default());
        }
        reads
    }

    #[test]
    fn a_leader_answers_reads_only_while_a_quorum_confirms_it() {
        let mut cluster = Cluster::new();
        let leader = cluster.leader();
        cluster.nodes.get_mut(&leader).unwrap().propose(&applied_id(1)).unwrap();
        (0..5).for_each(|_| cluster.round());
        let commit = cluster.disks[&leader].hard_state.commit;
        cluster.nodes.get_mut(&leader).unwrap().read_index(7);
        assert_eq!(reads_after(&mut cluster, leader), vec![(7, commit)]);
        // Cut off from both followers, it can no longer confirm a read.
        let mut cut = cluster.nodes.remove(&leader).unwrap();
        cut.read_index(8);
        let out = cut.drive();
        assert!(out.reads.is_empty());
        assert!(!out.messages.is_empty(), "it asks the quorum");
        // The others elect a leader and apply a new event; the old one, back, is told.
        let second = cluster.leader();
        cluster.nodes.get_mut(&second).unwrap().propose(&applied_id(2)).unwrap();
        cluster.nodes.insert(leader, cut);
        (0..30).for_each(|_| cluster.round());
        assert!(!cluster.nodes[&leader].is_leader());
        cluster.nodes.get_mut(&second).unwrap().read_index(9);
        let reads = reads_after(&mut cluster, second);
        assert_eq!(reads.len(), 1);
        assert!(reads[0].1 > commit, "the new leader's read covers the new event");
    }
}
