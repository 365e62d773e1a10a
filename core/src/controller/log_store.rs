//! A controller's raft log in memory, as raft-rs reads it: the newest snapshot of the
//! metadata (what the entries up to its index built) and the entries after it.
//!
//! raft-rs's own `MemStorage` keeps no snapshot data: it answers a follower that fell behind
//! a compaction with an empty snapshot, and its compaction forgets the term of the last entry
//! it drops. This store keeps both: the snapshot, with the metadata encoded in it, stands for
//! every entry up to its index.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The snapshot and the entries after it, the hard state and the (fixed) voters.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Consecutive, from the snapshot's index + 1.
    entries: Vec<Entry>,
}

impl LogStore {
    /// An empty log of the group `voters`.
    pub fn new(voters: &[u64]) -> LogStore {
        let conf_state = ConfState::from((voters.to_vec(), vec![]));
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().set_conf_state(conf_state.clone());
        LogStore { conf_state, snapshot, ..LogStore::default() }
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// The snapshot standing for the entries up to its index (index 0: none yet).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Appends `entries`, replacing those from the first one's index on (a new leader's log
    /// overrides a follower's unconfirmed tail).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let after = self.snapshot.get_metadata().index;
        assert!(first.index > after, "entry {} is inside the snapshot to {after}", first.index);
        assert!(first.index <= self.last() + 1, "entry {} leaves a gap", first.index);
        self.entries.truncate((first.index - after - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Takes in a snapshot from the leader: it replaces the whole log (raft sends one only
    /// when this log does not hold the entry it ends at), and the commit index moves to it.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.entries.clear();
        self.snapshot = snapshot;
        self.snapshot.mut_metadata().set_conf_state(self.conf_state.clone());
    }

    /// Compacts the log to `index` (applied here, so committed): `data` stands for the
    /// entries up to it, which go.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) {
        let after = self.snapshot.get_metadata().index;
        if index <= after {
            return;
        }
        let term = self.entry_term(index).expect("compacted at an entry the log holds");
        self.entries.drain(..(index - after) as usize);
        let meta = self.snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        self.snapshot.data = data.into();
    }

    /// Entries consecutive from the snapshot's index on, terms never falling.
    pub fn check_invariants(&self) {
        let meta = self.snapshot.get_metadata();
        let mut before = (meta.index, meta.term);
        for entry in &self.entries {
            assert_eq!(entry.index, before.0 + 1, "entries consecutive from the snapshot");
            assert!(entry.term >= before.1, "terms never fall");
            before = (entry.index, entry.term);
        }
        assert!(self.hard_state.commit >= meta.index, "the snapshot is committed");
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.get_metadata().index, |e| e.index)
    }

    fn entry_term(&self, index: u64) -> Option<u64> {
        let after = self.snapshot.get_metadata().index;
        match index.checked_sub(after + 1) {
            Some(at) => self.entries.get(at as usize).map(|e| e.term),
            None => None,
        }
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState { hard_state: self.hard_state.clone(), conf_state: self.conf_state.clone() })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let after = self.snapshot.get_metadata().index;
        if low <= after {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries =
            self.entries[(low - after - 1) as usize..(high - after - 1) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        if index < meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entry_term(index).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.get_metadata().index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.snapshot.get_metadata().index >= request_index {
            true => Ok(self.snapshot.clone()),
            false => Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Entry::default() }
    }

    #[test]
    fn a_compacted_log_answers_from_its_snapshot() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>());
        assert_eq!((store.first_index(), store.last_index()), (Ok(1), Ok(10)));
        store.compact(6, b"state at 6".to_vec());
        assert_eq!((store.first_index(), store.last_index()), (Ok(7), Ok(10)));
        assert_eq!(store.term(6), Ok(2), "the snapshot keeps its last entry's term");
        assert_eq!(store.term(5), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(store.term(11), Err(raft::Error::Store(StorageError::Unavailable)));
        let ctx = GetEntriesContext::empty(false);
        assert!(store.entries(6, 8, None, ctx).is_err());
        let ctx = GetEntriesContext::empty(false);
        let got = store.entries(7, 11, None, ctx).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), [7, 8, 9, 10]);
        let snapshot = Storage::snapshot(&store, 0, 2).unwrap();
        assert_eq!((snapshot.get_metadata().index, &snapshot.data[..]), (6, &b"state at 6"[..]));
        assert_eq!(snapshot.get_metadata().get_conf_state().voters, [1, 2, 3]);
        assert!(Storage::snapshot(&store, 7, 2).is_err(), "a newer one is asked for: not yet");
        // A new leader's entries replace the tail from their index on.
        store.append(&[entry(9, 5)]);
        assert_eq!((store.last_index(), store.term(9)), (Ok(9), Ok(5)));
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_the_log() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&[entry(1, 1), entry(2, 1)]);
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 20;
        snapshot.mut_metadata().term = 4;
        snapshot.data = b"state at 20".to_vec().into();
        store.apply_snapshot(snapshot);
        assert_eq!((store.first_index(), store.last_index()), (Ok(21), Ok(20)));
        assert_eq!((store.hard_state().commit, store.hard_state().term), (20, 4));
        store.append(&[entry(21, 4)]);
        assert_eq!(store.last_index(), Ok(21));
    }
}
