//! One controller's raft replica of the metadata: a raft-rs `RawNode` whose log carries
//! [`Event`]s (bincode), applied to [`Replicas`] in commit order.
//!
//! Pure, as raft-rs itself is: the shell ticks it, hands it the messages that arrive, and
//! after each [`ControllerNode::drive`] persists what the [`Output`] says, then sends its
//! messages. Election jitter is the shell's: raft-rs draws its randomized election timeout
//! from a generator the simulator cannot seed, so the node's election timeout has a single
//! value (`min_election_tick + 1 == max_election_tick`) and each shell ticks on its own
//! seeded schedule (shared/reference/SIMULATION.md).

use raft::eraftpb::{Entry, EntryType, HardState, Message, Snapshot};
use raft::{Config, RawNode, StateRole};

use super::log_store::LogStore;
use super::{Event, Replicas};

/// Ticks without a leader's word before a follower stands for election.
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;

/// Applied entries between two snapshots of the metadata, by default: the log a controller
/// keeps (and rewrites whole each turn) stays this short.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 1_000;

/// What a node must keep across a restart: its hard state (term, vote, commit), the newest
/// snapshot of the metadata (index 0: none), and the log entries after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persisted {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// Takes in what a drive asked to persist, in its order: a snapshot from the leader
    /// replaces the whole log; the new entries replace the log from the first one's index on;
    /// the hard state replaces the old one; a compaction drops the entries its snapshot covers.
    pub fn record(&mut self, out: &Output) {
        if let Some(snapshot) = &out.received_snapshot {
            self.entries.clear();
            self.snapshot = snapshot.clone();
        }
        if let Some(first) = out.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(out.entries.iter().cloned());
        }
        if let Some(hard_state) = &out.hard_state {
            self.hard_state = hard_state.clone();
        }
        if let Some(snapshot) = &out.compacted {
            let index = snapshot.get_metadata().index;
            self.entries.retain(|e| e.index > index);
            self.snapshot = snapshot.clone();
        }
    }

    /// Whether a drive asked for anything to be persisted.
    pub fn changed_by(out: &Output) -> bool {
        out.hard_state.is_some()
            || !out.entries.is_empty()
            || out.received_snapshot.is_some()
            || out.compacted.is_some()
    }

    /// The metadata this state stands for once its committed entries are applied, and the
    /// index it is at: the snapshot's, then each committed event. `None` for a snapshot or an
    /// entry that does not decode. For checkers comparing the controllers' disks after a run.
    pub fn replayed(&self) -> Option<(u64, Replicas)> {
        let mut replicas = decode_snapshot(&self.snapshot)?;
        for event in committed_events(self)? {
            replicas.apply(&event);
        }
        Some((self.hard_state.commit, replicas))
    }
}

/// The metadata a snapshot holds (none: the empty metadata of index 0).
fn decode_snapshot(snapshot: &Snapshot) -> Option<Replicas> {
    if snapshot.get_metadata().index == 0 {
        return Some(Replicas::default());
    }
    bincode::Options::deserialize(codec(snapshot.data.len() as u64), &snapshot.data).ok()
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
/// Its format version: 2 adds the snapshot; version 1 (no snapshot) is still read.
pub const STATE_VERSION: u32 = 2;
const STATE_HEADER_BYTES: usize = 4 + 4 + 4 + 8;

/// Why a raft state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    #[error("the raft state file is {0} bytes, shorter than its 20-byte header")]
    Short(usize),
    #[error("the raft state file does not start with PRFT")]
    Magic,
    #[error("the raft state file is of version {0}; this Petrel reads versions 1 and 2")]
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
    /// The snapshot's index and term (0 and 0: none) and the metadata in it (bincode).
    snapshot_index: u64,
    snapshot_term: u64,
    snapshot_data: Vec<u8>,
    entries: Vec<StoredEntry>,
}

