//! The epoch cache (RocketMQ's `EpochFileCache`): where each master epoch's records begin in
//! the commit log, as the `epochFileCheckpoint` file and the AutoSwitch handshake carry it
//! (`docs/failover.md`).
//!
//! Pure: entries in, entries out, the file's text and the handshake's bytes encoded and
//! decoded here; the shell reads and writes the file.

/// One epoch: the commit-log offset where its first record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start: i64,
}

/// The bytes of one entry on the wire: `int32 epoch, int64 startOffset`.
pub const WIRE_ENTRY_BYTES: usize = 12;

/// The most entries a file or a handshake may carry; a count above it is refused before
/// anything is allocated for it.
pub const ENTRIES_MAX: usize = 65_536;

/// Why an epoch cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    #[error("epoch {epoch} is not newer than the last epoch {last}")]
    StaleEpoch { epoch: i32, last: i32 },
    #[error("epoch {epoch} would start at {start}, before the last epoch's start {last_start}")]
    StartsBefore { epoch: i32, start: i64, last_start: i64 },
    #[error("epoch {epoch} has a negative epoch or start offset ({start})")]
    Negative { epoch: i32, start: i64 },
}

/// Why epoch entries from a file or the wire were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochFileError {
    #[error("line {line} of the epoch file: {why}")]
    Line { line: usize, why: String },
    #[error("the epoch file says {said} entries but holds {found}")]
    Count { said: usize, found: usize },
    #[error("the epoch file's entries have CRC {actual}, not the {expected} it records")]
    Crc { expected: u32, actual: u32 },
    #[error("epoch entry {index} ({entry:?}) does not follow the one before it")]
    Order { index: usize, entry: EpochEntry },
    #[error("epoch entry {index} ({entry:?}) has a negative epoch or start offset")]
    Negative { index: usize, entry: EpochEntry },
    #[error("{0} bytes of epoch entries are not whole 12-byte entries")]
    Length(usize),
    #[error("{count} epoch entries are more than the {max} allowed")]
    TooMany { count: usize, max: usize },
}

