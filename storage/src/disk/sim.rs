//! `SimDisk`: an in-memory disk that forgets, tears and corrupts as real media may.
//!
//! Each file keeps the bytes a reader sees now and the bytes that are durable, plus the list of
//! writes since its last `sync`. `crash()` rebuilds every file from its durable bytes and, write
//! by write in order, keeps, drops or tears (keeps a 512-byte-sector-aligned prefix of) each
//! unsynced one; each directory keeps or loses the entries changed since its last `sync_dir`.
//! Faults come from a seeded RNG with knobs that default to zero (`SimDiskFaults`). The disk
//! outlives the store on it, so a simulated node can be killed and restarted on the same disk;
//! handles opened before a crash fail from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{check_range, Disk, DiskFile, DiskLock, Space};

/// The unit a torn write is cut at.
pub const SECTOR_BYTES: u64 = 512;

/// How often each fault happens; every knob defaults to zero (no faults). Ratios are
/// probabilities per operation in `[0, 1]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimDiskFaults {
    /// Of the writes still unsynced at a crash, the share that is torn rather than kept whole
    /// or dropped whole (the two are equally likely).
    pub torn_write_ratio: f64,
    /// The share of `sync` calls that fail. A failed sync leaves its writes unsynced.
    pub fsync_fail_ratio: f64,
    /// The share of writes and creates that fail with "no space left on device".
    pub enospc_ratio: f64,
    /// The share of reads that return one flipped bit (the stored bytes stay intact).
    pub read_bitflip_ratio: f64,
}

impl SimDiskFaults {
    /// Whether a write may fail (a failed sync or no space): then nothing written is promised
    /// to become durable by a deadline.
    pub fn fails_writes(&self) -> bool {
        self.fsync_fail_ratio > 0.0 || self.enospc_ratio > 0.0
    }
}

/// What the disk has done, for a simulation's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub crashes: u64,
    pub syncs: u64,
    pub failed_syncs: u64,
    pub writes_kept: u64,
    pub writes_dropped: u64,
    pub writes_torn: u64,
    pub enospc: u64,
    pub bit_flips: u64,
}

enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Zeros { offset: u64 },
}

struct FileData {
    len: u64,
    /// What a reader sees; bytes past the vector's end read as zeros.
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

struct State {
    generation: u64,
    rng: StdRng,
    faults: SimDiskFaults,
    capacity_bytes: u64,
    next_id: u64,
    files: BTreeMap<u64, FileData>,
    entries: BTreeMap<PathBuf, u64>,
    durable_entries: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    stats: SimDiskStats,
    /// Syncs left before every sync fails (`SimDisk::fail_syncs_after`); none: no limit.
    syncs_left: Option<u64>,
}

/// A simulated disk; clones share the same media.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    id: u64,
    generation: u64,
    len: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device (simulated)")
}