/// Version 1 of the state: no snapshot.
#[derive(serde::Deserialize)]
struct StoredStateV1 {
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
        let meta = self.snapshot.get_metadata();
        let state = StoredState {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self.hard_state.commit,
            snapshot_index: meta.index,
            snapshot_term: meta.term,
            snapshot_data: self.snapshot.data.to_vec(),
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

    /// A raft state file, checked: its header, its CRC, a snapshot whose metadata decodes,
    /// and a log of consecutive indexes from the snapshot's on and non-decreasing terms that
    /// holds the commit index.
    pub fn decode(bytes: &[u8]) -> Result<Persisted, StateFileError> {
        use bincode::Options;
        if bytes.len() < STATE_HEADER_BYTES {
            return Err(StateFileError::Short(bytes.len()));
        }
        let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if bytes[..4] != STATE_MAGIC {
            return Err(StateFileError::Magic);
        }
        let version = word(4);
        if version != STATE_VERSION && version != 1 {
            return Err(StateFileError::Version(version));
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
        let decoded = match version {
            1 => codec(body.len() as u64).deserialize(body).map(|v1: StoredStateV1| StoredState {
                term: v1.term,
                vote: v1.vote,
                commit: v1.commit,
                snapshot_index: 0,
                snapshot_term: 0,
                snapshot_data: Vec::new(),
                entries: v1.entries,
            }),
            _ => codec(body.len() as u64).deserialize(body),
        };
        let state: StoredState = decoded.map_err(|e| StateFileError::Decode(e.to_string()))?;
        let mut snapshot = Snapshot::default();
        if state.snapshot_index > 0 {
            snapshot.mut_metadata().index = state.snapshot_index;
            snapshot.mut_metadata().term = state.snapshot_term;
            snapshot.data = state.snapshot_data.into();
        } else if state.snapshot_term != 0 || !state.snapshot_data.is_empty() {
            return Err(StateFileError::Decode("a snapshot at index 0".into()));
        }
        if decode_snapshot(&snapshot).is_none() {
            let why = format!("the snapshot to {} does not decode", state.snapshot_index);
            return Err(StateFileError::Decode(why));
        }
        let after = (state.snapshot_index, state.snapshot_term);
        let entries = decode_entries(state.entries, after)?;
        let last = entries.last().map_or(state.snapshot_index, |e| e.index);
        if state.commit > last || state.commit < state.snapshot_index {
            return Err(StateFileError::Log(format!(
                "commit {} outside the log {}-{last}",
                state.commit, state.snapshot_index
            )));
        }
        let hard_state = HardState {
            term: state.term,
            vote: state.vote,
            commit: state.commit,
            ..HardState::default()
        };
        Ok(Persisted { hard_state, snapshot, entries })
    }
}

/// The stored entries as raft's, checked: consecutive indexes from the snapshot's `after`
/// (index, term) on, terms never falling, kinds raft has.
fn decode_entries(
    stored: Vec<StoredEntry>,
    after: (u64, u64),
) -> Result<Vec<Entry>, StateFileError> {
    let mut entries = Vec::with_capacity(stored.len());
    let mut last = after;
    for stored in stored {
        let kind = match stored.kind {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            other => return Err(StateFileError::Log(format!("entry kind {other}"))),
        };
        if last.0.checked_add(1) != Some(stored.index) || stored.term < last.1 {
            let why = format!("entry {} (term {}) after {last:?}", stored.index, stored.term);
            return Err(StateFileError::Log(why));
        }
        last = (stored.index, stored.term);
        let mut entry = Entry::default();
        entry.set_entry_type(kind);
        entry.term = stored.term;
        entry.index = stored.index;
        entry.data = stored.data.into();
        entry.context = stored.context.into();
        entries.push(entry);
    }
    Ok(entries)
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
/// bytes as a whole file, and as the state of a file of either version whose header and CRC
/// fit them (so that the fuzzer reaches past the CRC); either decodes or is refused, never a
/// panic; what decodes encodes to the same bytes (a version 1 file: to a version 2 file that
/// decodes the same).
pub fn fuzz_raft_state(data: &[u8]) {
    let mut v1 = framed(data);
    v1[4..8].copy_from_slice(&1u32.to_be_bytes());
    for file in [data, &framed(data)[..], &v1[..]] {
        if let Ok(state) = Persisted::decode(file) {
            let encoded = state.encode();
            match file[4..8] == 1u32.to_be_bytes() {
                true => assert_eq!(Persisted::decode(&encoded), Ok(state)),
                false => {
                    assert_eq!(encoded, file, "a decoded raft state encodes to the same bytes")
                }
            }
        }
    }
}

/// What one [`ControllerNode::drive`] asks of the shell, in this order: send `messages` (they
/// need nothing persisted), persist what changed ([`Persisted::record`]: a snapshot from the
/// leader, `entries`, `hard_state`, a compaction), then send `persisted_messages`.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    /// A snapshot of the metadata from the leader, which replaces the whole log.
    pub received_snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    /// New entries, replacing any persisted from the first one's index on.
    pub entries: Vec<Entry>,
    /// This node's snapshot of its metadata: the entries up to its index go.
    pub compacted: Option<Snapshot>,
    pub persisted_messages: Vec<Message>,
    /// The events committed and applied by this drive, in log order, with their indexes.
    pub applied: Vec<(u64, Event)>,
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

/// The events of a persisted log after its snapshot up to its commit index, in order: what a
/// controller that persisted it has applied on top of the snapshot (or will, on its next
/// start). `None` for an entry that does not decode.
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
    /// The log was compacted past it before anyone asked: applied or replaced, nobody can
    /// tell any more.
    Unknown,
}

/// One controller: raft state, the log's events applied so far, and the metadata they built.
pub struct ControllerNode {
    raw: RawNode<LogStore>,
    replicas: Replicas,
    /// Applied entries between two snapshots.
    snapshot_entries: u64,
}

impl ControllerNode {
    /// Node `id` of the group `peers`, from what it persisted before (nothing, at first): its
    /// snapshot's metadata, and the entries after it to apply again.
    pub fn new(
        id: u64,
        peers: &[u64],
        persisted: &Persisted,
    ) -> Result<ControllerNode, raft::Error> {
        let replicas = decode_snapshot(&persisted.snapshot).ok_or_else(|| {
            raft::Error::ConfigInvalid("the persisted snapshot holds no metadata".into())
        })?;
        let mut storage = LogStore::new(peers);
        if persisted.snapshot.get_metadata().index > 0 {
            storage.apply_snapshot(persisted.snapshot.clone());
        }
        storage.append(&persisted.entries);
        storage.set_hard_state(persisted.hard_state.clone());
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
        Ok(ControllerNode { raw, replicas, snapshot_entries: SNAPSHOT_ENTRIES_DEFAULT })
    }

    /// Snapshots the metadata, and drops the entries it covers, every `entries` applied
    /// entries (at least 1).
    pub fn snapshot_every(mut self, entries: u64) -> ControllerNode {
        self.snapshot_entries = entries.max(1);
        self
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
        } else if proposal.index < self.raw.store().latest_snapshot().get_metadata().index {
            Outcome::Unknown
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
        if !ready.snapshot().is_empty() {
            // Raft sends one when this log lacks entries the leader compacted away.
            let snapshot = ready.snapshot().clone();
            self.replicas = decode_snapshot(&snapshot).expect("a leader's snapshot holds metadata");
            self.raw.mut_store().apply_snapshot(snapshot.clone());
            out.received_snapshot = Some(snapshot);
        }
        out.reads = ready.take_read_states().into_iter().filter_map(read_of).collect();
        self.apply(ready.take_committed_entries(), &mut out.applied);
        if !ready.entries().is_empty() {
            out.entries = ready.entries().clone();
            self.raw.mut_store().append(&out.entries);
        }
        if let Some(hard_state) = ready.hs() {
            out.hard_state = Some(hard_state.clone());
            self.raw.mut_store().set_hard_state(hard_state.clone());
        }
        out.persisted_messages = ready.take_persisted_messages();
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
            let hard_state =
                out.hard_state.get_or_insert_with(|| self.raw.store().hard_state().clone());
            hard_state.set_commit(commit);
        }
        out.persisted_messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out.applied);
        self.raw.advance_apply();
        out.compacted = self.compact();
        out
    }