/// The epochs of one broker's commit log, oldest first. Each covers the log from its start to
/// the next one's start; the last reaches the log's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// A cache of these entries, which must be ascending (as a file or a master sends them).
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<EpochCache, EpochFileError> {
        for (index, pair) in entries.windows(2).enumerate() {
            if pair[1].epoch <= pair[0].epoch || pair[1].start <= pair[0].start {
                return Err(EpochFileError::Order { index: index + 1, entry: pair[1] });
            }
        }
        if let Some((index, entry)) =
            entries.iter().enumerate().find(|(_, e)| e.epoch < 0 || e.start < 0)
        {
            return Err(EpochFileError::Negative { index, entry: *entry });
        }
        Ok(EpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The last epoch; RocketMQ's `lastEpoch` says -1 for none.
    pub fn last_epoch(&self) -> Option<i32> {
        self.last().map(|e| e.epoch)
    }

    pub fn entry(&self, epoch: i32) -> Option<EpochEntry> {
        self.position(epoch).map(|i| self.entries[i])
    }

    fn position(&self, epoch: i32) -> Option<usize> {
        self.entries.binary_search_by_key(&epoch, |e| e.epoch).ok()
    }

    /// Where epoch number `index` ends: the next one's start, or `log_end` for the last.
    fn end_of(&self, index: usize, log_end: i64) -> i64 {
        self.entries.get(index + 1).map_or(log_end, |next| next.start)
    }

    /// A new master's epoch, from `start` (its log's end). An epoch that starts where the last
    /// one does holds no records, and is replaced (`docs/failover.md`: RocketMQ refuses it).
    pub fn append(&mut self, epoch: i32, start: i64) -> Result<(), AppendRefused> {
        if epoch < 0 || start < 0 {
            return Err(AppendRefused::Negative { epoch, start });
        }
        if let Some(last) = self.last() {
            if epoch <= last.epoch {
                return Err(AppendRefused::StaleEpoch { epoch, last: last.epoch });
            }
            if start < last.start {
                let last_start = last.start;
                return Err(AppendRefused::StartsBefore { epoch, start, last_start });
            }
            if start == last.start {
                self.entries.pop();
            }
        }
        self.entries.push(EpochEntry { epoch, start });
        Ok(())
    }

    /// The epoch whose records hold `offset` in a log ending at `log_end`.
    pub fn epoch_of(&self, offset: i64, log_end: i64) -> Option<EpochEntry> {
        let index = self.entries.partition_point(|e| e.start <= offset).checked_sub(1)?;
        (offset < self.end_of(index, log_end)).then_some(self.entries[index])
    }

    /// The entry after epoch `epoch` (RocketMQ's `nextEntry`: the first with a greater epoch).
    pub fn next_after(&self, epoch: i32) -> Option<EpochEntry> {
        let index = self.entries.partition_point(|e| e.epoch <= epoch);
        self.entries.get(index).copied()
    }

    /// The offset up to which this log (ending at `end`) and `other`'s (ending at `other_end`)
    /// hold the same records: from this cache's newest epoch down, the first both hold with
    /// the same start, to the lesser of its two ends. `None` when they share none.
    pub fn consistent_point(&self, end: i64, other: &EpochCache, other_end: i64) -> Option<i64> {
        self.entries.iter().enumerate().rev().find_map(|(index, ours)| {
            let theirs = other.position(ours.epoch)?;
            (other.entries[theirs].start == ours.start)
                .then(|| self.end_of(index, end).min(other.end_of(theirs, other_end)))
        })
    }

    /// The log was cut at `offset`: the epochs starting at or past it go.
    pub fn truncate_suffix(&mut self, offset: i64) {
        self.entries.retain(|e| e.start < offset);
    }

    /// Epochs `epoch` and newer go (`truncateSuffixByEpoch`).
    pub fn truncate_suffix_by_epoch(&mut self, epoch: i32) {
        self.entries.retain(|e| e.epoch < epoch);
    }

    /// The log now begins at `offset` (old files deleted): the epochs that end at or before it
    /// go. The last epoch always stays: it reaches the log's end.
    pub fn truncate_prefix(&mut self, offset: i64) {
        // An entry ends where the next one starts.
        let ended = self.entries.windows(2).take_while(|pair| pair[1].start <= offset).count();
        self.entries.drain(..ended);
    }

    /// The `epochFileCheckpoint` text.
    pub fn to_checkpoint(&self) -> String {
        let mut body = String::new();
        for entry in &self.entries {
            body.push_str(&format!("{}-{}\n", entry.epoch, entry.start));
        }
        format!("{}\n{}\n{body}", self.entries.len(), masked_crc(body.as_bytes()))
    }

    /// The cache an `epochFileCheckpoint` text holds, checked (`docs/failover.md`).
    pub fn from_checkpoint(text: &str) -> Result<EpochCache, EpochFileError> {
        let mut lines = text.split_inclusive('\n');
        let mut header = |line: usize, what: &str| -> Result<u64, EpochFileError> {
            let raw = lines.next().ok_or_else(|| EpochFileError::Line {
                line,
                why: format!("missing: the file ends before its {what}"),
            })?;
            raw.trim_end_matches('\n')
                .parse()
                .map_err(|_| EpochFileError::Line { line, why: format!("{raw:?} is not a {what}") })
        };
        let said = header(1, "entry count")?;
        let expected = header(2, "CRC")?;
        let said = usize::try_from(said).unwrap_or(usize::MAX);
        if said > ENTRIES_MAX {
            return Err(EpochFileError::TooMany { count: said, max: ENTRIES_MAX });
        }
        let body_start = text.len() - lines.clone().map(str::len).sum::<usize>();
        let mut entries = Vec::with_capacity(said);
        for (i, raw) in lines.enumerate() {
            if entries.len() == ENTRIES_MAX {
                return Err(EpochFileError::TooMany { count: ENTRIES_MAX + 1, max: ENTRIES_MAX });
            }
            entries.push(parse_line(raw).map_err(|why| EpochFileError::Line { line: i + 3, why })?);
        }
        if entries.len() != said {
            return Err(EpochFileError::Count { said, found: entries.len() });
        }
        let actual = masked_crc(&text.as_bytes()[body_start..]);
        if expected != 0 && u64::from(actual) != expected {
            let expected = u32::try_from(expected).unwrap_or(u32::MAX);
            return Err(EpochFileError::Crc { expected, actual });
        }
        EpochCache::from_entries(entries)
    }

    /// The entries as the AutoSwitch handshake sends them.
    pub fn encode_wire(&self, out: &mut Vec<u8>) {
        for entry in &self.entries {
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.start.to_be_bytes());
        }
    }

    /// Entries from a handshake body, at most `max` of them.
    pub fn decode_wire(bytes: &[u8], max: usize) -> Result<EpochCache, EpochFileError> {
        if !bytes.len().is_multiple_of(WIRE_ENTRY_BYTES) {
            return Err(EpochFileError::Length(bytes.len()));
        }
        let count = bytes.len() / WIRE_ENTRY_BYTES;
        if count > max {
            return Err(EpochFileError::TooMany { count, max });
        }
        let entries = bytes
            .chunks_exact(WIRE_ENTRY_BYTES)
            .map(|raw| EpochEntry {
                epoch: i32::from_be_bytes(raw[..4].try_into().expect("4 bytes")),
                start: i64::from_be_bytes(raw[4..].try_into().expect("8 bytes")),
            })
            .collect();
        EpochCache::from_entries(entries)
    }

    /// Epochs and start offsets both strictly increase, none negative.
    pub fn check_invariants(&self) {
        for pair in self.entries.windows(2) {
            assert!(pair[0].epoch < pair[1].epoch, "epochs increase: {pair:?}");
            assert!(pair[0].start < pair[1].start, "start offsets increase: {pair:?}");
        }
        assert!(self.entries.iter().all(|e| e.epoch >= 0 && e.start >= 0), "{self:?}");
    }
}

