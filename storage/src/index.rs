//! The index: `index/{yyyyMMddHHmmssSSS}` files that map `topic#key` to commit-log offsets, in
//! RocketMQ's layout (`docs/storage-format.md` §6): a 40-byte header, `slots` slots of the
//! latest entry number per hash, then 20-byte entries chained through `prevIndex`.
//!
//! Index bytes carry no checksum, so every read of them is a stable read (`read_stable`): a
//! flipped bit in a slot would silently cut a chain.
//!
//! The index is a hint, not a source of truth: a query reads every record it points at and keeps
//! only those that are valid and carry the key. So recovery never has to repair it: an entry that
//! outlived its record (the log was cut past it) or a duplicate (a record dispatched twice) is
//! filtered out when queried.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use petrel_core::record::{java_hash, java_hash_continue};
use petrel_core::time::civil_from_days;

use crate::disk::{read_stable, Disk, DiskFile};
use crate::error::{IoContext, StoreError};

pub const HEADER_BYTES: u64 = 40;
pub const SLOT_BYTES: u64 = 4;
pub const ENTRY_BYTES: u64 = 20;
/// RocketMQ's `maxHashSlotNum`.
pub const SLOTS_DEFAULT: u32 = 5_000_000;
/// RocketMQ's `maxIndexNum`.
pub const ENTRIES_DEFAULT: u32 = 20_000_000;

/// The 40-byte header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexHeader {
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    pub begin_phy_offset: i64,
    pub end_phy_offset: i64,
    /// Slots in use.
    pub hash_slot_count: i32,
    /// The next entry number; entry 0 is never used, so this starts at 1.
    pub index_count: i32,
}