    /// Once `snapshot_entries` entries were applied since the last snapshot: a snapshot of the
    /// metadata at the applied index, the entries it covers dropped.
    fn compact(&mut self) -> Option<Snapshot> {
        let applied = self.applied_index();
        let snapshot_index = self.raw.store().latest_snapshot().get_metadata().index;
        if applied < snapshot_index + self.snapshot_entries {
            return None;
        }
        let data = bincode::Options::serialize(codec(u64::MAX), &self.replicas)
            .expect("the metadata encodes");
        self.raw.mut_store().compact(applied, data);
        Some(self.raw.store().latest_snapshot().clone())
    }

    fn apply(&mut self, entries: Vec<Entry>, applied: &mut Vec<(u64, Event)>) {
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
                    applied.push((entry.index, event));
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
        /// The events each node applied since it last started, by index.
        applied: BTreeMap<u64, BTreeMap<u64, Event>>,
        /// Reads each node confirmed, not yet taken by the test.
        reads: BTreeMap<u64, Vec<(u64, u64)>>,
        ticks: u64,
        snapshot_every: u64,
    }

    const PEERS: [u64; 3] = [1, 2, 3];

    impl Cluster {
        fn new() -> Cluster {
            Cluster::snapshotting_every(SNAPSHOT_ENTRIES_DEFAULT)
        }