/// The fuzz target `epoch_file`'s logic (here so that `cargo test` replays its corpus): the
/// first byte picks the file's text or the handshake's entries; either decodes or is refused,
/// never panics, and what decodes encodes back to the same bytes (a file whose CRC line is 0,
/// "not checked", or has leading zeros re-encodes differently, and is decoded again instead).
pub fn fuzz_epoch_file(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        if let Ok(cache) = EpochCache::from_checkpoint(text) {
            cache.check_invariants();
            let again = cache.to_checkpoint();
            assert_eq!(EpochCache::from_checkpoint(&again).as_ref(), Ok(&cache));
        }
    } else if let Ok(cache) = EpochCache::decode_wire(rest, ENTRIES_MAX) {
        cache.check_invariants();
        let mut again = Vec::new();
        cache.encode_wire(&mut again);
        assert_eq!(again, rest, "the wire form decodes and encodes to the same bytes");
    }
}

/// One `epoch-startOffset\n` line.
fn parse_line(raw: &str) -> Result<EpochEntry, String> {
    let line = raw.strip_suffix('\n').ok_or("the last line has no line end")?;
    let (epoch, start) = line.split_once('-').ok_or_else(|| format!("{line:?} has no '-'"))?;
    let epoch = epoch.parse().map_err(|_| format!("epoch {epoch:?} is not an int32"))?;
    let start = start.parse().map_err(|_| format!("offset {start:?} is not an int64"))?;
    Ok(EpochEntry { epoch, start })
}