impl IndexHeader {
    fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut out = [0u8; HEADER_BYTES as usize];
        out[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        out[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        out[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_BYTES as usize]) -> IndexHeader {
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        IndexHeader {
            begin_timestamp: i64_at(0),
            end_timestamp: i64_at(8),
            begin_phy_offset: i64_at(16),
            end_phy_offset: i64_at(24),
            hash_slot_count: i32_at(32),
            index_count: i32_at(36),
        }
    }
}

/// RocketMQ's `indexKeyHashMethod` of `topic#key`: the Java hash's absolute value, with
/// `i32::MIN` as 0. Computed piece by piece, so dispatch builds no key string.
pub fn key_hash(topic: &str, key: &[u8]) -> i32 {
    let hash = java_hash_continue(java_hash_continue(java_hash(topic), "#"), &key_text(key));
    if hash == i32::MIN {
        0
    } else {
        hash.abs()
    }
}

/// Keys are UTF-8 text; invalid bytes hash as U+FFFD, as Java decodes them.
fn key_text(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

struct IndexFile {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    header: IndexHeader,
    header_dirty: bool,
    flushed: bool,
    /// The slot table of the file being appended to, kept in memory (20 MB by default, as
    /// RocketMQ keeps it mapped): appends never read a slot back from disk.
    slots: Option<Vec<i32>>,
    /// Entries added since the last `write_pending`, from entry number `pending_from` on:
    /// written in one piece at the end of a dispatch round.
    pending: Vec<u8>,
    pending_from: i32,
    /// Pages of the slot table changed since the last `flush`, written back there: a crash
    /// before it makes recovery rebuild this newest file from the log (`drop_newest`).
    dirty_pages: std::collections::BTreeSet<u32>,
}

/// Entries held in memory before they are written, even within one dispatch round.
const PENDING_BYTES_MAX: usize = 1 << 20;

/// The unit in which the slot table is written back at a flush: one page of the page cache.
const PAGE_BYTES: u64 = 4096;
const SLOTS_PER_PAGE: u32 = (PAGE_BYTES / SLOT_BYTES) as u32;

impl IndexFile {
    fn new(
        path: PathBuf,
        file: Arc<dyn DiskFile>,
        header: IndexHeader,
        slots: Option<Vec<i32>>,
    ) -> IndexFile {
        let pending_from = header.index_count;
        IndexFile {
            path,
            file,
            header,
            header_dirty: false,
            flushed: true,
            slots,
            pending: Vec::new(),
            pending_from,
            dirty_pages: std::collections::BTreeSet::new(),
        }
    }

    /// Entry `number`, from the pending ones or the file.
    fn entry(&self, entries_at: u64, number: i32) -> Option<[u8; ENTRY_BYTES as usize]> {
        let mut entry = [0u8; ENTRY_BYTES as usize];
        if number >= self.pending_from {
            let at = (number - self.pending_from) as usize * ENTRY_BYTES as usize;
            entry.copy_from_slice(self.pending.get(at..at + ENTRY_BYTES as usize)?);
            return Some(entry);
        }
        let at = entries_at + number as u64 * ENTRY_BYTES;
        read_stable(self.file.as_ref(), at, &mut entry).ok()?;
        Some(entry)
    }

    /// The latest entry number of `slot`, from the table in memory or the file.
    fn slot(&self, slot: u32) -> Option<i32> {
        if let Some(table) = &self.slots {
            return table.get(slot as usize).copied();
        }
        let mut raw = [0u8; 4];
        let at = HEADER_BYTES + u64::from(slot) * SLOT_BYTES;
        read_stable(self.file.as_ref(), at, &mut raw).ok()?;
        Some(i32::from_be_bytes(raw))
    }

    /// Writes the pending entries and the header when they changed.
    fn write_pending(&mut self, entries_at: u64) -> Result<(), StoreError> {
        let what = || format!("cannot write {}", self.path.display());
        if !self.pending.is_empty() {
            let at = entries_at + self.pending_from as u64 * ENTRY_BYTES;
            self.file.write_at(at, &self.pending).context(what)?;
            self.pending.clear();
        }
        self.pending_from = self.header.index_count;
        if self.header_dirty {
            self.file.write_at(0, &self.header.encode()).context(what)?;
            self.header_dirty = false;
        }
        Ok(())
    }

    /// Writes back the changed pages of the slot table, one write per run of adjacent pages.
    /// A page stays marked until its write succeeds.
    fn write_slots(&mut self) -> Result<(), StoreError> {
        let Some(table) = &self.slots else { return Ok(()) };
        let pages: Vec<u32> = self.dirty_pages.iter().copied().collect();
        let mut bytes = Vec::new();
        let mut run = 0;
        while run < pages.len() {
            let mut end = run + 1;
            while end < pages.len() && pages[end] == pages[end - 1] + 1 {
                end += 1;
            }
            let first = (pages[run] * SLOTS_PER_PAGE) as usize;
            let last = (((pages[end - 1] + 1) * SLOTS_PER_PAGE) as usize).min(table.len());
            bytes.clear();
            bytes.extend(table[first..last].iter().flat_map(|slot| slot.to_be_bytes()));
            let at = HEADER_BYTES + first as u64 * SLOT_BYTES;
            let what = || format!("cannot write {}", self.path.display());
            self.file.write_at(at, &bytes).context(what)?;
            for page in &pages[run..end] {
                self.dirty_pages.remove(page);
            }
            run = end;
        }
        Ok(())
    }
}

/// All index files, oldest first.
pub struct Index {
    dir: PathBuf,
    slots: u32,
    entries: u32,
    files: Vec<IndexFile>,
}

impl Index {
    pub fn file_bytes(slots: u32, entries: u32) -> u64 {
        HEADER_BYTES + u64::from(slots) * SLOT_BYTES + u64::from(entries) * ENTRY_BYTES
    }

    /// Opens the index files in `dir`; files of another size (another configuration, or a
    /// creation a crash interrupted) are removed: the index can always be rebuilt.
    pub fn open(
        disk: &dyn Disk,
        dir: &Path,
        slots: u32,
        entries: u32,
    ) -> Result<Index, StoreError> {
        let bytes = Index::file_bytes(slots, entries);
        let mut files = Vec::new();
        for name in disk.list(dir).context(|| format!("cannot list {}", dir.display()))? {
            if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let path = dir.join(&name);
            let file = disk.open(&path).context(|| format!("cannot open {}", path.display()))?;
            if file.len() != bytes {
                drop(file);
                tracing::warn!(file = %path.display(), "removing an index file of the wrong size");
                disk.remove(&path).context(|| format!("cannot remove {}", path.display()))?;
                continue;
            }
            let mut raw = [0u8; HEADER_BYTES as usize];
            read_stable(file.as_ref(), 0, &mut raw)
                .context(|| format!("cannot read {}", path.display()))?;
            let mut header = IndexHeader::decode(&raw);
            let in_range = header.index_count >= 1 && header.index_count as u32 <= entries;
            if !in_range {
                header.index_count = 1;
            }
            let mut index_file = IndexFile::new(path, file, header, None);
            index_file.header_dirty = !in_range;
            files.push(index_file);
        }
        Ok(Index { dir: dir.to_path_buf(), slots, entries, files })
    }

    /// Adds the key whose `key_hash` is `hash` for the record at `phy_offset` stored at
    /// `timestamp`.
    pub fn put(
        &mut self,
        disk: &dyn Disk,
        hash: i32,
        phy_offset: i64,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let full = self.files.last().is_none_or(|f| f.header.index_count as u32 >= self.entries);
        if full {
            // A full file is flushed before the next is created, so every file but the newest
            // is complete on disk: recovery after a crash only rebuilds the newest. Its slot
            // table is then read from the file, not kept in memory (20 MB a file).
            self.flush()?;
            if let Some(previous) = self.files.last_mut() {
                previous.slots = None;
            }
            self.create(disk, phy_offset, timestamp)?;
        }
        let slots = self.slots;
        let entries_at = self.entries_at();
        let current = self.files.last_mut().expect("a file was just ensured");
        // A long dispatch round (a re-index after a crash) writes its entries as it goes
        // rather than holding them all in memory.
        if current.pending.len() >= PENDING_BYTES_MAX {
            current.write_pending(entries_at)?;
        }
        if current.slots.is_none() {
            current.slots = Some(load_slots(current.file.as_ref(), slots)?);
        }
        let slot = (hash as u32 % slots) as usize;
        let table = current.slots.as_mut().expect("slots were just loaded");
        let mut previous = table[slot];
        let header = &mut current.header;
        if previous <= 0 || previous > header.index_count {
            previous = 0;
        }
        if header.index_count <= 1 {
            header.begin_phy_offset = phy_offset;
            header.begin_timestamp = timestamp;
        }
        let seconds = ((timestamp - header.begin_timestamp) / 1000).clamp(0, i64::from(i32::MAX));
        let number = header.index_count;
        debug_assert_eq!(
            current.pending.len() as u64,
            (number - current.pending_from) as u64 * ENTRY_BYTES,
            "pending entries run up to this one"
        );
        current.pending.extend_from_slice(&hash.to_be_bytes());
        current.pending.extend_from_slice(&phy_offset.to_be_bytes());
        current.pending.extend_from_slice(&(seconds as i32).to_be_bytes());
        current.pending.extend_from_slice(&previous.to_be_bytes());
        table[slot] = number;
        current.dirty_pages.insert(slot as u32 / SLOTS_PER_PAGE);
        if previous == 0 {
            header.hash_slot_count += 1;
        }
        header.index_count += 1;
        header.end_phy_offset = phy_offset;
        header.end_timestamp = timestamp;
        current.header_dirty = true;
        current.flushed = false;
        Ok(())
    }

    /// Creates the next file for a first entry at `phy_offset`. Its header, naming that offset,
    /// is durable before the directory entry: recovery must know where a file began even when
    /// nothing else of it reached the disk, to index those records again.
    fn create(
        &mut self,
        disk: &dyn Disk,
        phy_offset: i64,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        disk.create_dir_all(&self.dir)
            .context(|| format!("cannot create {}", self.dir.display()))?;
        let mut name = file_name(timestamp);
        // Two files created within one millisecond: take the next free name.
        let mut stamp = timestamp;
        while self.files.iter().any(|f| f.path.file_name().is_some_and(|n| n == name.as_str())) {
            stamp += 1;
            name = file_name(stamp);
        }
        let path = self.dir.join(name);
        // A file by that name that is not ours is what a failed attempt left (its header
        // write ran out of space, say): it holds nothing, start it again.
        if disk.exists(&path) {
            disk.remove(&path).context(|| format!("cannot remove {}", path.display()))?;
        }
        let bytes = Index::file_bytes(self.slots, self.entries);
        let file =
            disk.create(&path, bytes).context(|| format!("cannot create {}", path.display()))?;
        let header = IndexHeader {
            begin_phy_offset: phy_offset,
            begin_timestamp: timestamp,
            end_phy_offset: phy_offset,
            end_timestamp: timestamp,
            index_count: 1,
            ..IndexHeader::default()
        };
        file.write_at(0, &header.encode())
            .context(|| format!("cannot write {}", path.display()))?;
        file.sync().sync_context(|| format!("cannot sync {}", path.display()))?;
        disk.sync_dir(&self.dir).sync_context(|| format!("cannot sync {}", self.dir.display()))?;
        let slots = Some(vec![0; self.slots as usize]);
        let mut index_file = IndexFile::new(path, file, header, slots);
        (index_file.header_dirty, index_file.flushed) = (true, false);
        self.files.push(index_file);
        Ok(())
    }

    /// Removes the newest file and returns the commit-log offset its entries began at, so the
    /// caller can index those records again. After a crash that file's slots, entries and header
    /// may each hold or lack unsynced writes, and a slot pointing at a lost entry would cut the
    /// chain to every older entry of that slot; rebuilding it from the log is the sure way.
    /// With no file at all (a crash may have come between removing the newest and writing its
    /// successor) everything is indexed again.
    pub fn drop_newest(&mut self, disk: &dyn Disk) -> Result<i64, StoreError> {
        let Some(newest) = self.files.pop() else { return Ok(0) };
        disk.remove(&newest.path).context(|| format!("cannot remove {}", newest.path.display()))?;
        disk.sync_dir(&self.dir).sync_context(|| format!("cannot sync {}", self.dir.display()))?;
        Ok(newest.header.begin_phy_offset)
    }

    fn entries_at(&self) -> u64 {
        HEADER_BYTES + u64::from(self.slots) * SLOT_BYTES
    }

    /// Writes the entries added and the headers changed (end of a dispatch round): one write
    /// for all the round's entries. The slot table is written back at `flush`.
    pub fn write_pending(&mut self) -> Result<(), StoreError> {
        let entries_at = self.entries_at();
        for file in &mut self.files {
            file.write_pending(entries_at)?;
        }
        Ok(())
    }

    /// Writes everything pending, the slot tables included, and syncs files written since the
    /// last flush.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.write_pending()?;
        for file in &mut self.files {
            file.write_slots()?;
        }
        for file in self.files.iter_mut().filter(|f| !f.flushed) {
            file.file.sync().sync_context(|| format!("cannot sync {}", file.path.display()))?;
            file.flushed = true;
        }
        Ok(())
    }

    /// Commit-log offsets indexed under the key hash `hash` with a store time in
    /// `[begin, end]`, newest first, at most `max`. Candidates only: the caller checks each
    /// record.
    pub fn lookup(&self, hash: i32, max: usize, begin: i64, end: i64) -> Vec<i64> {
        let mut found = Vec::new();
        for file in self.files.iter().rev() {
            let header = &file.header;
            let overlaps = header.begin_timestamp <= end && header.end_timestamp >= begin;
            if header.index_count <= 1 || !overlaps {
                continue;
            }
            self.walk_chain(file, hash, begin, end, max, &mut found);
            if found.len() >= max {
                break;
            }
        }
        found
    }

    fn walk_chain(
        &self,
        file: &IndexFile,
        hash: i32,
        begin: i64,
        end: i64,
        max: usize,
        found: &mut Vec<i64>,
    ) {
        let Some(mut number) = file.slot(hash as u32 % self.slots) else { return };
        let entries_at = self.entries_at();
        // Each step goes to a strictly lower number, so the walk ends even on a damaged file.
        let mut bound = file.header.index_count;
        while number > 0 && number < bound && found.len() < max {
            let Some(entry) = file.entry(entries_at, number) else { return };
            let field = |at: usize, n: usize| &entry[at..at + n];
            let entry_hash = i32::from_be_bytes(field(0, 4).try_into().unwrap_or([0; 4]));
            let offset = i64::from_be_bytes(field(4, 8).try_into().unwrap_or([0; 8]));
            let seconds = i32::from_be_bytes(field(12, 4).try_into().unwrap_or([0; 4]));
            let previous = i32::from_be_bytes(field(16, 4).try_into().unwrap_or([0; 4]));
            let time = file.header.begin_timestamp + i64::from(seconds) * 1000;
            if entry_hash == hash && time >= begin && time <= end {
                found.push(offset);
            }
            bound = number;
            number = previous;
        }
    }

    /// Removes index files whose every entry points below `offset` (expired with the log).
    pub fn remove_before(&mut self, disk: &dyn Disk, offset: i64) -> Result<(), StoreError> {
        let keep_last = self.files.len().saturating_sub(1);
        let expired: Vec<usize> =
            (0..keep_last).filter(|i| self.files[*i].header.end_phy_offset < offset).collect();
        for i in expired.iter().rev() {
            let file = self.files.remove(*i);
            disk.remove(&file.path).context(|| format!("cannot remove {}", file.path.display()))?;
        }
        if !expired.is_empty() {
            disk.sync_dir(&self.dir)
                .sync_context(|| format!("cannot sync {}", self.dir.display()))?;
        }
        Ok(())
    }
}

/// Reads a file's slot table (stable: slots carry no checksum).
fn load_slots(file: &dyn DiskFile, slots: u32) -> Result<Vec<i32>, StoreError> {
    let mut raw = vec![0u8; slots as usize * SLOT_BYTES as usize];
    read_stable(file, HEADER_BYTES, &mut raw).context(|| "cannot read index slots".to_owned())?;
    let table = raw
        .chunks_exact(SLOT_BYTES as usize)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(table)
}

/// `yyyyMMddHHmmssSSS` of a Unix time in milliseconds, in UTC (RocketMQ uses the broker's
/// local time zone; the name only orders the files).
pub fn file_name(millis: i64) -> String {
    let millis = millis.max(0);
    let (days, rest) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (rest / 3_600_000, rest / 60_000 % 60);
    let (seconds, milli) = (rest / 1000 % 60, rest % 1000);
    format!("{year:04}{month:02}{day:02}{hours:02}{minutes:02}{seconds:02}{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{SimDisk, SimDiskFaults};

    #[test]
    fn file_names_are_utc_timestamps() {
        assert_eq!(file_name(0), "19700101000000000");
        assert_eq!(file_name(1_700_000_000_123), "20231114221320123");
        assert_eq!(file_name(951_782_400_000), "20000229000000000");
    }

    #[test]
    fn key_hash_matches_rocketmq() {
        assert_eq!(key_hash("TopicTest", b"k1"), 2_746_024);
    }

    #[test]
    fn a_file_left_by_a_failed_create_does_not_block_the_index() {
        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let dir = Path::new("/store/index");
        let mut index = Index::open(&disk, dir, 7, 10).unwrap();
        // What a create whose header write ran out of space leaves behind.
        disk.create_dir_all(dir).unwrap();
        disk.create(&dir.join(file_name(5_000)), 64).unwrap();
        index.put(&disk, key_hash("T", b"k"), 0, 5_000).unwrap();
        assert_eq!(index.lookup(key_hash("T", b"k"), 10, 0, i64::MAX), vec![0]);
    }

    #[test]
    fn lookups_follow_chains_across_files() {
        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let dir = Path::new("/store/index");
        let mut index = Index::open(&disk, dir, 7, 10).unwrap();
        for i in 0..25i64 {
            let hash = key_hash("T", format!("k{}", i % 4).as_bytes());
            index.put(&disk, hash, i * 100, 1_000 + i * 1_000).unwrap();
        }
        index.flush().unwrap();
        assert_eq!(index.files.len(), 3, "9 entries per file of 10 (entry 0 unused)");
        let tables: Vec<bool> = index.files.iter().map(|f| f.slots.is_some()).collect();
        assert_eq!(tables, [false, false, true], "only the newest file's slots in memory");
        let found = index.lookup(key_hash("T", b"k1"), 100, 0, i64::MAX);
        assert_eq!(found, vec![2100, 1700, 1300, 900, 500, 100]);
        let recent = index.lookup(key_hash("T", b"k1"), 100, 13_000, 20_000);
        assert_eq!(recent, vec![1700, 1300]);
        assert_eq!(index.lookup(key_hash("T", b"k1"), 2, 0, i64::MAX).len(), 2);
        let reopened = Index::open(&disk, dir, 7, 10).unwrap();
        assert_eq!(reopened.lookup(key_hash("T", b"k1"), 100, 0, i64::MAX), found);
    }

    #[test]
    fn a_long_round_writes_its_entries_as_it_goes() {
        let disk = SimDisk::new(1, 1 << 30, SimDiskFaults::default());
        let dir = Path::new("/store/index");
        let mut index = Index::open(&disk, dir, 101, 200_000).unwrap();
        let puts = 3 * PENDING_BYTES_MAX as i64 / ENTRY_BYTES as i64;
        for i in 0..puts {
            let hash = key_hash("T", format!("k{}", i % 50).as_bytes());
            index.put(&disk, hash, i * 100, 1_000).unwrap();
            let held = index.files[0].pending.len();
            assert!(held < PENDING_BYTES_MAX + ENTRY_BYTES as usize, "at put {i}");
        }
        let found = index.lookup(key_hash("T", b"k7"), usize::MAX, 0, i64::MAX);
        let expected: Vec<i64> = (0..puts).rev().filter(|i| i % 50 == 7).map(|i| i * 100).collect();
        assert_eq!(found, expected, "entries written early and entries pending both found");
    }
}