        fn snapshotting_every(entries: u64) -> Cluster {
            let mut cluster = Cluster {
                nodes: BTreeMap::new(),
                disks: BTreeMap::new(),
                wire: VecDeque::new(),
                applied: BTreeMap::new(),
                reads: BTreeMap::new(),
                ticks: 0,
                snapshot_every: entries,
            };
            for id in PEERS {
                cluster.restart(id);
            }
            cluster
        }

        /// Node `id` starts again from its persisted state (its snapshot restored, the events
        /// after it replayed). The state goes through its file's bytes.
        fn restart(&mut self, id: u64) {
            let disk = self.disks.entry(id).or_default();
            *disk = Persisted::decode(&disk.encode()).unwrap();
            let node = ControllerNode::new(id, &PEERS, disk).unwrap();
            self.nodes.insert(id, node.snapshot_every(self.snapshot_every));
            self.applied.insert(id, BTreeMap::new());
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
                    self.nodes[&id].raw.store().check_invariants();
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

    /// Whether two nodes applied the same event wherever both applied one.
    fn agree(a: &BTreeMap<u64, Event>, b: &BTreeMap<u64, Event>) -> bool {
        a.iter().all(|(index, x)| b.get(index).is_none_or(|y| x == y))
    }

    proptest::proptest! {
        /// Under any run of stops, restarts, lost messages and proposals, with snapshots
        /// every `every` entries (so that followers fall behind compactions), every two
        /// controllers applied the same event at each index, and once all run and talk again
        /// they end with the same metadata and the same commit index.
        #[test]
        fn controllers_never_disagree_on_the_log(
            ops in proptest::collection::vec((0..6u8, 1..4u64), 0..60),
            every in proptest::prop_oneof![proptest::strategy::Just(1000u64), 1..4u64],
        ) {
            let mut cluster = Cluster::snapshotting_every(every);
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
                let logs: Vec<&BTreeMap<u64, Event>> = cluster.applied.values().collect();
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
            let first = cluster.nodes[&1].replicas().clone();
            let commit = cluster.disks[&1].hard_state.commit;
            for id in PEERS {
                proptest::prop_assert_eq!(cluster.nodes[&id].replicas(), &first);
                proptest::prop_assert_eq!(cluster.disks[&id].hard_state.commit, commit);
                let replayed = cluster.disks[&id].replayed();
                proptest::prop_assert_eq!(replayed, Some((commit, first.clone())));
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
        let replayed = state.replayed().unwrap();
        assert_eq!(replayed, (state.hard_state.commit, cluster.nodes[&leader].replicas().clone()));
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
        let mut ahead = state.clone();
        ahead.hard_state.commit = 99;
        assert!(matches!(Persisted::decode(&ahead.encode()), Err(StateFileError::Log(_))));
        // A restart from the decoded file applies the same events.
        let restored = Persisted::decode(&bytes).unwrap();
        let mut node = ControllerNode::new(leader, &PEERS, &restored).unwrap();
        node.tick();
        let applied: Vec<Event> = node.drive().applied.into_iter().map(|(_, e)| e).collect();
        assert_eq!(applied, vec![applied_id(1)]);
        // A version 1 file (no snapshot) is still read.
        let mut v1 = state.clone();
        v1.snapshot = Snapshot::default();
        let v2 = v1.encode();
        let body = &v2[STATE_HEADER_BYTES + 24..];
        let mut old = Vec::new();
        old.extend_from_slice(&v2[STATE_HEADER_BYTES..STATE_HEADER_BYTES + 24]);
        old.extend_from_slice(&body[24..]);
        let mut file = framed(&old);
        file[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(Persisted::decode(&file), Ok(v1));
    }

    /// With a snapshot every three entries: a restart starts from the snapshot and replays
    /// only what follows; a follower that missed entries the others compacted away gets a
    /// snapshot and ends with the same metadata; a snapshot that does not decode is refused.
    #[test]
    fn snapshots_bound_the_log_and_bring_a_lagging_follower_up() {
        let mut cluster = Cluster::snapshotting_every(3);
        let leader = cluster.leader();
        let lagging = PEERS.into_iter().find(|id| *id != leader).unwrap();
        cluster.stop(lagging);
        for id in 1..=10 {
            cluster.nodes.get_mut(&leader).unwrap().propose(&applied_id(id)).unwrap();
            (0..3).for_each(|_| cluster.round());
        }
        let disk = &cluster.disks[&leader];
        let snapshot_index = disk.snapshot.get_metadata().index;
        assert!(snapshot_index >= 9 && disk.entries.len() < 4, "{disk:?}");
        cluster.restart(leader);
        (0..40).for_each(|_| cluster.round());
        let applied = &cluster.applied[&leader];
        assert!(applied.keys().all(|&index| index > snapshot_index), "{applied:?}");
        cluster.restart(lagging);
        (0..40).for_each(|_| cluster.round());
        let leader = cluster.leader();
        for id in PEERS {
            assert_eq!(cluster.nodes[&id].replicas(), cluster.nodes[&leader].replicas());
        }
        assert_eq!(cluster.nodes[&lagging].replicas().next_broker_id("g"), 11);
        assert!(cluster.applied[&lagging].len() < 10, "the snapshot stood for most of them");
        let mut damaged = cluster.disks[&leader].clone();
        damaged.snapshot.data = b"not metadata".to_vec().into();
        let refused = Persisted::decode(&damaged.encode());
        assert!(matches!(refused, Err(StateFileError::Decode(_))), "{refused:?}");
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
            let applied: Vec<&Event> = cluster.applied[&id].values().collect();
            assert_eq!(applied, [&applied_id(1)], "node {id}");
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
        let expected = [&applied_id(1), &applied_id(2)];
        for id in PEERS {
            assert_eq!(cluster.applied[&id].values().last(), expected.last().copied(), "node {id}");
            assert_eq!(cluster.nodes[&id].replicas(), cluster.nodes[&second].replicas());
        }
        let replayed: Vec<&Event> = cluster.applied[&leader].values().collect();
        assert_eq!(replayed, expected, "the restarted node replays its log");
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