/// Whether the sync budget allows one more sync, counting it.
fn take_sync(state: &mut State) -> bool {
    match &mut state.syncs_left {
        None => true,
        Some(0) => false,
        Some(left) => {
            *left -= 1;
            true
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl SimDisk {
    /// An empty disk of `capacity_bytes`, its faults drawn from `seed`.
    pub fn new(seed: u64, capacity_bytes: u64, faults: SimDiskFaults) -> Self {
        let state = State {
            generation: 0,
            rng: StdRng::seed_from_u64(seed),
            faults,
            capacity_bytes,
            next_id: 0,
            files: BTreeMap::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            dirs: BTreeSet::new(),
            stats: SimDiskStats::default(),
            syncs_left: None,
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// Changes the fault knobs from now on.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        lock(&self.state).faults = faults;
    }

    /// Makes the disk this large: a capacity at or under what its files take is a full disk,
    /// on which creating a file fails with "no space left" (removing one frees nothing here).
    pub fn set_capacity(&self, capacity_bytes: u64) {
        lock(&self.state).capacity_bytes = capacity_bytes;
    }

    /// The fault knobs in force.
    pub fn faults(&self) -> SimDiskFaults {
        lock(&self.state).faults
    }

    /// After `syncs` more successful syncs (of files or directories), every sync fails and
    /// leaves its writes unsynced, until `None` lifts the limit: with a `crash` after it, a
    /// power loss at any chosen point of a sequence of durable steps.
    pub fn fail_syncs_after(&self, syncs: Option<u64>) {
        lock(&self.state).syncs_left = syncs;
    }

    /// What the disk has done so far.
    pub fn stats(&self) -> SimDiskStats {
        lock(&self.state).stats
    }

    /// Power loss: every file keeps its durable bytes and some of its unsynced writes, every
    /// directory its synced entries and maybe its unsynced changes. Open handles die.
    pub fn crash(&self) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.generation += 1;
        state.stats.crashes += 1;
        crash_entries(state);
        let live: BTreeSet<u64> = state.entries.values().copied().collect();
        state.files.retain(|id, _| live.contains(id));
        let ids: Vec<u64> = state.files.keys().copied().collect();
        for id in ids {
            let Some(mut file) = state.files.remove(&id) else { continue };
            crash_file(&mut file, &mut state.rng, state.faults, &mut state.stats);
            state.files.insert(id, file);
        }
    }

    /// The bytes a reader of `path` sees now, for tests and checkers.
    pub fn image(&self, path: &Path) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        let file = state.files.get(state.entries.get(path)?)?;
        let mut image = file.current.clone();
        image.resize(file.len as usize, 0);
        Some(image)
    }

    /// Flips one stored bit of `path` for good, as a failing sector would; for tests.
    pub fn corrupt(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        let id = *state.entries.get(path).ok_or_else(|| not_found(path))?;
        let file = state.files.get_mut(&id).ok_or_else(|| not_found(path))?;
        let byte = (bit / 8) as usize;
        for image in [&mut file.current, &mut file.durable] {
            if image.len() <= byte {
                image.resize(byte + 1, 0);
            }
            image[byte] ^= 1 << (bit % 8);
        }
        Ok(())
    }
}

/// Per directory, the unsynced entry changes either all happened or none did.
fn crash_entries(state: &mut State) {
    let dirs: BTreeSet<PathBuf> =
        state.entries.keys().chain(state.durable_entries.keys()).map(|p| parent(p)).collect();
    for dir in dirs {
        let in_dir = |p: &PathBuf| parent(p) == dir;
        let current: Vec<(PathBuf, u64)> =
            state.entries.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        let durable: Vec<(PathBuf, u64)> = state
            .durable_entries
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        if current == durable {
            continue;
        }
        let keep_changes = state.rng.random_bool(0.5);
        let chosen = if keep_changes { current } else { durable };
        state.entries.retain(|p, _| !in_dir(p));
        state.durable_entries.retain(|p, _| !in_dir(p));
        for (path, id) in chosen {
            state.entries.insert(path.clone(), id);
            state.durable_entries.insert(path, id);
        }
    }
}

fn crash_file(
    file: &mut FileData,
    rng: &mut StdRng,
    faults: SimDiskFaults,
    stats: &mut SimDiskStats,
) {
    let mut image = std::mem::take(&mut file.durable);
    for pending in file.pending.drain(..) {
        let (offset, data): (u64, Vec<u8>) = match pending {
            Pending::Write { offset, data } => (offset, data),
            Pending::Zeros { offset } => (offset, vec![0; (file.len - offset) as usize]),
        };
        let end = offset + data.len() as u64;
        let kept_end = if rng.random_bool(faults.torn_write_ratio.clamp(0.0, 1.0)) {
            stats.writes_torn += 1;
            let first_boundary = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
            let boundaries: Vec<u64> =
                (first_boundary..end).step_by(SECTOR_BYTES as usize).collect();
            if boundaries.is_empty() {
                offset
            } else {
                boundaries[rng.random_range(0..boundaries.len())]
            }
        } else if rng.random_bool(0.5) {
            stats.writes_kept += 1;
            end
        } else {
            stats.writes_dropped += 1;
            offset
        };
        let kept = (kept_end - offset) as usize;
        write_image(&mut image, offset, &data[..kept]);
    }
    file.current = image.clone();
    file.durable = image;
}

fn write_image(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut state = lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("the disk crashed since this file was opened"));
        }
        f(&mut state, self.id)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        check_range("read", offset, len, self.len)?;
        self.with(|state, id| {
            let file = state.files.get(&id).ok_or_else(|| io::Error::other("file removed"))?;
            let mut out = vec![0u8; len];
            let start = (offset as usize).min(file.current.len());
            let end = (offset as usize + len).min(file.current.len());
            out[..end - start].copy_from_slice(&file.current[start..end]);
            let chance = state.faults.read_bitflip_ratio.clamp(0.0, 1.0);
            if len > 0 && state.rng.random_bool(chance) {
                state.stats.bit_flips += 1;
                let bit = state.rng.random_range(0..len * 8);
                out[bit / 8] ^= 1 << (bit % 8);
            }
            Ok(out)
        })
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.read(offset, buf.len())?;
        buf.copy_from_slice(&data);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range("write", offset, data.len(), self.len)?;
        self.with(|state, id| {
            let chance = state.faults.enospc_ratio.clamp(0.0, 1.0);
            if state.rng.random_bool(chance) {
                state.stats.enospc += 1;
                return Err(no_space());
            }
            let file = state.files.get_mut(&id).ok_or_else(|| io::Error::other("file removed"))?;
            write_image(&mut file.current, offset, data);
            file.pending.push(Pending::Write { offset, data: data.to_vec() });
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with(|state, id| {
            state.stats.syncs += 1;
            let chance = state.faults.fsync_fail_ratio.clamp(0.0, 1.0);
            if !take_sync(state) || state.rng.random_bool(chance) {
                state.stats.failed_syncs += 1;
                return Err(io::Error::other("fsync failed (simulated I/O error)"));
            }
            let file = state.files.get_mut(&id).ok_or_else(|| io::Error::other("file removed"))?;
            // What a reader sees is the durable image with the pending changes on it, in
            // order: applying them makes the two equal without copying the whole file.
            for pending in file.pending.drain(..) {
                match pending {
                    Pending::Write { offset, data } => {
                        write_image(&mut file.durable, offset, &data)
                    }
                    Pending::Zeros { offset } => file.durable.truncate(offset as usize),
                }
            }
            debug_assert!(file.durable.len() == file.current.len(), "durable and current differ");
            Ok(())
        })
    }

    fn slice(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read(offset, len).map(Bytes::from)
    }

    fn zero_from(&self, offset: u64) -> io::Result<()> {
        if offset >= self.len {
            return Ok(());
        }
        self.with(|state, id| {
            let file = state.files.get_mut(&id).ok_or_else(|| io::Error::other("file removed"))?;
            file.current.truncate(offset as usize);
            file.pending.push(Pending::Zeros { offset });
            Ok(())
        })
    }
}

impl SimDisk {
    fn handle(&self, state: &State, id: u64) -> Arc<dyn DiskFile> {
        let len = state.files.get(&id).map_or(0, |f| f.len);
        Arc::new(SimFile { state: self.state.clone(), id, generation: state.generation, len })
    }

    fn used_bytes(state: &State) -> u64 {
        state.files.values().map(|f| f.len).sum()
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let state = lock(&self.state);
        let id = *state.entries.get(path).ok_or_else(|| not_found(path))?;
        Ok(self.handle(&state, id))
    }

    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = lock(&self.state);
        if state.entries.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
        }
        if !state.dirs.contains(&parent(path)) {
            return Err(not_found(&parent(path)));
        }
        let full = Self::used_bytes(&state) + len > state.capacity_bytes;
        let chance = state.faults.enospc_ratio.clamp(0.0, 1.0);
        if full || state.rng.random_bool(chance) {
            state.stats.enospc += 1;
            return Err(no_space());
        }
        let id = state.next_id;
        state.next_id += 1;
        let data = FileData { len, current: Vec::new(), durable: Vec::new(), pending: Vec::new() };
        state.files.insert(id, data);
        state.entries.insert(path.to_path_buf(), id);
        Ok(self.handle(&state, id))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let files = state.entries.keys().filter(|p| p.parent() == Some(dir));
        let dirs = state.dirs.iter().filter(|p| p.parent() == Some(dir));
        let mut names: Vec<String> =
            files.chain(dirs).filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Directories are durable as soon as they exist: the store creates them once, before any
    /// file in them, and syncs the files' directory entries, which is what the model tests.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.entries.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let busy = state.entries.keys().chain(state.dirs.iter()).any(|p| p.parent() == Some(dir));
        if busy {
            return Err(io::Error::other(format!("{} is not empty", dir.display())));
        }
        state.dirs.remove(dir);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let id = state.entries.remove(from).ok_or_else(|| not_found(from))?;
        state.entries.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.stats.syncs += 1;
        if !take_sync(state) {
            state.stats.failed_syncs += 1;
            return Err(io::Error::other("directory sync failed (simulated I/O error)"));
        }
        state.durable_entries.retain(|p, _| p.parent() != Some(dir));
        for (path, id) in state.entries.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            state.durable_entries.insert(path.clone(), *id);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.entries.contains_key(path) || state.dirs.contains(path)
    }

    /// One simulated node owns each disk, so the lock only marks the file as present.
    fn lock(&self, path: &Path) -> io::Result<DiskLock> {
        if !self.exists(path) {
            self.create(path, 0)?;
        }
        Ok(DiskLock::new(()))
    }

    fn space(&self, _path: &Path) -> io::Result<Space> {
        let state = lock(&self.state);
        let used = Self::used_bytes(&state);
        Ok(Space {
            total_bytes: state.capacity_bytes,
            free_bytes: state.capacity_bytes.saturating_sub(used),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(faults: SimDiskFaults) -> SimDisk {
        let disk = SimDisk::new(7, 1 << 30, faults);
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk
    }

    #[test]
    fn synced_writes_survive_and_handles_die() {
        let disk = disk(SimDiskFaults::default());
        let file = disk.create(Path::new("/d/f"), 4096).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        file.write_at(0, b"durable").unwrap();
        file.sync().unwrap();
        disk.crash();
        assert!(file.write_at(0, b"x").is_err(), "a handle from before the crash still writes");
        let file = disk.open(Path::new("/d/f")).unwrap();
        let mut buf = [0u8; 7];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"durable");
    }

    #[test]
    fn unsynced_writes_are_kept_dropped_or_torn() {
        let faults = SimDiskFaults { torn_write_ratio: 0.5, ..SimDiskFaults::default() };
        let disk = disk(faults);
        let path = Path::new("/d/f");
        disk.create(path, 1 << 20).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        for round in 0..200u64 {
            let file = disk.open(path).unwrap();
            file.write_at(round * 2048 + 100, &[0xAB; 2000]).unwrap();
            disk.crash();
            let image = disk.image(path).unwrap();
            let written = &image[(round * 2048 + 100) as usize..(round * 2048 + 2100) as usize];
            let kept = written.iter().take_while(|b| **b == 0xAB).count();
            assert!(written[kept..].iter().all(|b| *b == 0), "only a prefix survives");
            let end = round * 2048 + 100 + kept as u64;
            assert!(
                kept == 0 || kept == 2000 || end.is_multiple_of(SECTOR_BYTES),
                "tears on sectors"
            );
        }
        let stats = disk.stats();
        assert!(stats.writes_kept > 0 && stats.writes_dropped > 0 && stats.writes_torn > 0);
    }

    #[test]
    fn unsynced_directory_changes_may_vanish() {
        let disk = disk(SimDiskFaults::default());
        let mut vanished = 0;
        for round in 0..64 {
            let path = PathBuf::from(format!("/d/{round}"));
            let file = disk.create(&path, 16).unwrap();
            file.sync().unwrap();
            disk.crash();
            vanished += usize::from(!disk.exists(&path));
        }
        assert!(vanished > 0 && vanished < 64, "{vanished} of 64 unsynced creations vanished");
    }

    #[test]
    fn faults_fire_when_asked() {
        let faults = SimDiskFaults {
            fsync_fail_ratio: 1.0,
            read_bitflip_ratio: 1.0,
            ..SimDiskFaults::default()
        };
        let disk = disk(faults);
        let file = disk.create(Path::new("/d/f"), 64).unwrap();
        assert!(file.sync().is_err());
        let mut buf = [0u8; 64];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(buf.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        disk.set_faults(SimDiskFaults { enospc_ratio: 1.0, ..SimDiskFaults::default() });
        let error = file.write_at(0, b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }
}
