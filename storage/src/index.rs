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
            let header_dirty = !in_range;
            files.push(IndexFile { path, file, header, header_dirty, flushed: true, slots: None });
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
            // is complete on disk: recovery after a crash only rebuilds the newest.
            self.flush()?;
            self.create(disk, phy_offset, timestamp)?;
        }
        let slots = self.slots;
        let current = self.files.last_mut().expect("a file was just ensured");
        if current.slots.is_none() {
            current.slots = Some(load_slots(current.file.as_ref(), slots)?);
        }
        let slot = (hash as u32 % slots) as usize;
        let slot_at = HEADER_BYTES + slot as u64 * SLOT_BYTES;
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
        let entry_at = HEADER_BYTES + u64::from(slots) * SLOT_BYTES + number as u64 * ENTRY_BYTES;
        let mut entry = [0u8; ENTRY_BYTES as usize];
        entry[0..4].copy_from_slice(&hash.to_be_bytes());
        entry[4..12].copy_from_slice(&phy_offset.to_be_bytes());
        entry[12..16].copy_from_slice(&(seconds as i32).to_be_bytes());
        entry[16..20].copy_from_slice(&previous.to_be_bytes());
        let what = || "cannot write the index".to_owned();
        current.file.write_at(entry_at, &entry).context(what)?;
        current.file.write_at(slot_at, &number.to_be_bytes()).context(what)?;
        if let Some(table) = current.slots.as_mut() {
            table[slot] = number;
        }
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
        self.files.push(IndexFile {
            path,
            file,
            header,
            header_dirty: true,
            flushed: false,
            slots,
        });
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

    /// Writes dirty headers (end of a dispatch round).
    pub fn write_headers(&mut self) -> Result<(), StoreError> {
        for file in self.files.iter_mut().filter(|f| f.header_dirty) {
            file.file
                .write_at(0, &file.header.encode())
                .context(|| format!("cannot write {}", file.path.display()))?;
            file.header_dirty = false;
        }
        Ok(())
    }

    /// Writes headers and syncs files written since the last flush.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.write_headers()?;
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
        let slot_at = HEADER_BYTES + u64::from(hash as u32 % self.slots) * SLOT_BYTES;
        let mut raw = [0u8; 4];
        if read_stable(file.file.as_ref(), slot_at, &mut raw).is_err() {
            return;
        }
        let mut number = i32::from_be_bytes(raw);
        // Each step goes to a strictly lower number, so the walk ends even on a damaged file.
        let mut bound = file.header.index_count;
        while number > 0 && number < bound && found.len() < max {
            let entry_at =
                HEADER_BYTES + u64::from(self.slots) * SLOT_BYTES + number as u64 * ENTRY_BYTES;
            let mut entry = [0u8; ENTRY_BYTES as usize];
            if read_stable(file.file.as_ref(), entry_at, &mut entry).is_err() {
                return;
            }
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

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        let found = index.lookup(key_hash("T", b"k1"), 100, 0, i64::MAX);
        assert_eq!(found, vec![2100, 1700, 1300, 900, 500, 100]);
        let recent = index.lookup(key_hash("T", b"k1"), 100, 13_000, 20_000);
        assert_eq!(recent, vec![1700, 1300]);
        assert_eq!(index.lookup(key_hash("T", b"k1"), 2, 0, i64::MAX).len(), 2);
        let reopened = Index::open(&disk, dir, 7, 10).unwrap();
        assert_eq!(reopened.lookup(key_hash("T", b"k1"), 100, 0, i64::MAX), found);
    }
}