/// RocketMQ's `UtilAll.crc32`: CRC-32 with its top bit cleared.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let entries = entries.iter().map(|&(epoch, start)| EpochEntry { epoch, start }).collect();
        let cache = EpochCache::from_entries(entries).unwrap();
        cache.check_invariants();
        cache
    }

    #[test]
    fn the_file_matches_rocketmqs_example() {
        let text = cache(&[(7, 7000), (8, 8000)]).to_checkpoint();
        assert_eq!(text, "2\n773307083\n7-7000\n8-8000\n");
        assert_eq!(EpochCache::from_checkpoint(&text).unwrap(), cache(&[(7, 7000), (8, 8000)]));
        assert_eq!(EpochCache::default().to_checkpoint(), "0\n0\n");
        assert_eq!(EpochCache::from_checkpoint("0\n0\n").unwrap(), EpochCache::default());
        // A CRC of 0 is not checked.
        assert!(EpochCache::from_checkpoint("1\n0\n3-5\n").is_ok());
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let refused = |text: &str| EpochCache::from_checkpoint(text).unwrap_err().to_string();
        assert!(refused("2\n773307083\n7-7000\n8-8001\n").contains("CRC"));
        assert!(refused("3\n0\n7-7000\n8-8000\n").contains("says 3 entries but holds 2"));
        assert!(refused("2\n0\n7-7000\n8-8000").contains("no line end"));
        assert!(refused("x\n0\n").contains("entry count"));
        assert!(refused("1\n").contains("missing"));
        assert!(refused("1\n0\n7:7000\n").contains("no '-'"));
        assert!(refused("1\n0\n99999999999-1\n").contains("int32"));
        assert!(refused("2\n0\n8-7000\n7-8000\n").contains("does not follow"));
        assert!(refused("2\n0\n7-8000\n8-8000\n").contains("does not follow"));
        assert!(refused("99999999999999\n0\n").contains("more than"));
    }

    #[test]
    fn the_wire_form_is_twelve_bytes_an_entry() {
        let mut out = Vec::new();
        cache(&[(7, 7000)]).encode_wire(&mut out);
        assert_eq!(out, [0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x1B, 0x58]);
        assert_eq!(EpochCache::decode_wire(&out, 8).unwrap(), cache(&[(7, 7000)]));
        assert_eq!(EpochCache::decode_wire(&out[..11], 8), Err(EpochFileError::Length(11)));
        let two = [out.clone(), out].concat();
        assert!(matches!(EpochCache::decode_wire(&two, 1), Err(EpochFileError::TooMany { .. })));
        assert!(matches!(EpochCache::decode_wire(&two, 8), Err(EpochFileError::Order { .. })));
    }

    #[test]
    fn appends_go_forward_and_an_empty_epoch_is_replaced() {
        let mut c = EpochCache::default();
        c.append(1, 0).unwrap();
        c.append(2, 100).unwrap();
        assert_eq!(c.append(2, 200), Err(AppendRefused::StaleEpoch { epoch: 2, last: 2 }));
        assert!(matches!(c.append(3, 50), Err(AppendRefused::StartsBefore { .. })));
        // Epoch 3 elected at 100 before epoch 2 wrote anything: it replaces epoch 2.
        c.append(3, 100).unwrap();
        assert_eq!(c, cache(&[(1, 0), (3, 100)]));
        assert!(matches!(c.append(4, -1), Err(AppendRefused::Negative { .. })));
        c.check_invariants();
    }

    #[test]
    fn an_offset_belongs_to_the_epoch_whose_range_holds_it() {
        let c = cache(&[(1, 100), (3, 500)]);
        assert_eq!(c.epoch_of(99, 900), None);
        assert_eq!(c.epoch_of(100, 900).unwrap().epoch, 1);
        assert_eq!(c.epoch_of(499, 900).unwrap().epoch, 1);
        assert_eq!(c.epoch_of(500, 900).unwrap().epoch, 3);
        assert_eq!(c.epoch_of(900, 900), None, "the log's end is past every record");
        assert_eq!(c.next_after(1).unwrap().epoch, 3);
        assert_eq!(c.next_after(2).unwrap().epoch, 3);
        assert_eq!(c.next_after(3), None);
        assert_eq!(c.last_epoch(), Some(3));
        assert_eq!(c.entry(2), None);
    }

    #[test]
    fn the_consistent_point_is_where_the_shared_epoch_ends_first() {
        // The slave followed epoch 2 to 700; the master of epoch 3 began at 600.
        let slave = cache(&[(1, 0), (2, 300)]);
        let master = cache(&[(1, 0), (2, 300), (3, 600)]);
        assert_eq!(slave.consistent_point(700, &master, 1000), Some(600));
        // A slave behind the master's epoch change keeps all it has.
        assert_eq!(slave.consistent_point(500, &master, 1000), Some(500));
        // Epoch 2 began elsewhere on the master: only epoch 1 is shared, to 300.
        let other = cache(&[(1, 0), (2, 250)]);
        assert_eq!(slave.consistent_point(700, &other, 1000), Some(250));
        // Nothing shared: the slave's log is emptied.
        assert_eq!(slave.consistent_point(700, &cache(&[(5, 0)]), 10), None);
        assert_eq!(EpochCache::default().consistent_point(0, &master, 1000), None);
    }

    #[test]
    fn truncation_keeps_the_epochs_of_what_remains() {
        let mut c = cache(&[(1, 0), (2, 300), (3, 600)]);
        c.truncate_suffix(600);
        assert_eq!(c, cache(&[(1, 0), (2, 300)]));
        c.truncate_suffix(301);
        assert_eq!(c, cache(&[(1, 0), (2, 300)]));
        let mut c = cache(&[(1, 0), (2, 300), (3, 600)]);
        c.truncate_suffix_by_epoch(2);
        assert_eq!(c, cache(&[(1, 0)]));
        let mut c = cache(&[(1, 0), (2, 300), (3, 600)]);
        c.truncate_prefix(300);
        assert_eq!(c, cache(&[(2, 300), (3, 600)]), "epoch 1 ended at 300");
        c.truncate_prefix(5_000);
        assert_eq!(c, cache(&[(3, 600)]), "the last epoch reaches the log's end");
        let mut c = cache(&[(1, 0), (2, 300)]);
        c.truncate_prefix(299);
        assert_eq!(c, cache(&[(1, 0), (2, 300)]));
    }

    fn arb_cache() -> impl Strategy<Value = EpochCache> {
        proptest::collection::vec((1..5i32, 1..1_000i64), 0..12).prop_map(|steps| {
            let (mut epoch, mut start, mut entries) = (0, 0, Vec::new());
            for (de, ds) in steps {
                epoch += de;
                start += ds;
                entries.push(EpochEntry { epoch, start });
            }
            EpochCache::from_entries(entries).expect("built ascending")
        })
    }

    proptest! {
        #[test]
        fn file_and_wire_forms_round_trip(c in arb_cache()) {
            c.check_invariants();
            prop_assert_eq!(&EpochCache::from_checkpoint(&c.to_checkpoint()).unwrap(), &c);
            let mut wire = Vec::new();
            c.encode_wire(&mut wire);
            prop_assert_eq!(&EpochCache::decode_wire(&wire, ENTRIES_MAX).unwrap(), &c);
        }

        #[test]
        fn a_cache_agrees_with_itself_to_the_shorter_end(
            c in arb_cache(), a in 0..20_000i64, b in 0..20_000i64,
        ) {
            let last = c.last().map_or(0, |e| e.start);
            let (a, b) = (last + a, last + b);
            let point = c.consistent_point(a, &c, b);
            prop_assert_eq!(point, c.last().map(|_| a.min(b)));
        }

        #[test]
        fn the_consistent_point_is_symmetric_and_within_both_logs(
            x in arb_cache(), y in arb_cache(), a in 0..20_000i64, b in 0..20_000i64,
        ) {
            let a = x.last().map_or(0, |e| e.start) + a;
            let b = y.last().map_or(0, |e| e.start) + b;
            let point = x.consistent_point(a, &y, b);
            if let Some(p) = point {
                prop_assert!(p <= a && p <= b);
            }
            // Symmetric when both caches are each other's in reverse: their shared epochs
            // with equal starts are the same set, and the newest of it is found either way.
            prop_assert_eq!(point, y.consistent_point(b, &x, a));
        }

        #[test]
        fn any_operations_keep_the_invariants(
            ops in proptest::collection::vec((0..4u8, 0..20i32, 0..2_000i64), 0..40),
        ) {
            let mut c = EpochCache::default();
            for (op, epoch, offset) in ops {
                match op {
                    0 | 1 => {
                        let before = c.clone();
                        if c.append(epoch, offset).is_err() {
                            prop_assert_eq!(&c, &before, "a refused append changes nothing");
                        }
                    }
                    2 => c.truncate_suffix(offset),
                    _ => c.truncate_prefix(offset),
                }
                c.check_invariants();
            }
        }

        #[test]
        fn damaged_texts_never_panic(text in "[0-9\\-\n]{0,64}") {
            let _ = EpochCache::from_checkpoint(&text);
        }
    }
}
