//! The `timerwheel` file: `2 × WHEEL_SLOTS` slots of 32 bytes, no header
//! (`docs/storage-format.md` §13). A slot holds the time it stands for and the two ends of its
//! list of units in the timer log. The file only stores slots; which slot to rewrite, and when,
//! is the caller's business.
//!
//! Slots carry no checksum, so every read is a stable read ([`read_stable`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ensure_dir, io_context, sync_context};
use crate::disk::{read_stable, Disk, DiskFile};

/// RocketMQ's `slotsTotal`: seven days of seconds, whatever the precision.
pub use petrel_core::broker::timer::WHEEL_SLOTS;
pub const SLOT_BYTES: u64 = 32;
/// The wheel file holds two rounds of slots.
pub const WHEEL_FILE_BYTES: u64 = 2 * WHEEL_SLOTS as u64 * SLOT_BYTES;

const _: () = assert!(WHEEL_FILE_BYTES == 38_707_200, "the size §13 gives");
// A slot never straddles a 512-byte sector, so a torn write keeps all of a slot or none.
const _: () = assert!(512 % SLOT_BYTES == 0);

/// One slot: the units due at `time_ms`, linked backwards from `last_pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The slot's time in milliseconds, a multiple of the precision; -1 when empty.
    pub time_ms: i64,
    /// Timer-log position of the slot's first unit.
    pub first_pos: i64,
    /// Timer-log position of its last unit, the head of the list.
    pub last_pos: i64,
    /// Units in the slot.
    pub num: i32,
    /// Unused by RocketMQ (0).
    pub magic: i32,
}

impl Slot {
    /// What RocketMQ's `getSlot` returns for a slot that holds another time.
    pub const EMPTY: Slot = Slot { time_ms: -1, first_pos: -1, last_pos: -1, num: 0, magic: 0 };

    /// The slot's bytes; the time is stored as a slot number (`time_ms / precision_ms`).
    pub fn encode(&self, precision_ms: i64) -> [u8; SLOT_BYTES as usize] {
        assert!(precision_ms > 0, "timer precision {precision_ms} ms is not positive");
        let mut out = [0u8; SLOT_BYTES as usize];
        out[0..8].copy_from_slice(&(self.time_ms / precision_ms).to_be_bytes());
        out[8..16].copy_from_slice(&self.first_pos.to_be_bytes());
        out[16..24].copy_from_slice(&self.last_pos.to_be_bytes());
        out[24..28].copy_from_slice(&self.num.to_be_bytes());
        out[28..32].copy_from_slice(&self.magic.to_be_bytes());
        out
    }

    /// Reads a slot; the stored slot number is multiplied back by the precision (wrapping, as
    /// Java's `long` product does, so damaged bytes cannot panic).
    pub fn decode(bytes: &[u8; SLOT_BYTES as usize], precision_ms: i64) -> Slot {
        assert!(precision_ms > 0, "timer precision {precision_ms} ms is not positive");
        let i64_at = |at: usize| i64::from_be_bytes(array_at(bytes, at));
        let i32_at = |at: usize| i32::from_be_bytes(array_at(bytes, at));
        Slot {
            time_ms: i64_at(0).wrapping_mul(precision_ms),
            first_pos: i64_at(8),
            last_pos: i64_at(16),
            num: i32_at(24),
            magic: i32_at(28),
        }
    }
}

/// The index of the slot for `time_ms`: `(time_ms / precision_ms) mod (2 × WHEEL_SLOTS)`.
/// Times are not negative in practice; a negative one still maps into the wheel.
pub fn slot_index(time_ms: i64, precision_ms: i64) -> u64 {
    assert!(precision_ms > 0, "timer precision {precision_ms} ms is not positive");
    (time_ms / precision_ms).rem_euclid(2 * WHEEL_SLOTS) as u64
}

/// The open wheel file.
pub struct TimerWheelFile {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
}

impl TimerWheelFile {
    /// Opens the wheel at `path` (RocketMQ's is `storePathRootDir/timerwheel`, see
    /// [`wheel_path`](super::wheel_path)), or creates it: sparse, `WHEEL_FILE_BYTES` of zeros,
    /// synced with its directory. An empty file is replaced by a new one, as RocketMQ extends
    /// it; a file of any other length is refused.
    pub fn open(disk: &dyn Disk, path: &Path) -> io::Result<TimerWheelFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        if disk.exists(path) {
            let file = disk
                .open(path)
                .map_err(io_context(|| format!("cannot open {}", path.display())))?;
            if file.len() == WHEEL_FILE_BYTES {
                return Ok(TimerWheelFile { path: path.to_path_buf(), file });
            }
            if !file.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is {} bytes; a timer wheel is {WHEEL_FILE_BYTES} bytes \
                         (2 × {WHEEL_SLOTS} slots of {SLOT_BYTES} bytes)",
                        path.display(),
                        file.len()
                    ),
                ));
            }
            // A file whose creation was interrupted: no slot was ever written to it.
            tracing::warn!(file = %path.display(), "replacing an empty timer wheel");
            drop(file);
            disk.remove(path)
                .map_err(io_context(|| format!("cannot remove {}", path.display())))?;
        } else {
            ensure_dir(disk, dir)?;
        }
        let file = disk
            .create(path, WHEEL_FILE_BYTES)
            .map_err(io_context(|| format!("cannot create {}", path.display())))?;
        file.sync().map_err(sync_context(|| format!("cannot sync {}", path.display())))?;
        disk.sync_dir(dir).map_err(sync_context(|| format!("cannot sync {}", dir.display())))?;
        Ok(TimerWheelFile { path: path.to_path_buf(), file })
    }

    /// Writes each slot at the index of its time. An emptied slot is written like any other,
    /// with `num` 0 (durable after `sync`).
    pub fn write_slots(&self, slots: &[Slot], precision_ms: i64) -> io::Result<()> {
        for slot in slots {
            debug_assert!(slot.time_ms >= 0, "a slot of negative time {}", slot.time_ms);
            debug_assert!(
                slot.time_ms % precision_ms == 0,
                "slot time {} is not a multiple",
                slot.time_ms
            );
            let offset = slot_index(slot.time_ms, precision_ms) * SLOT_BYTES;
            self.file
                .write_at(offset, &slot.encode(precision_ms))
                .map_err(io_context(|| format!("cannot write {}", self.path.display())))?;
        }
        Ok(())
    }

    /// The slot of `time_ms`, or `Slot::EMPTY` when its index holds another time (RocketMQ's
    /// `getSlot`: the time is compared rounded down to the precision).
    pub fn read_slot(&self, time_ms: i64, precision_ms: i64) -> io::Result<Slot> {
        let offset = slot_index(time_ms, precision_ms) * SLOT_BYTES;
        let mut bytes = [0u8; SLOT_BYTES as usize];
        read_stable(self.file.as_ref(), offset, &mut bytes)
            .map_err(io_context(|| format!("cannot read {}", self.path.display())))?;
        let slot = Slot::decode(&bytes, precision_ms);
        if slot.time_ms != time_ms / precision_ms * precision_ms {
            return Ok(Slot::EMPTY);
        }
        Ok(slot)
    }

    /// fdatasync: every slot written so far is durable when this returns `Ok`.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync().map_err(sync_context(|| format!("cannot sync {}", self.path.display())))
    }
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{SimDisk, SimDiskFaults};
    use crate::timer::hex;

    const SECOND: i64 = 1000;

    fn disk() -> SimDisk {
        SimDisk::new(1, 1 << 30, SimDiskFaults::default())
    }

    #[test]
    fn slot_matches_the_format_document() {
        let time_ms = 1_700_000_000_000;
        assert_eq!(slot_index(time_ms, SECOND), 512_000);
        assert_eq!(slot_index(time_ms, SECOND) * SLOT_BYTES, 16_384_000);
        let slot = Slot { time_ms, first_pos: 1234, last_pos: 5678, num: 2, magic: 0 };
        let expected = hex("000000006553f100 00000000000004d2 000000000000162e 00000002 00000000");
        assert_eq!(slot.encode(SECOND).to_vec(), expected);
        assert_eq!(Slot::decode(&slot.encode(SECOND), SECOND), slot);

        let disk = disk();
        let path = Path::new("/store/timerwheel");
        let wheel = TimerWheelFile::open(&disk, path).unwrap();
        wheel.write_slots(&[slot], SECOND).unwrap();
        wheel.sync().unwrap();
        let image = disk.image(path).unwrap();
        assert_eq!(image.len() as u64, WHEEL_FILE_BYTES);
        assert_eq!(image[16_384_000..16_384_032].to_vec(), expected);
        assert_eq!(wheel.read_slot(time_ms + 999, SECOND).unwrap(), slot, "rounded down");
    }

    #[test]
    fn a_slot_holding_another_time_reads_as_empty() {
        let disk = disk();
        let path = Path::new("/store/timerwheel");
        let wheel = TimerWheelFile::open(&disk, path).unwrap();
        let time_ms = 1_700_000_000_000;
        let slot = Slot { time_ms, first_pos: 0, last_pos: 52, num: 2, magic: 0 };
        wheel.write_slots(&[slot], SECOND).unwrap();
        let next_round = time_ms + 2 * WHEEL_SLOTS * SECOND;
        assert_eq!(slot_index(next_round, SECOND), slot_index(time_ms, SECOND));
        assert_eq!(wheel.read_slot(next_round, SECOND).unwrap(), Slot::EMPTY);
        assert_eq!(wheel.read_slot(time_ms, SECOND).unwrap(), slot);
        assert_eq!(
            wheel.read_slot(time_ms + SECOND, SECOND).unwrap(),
            Slot::EMPTY,
            "never written"
        );
        let emptied = Slot { time_ms, first_pos: -1, last_pos: -1, num: 0, magic: 0 };
        wheel.write_slots(&[emptied], SECOND).unwrap();
        assert_eq!(wheel.read_slot(time_ms, SECOND).unwrap(), emptied);
    }

    #[test]
    fn a_wheel_survives_a_crash_once_synced_and_keeps_its_length() {
        let disk = disk();
        let path = Path::new("/store/timerwheel");
        let wheel = TimerWheelFile::open(&disk, path).unwrap();
        let slot = Slot { time_ms: 5 * SECOND, first_pos: 0, last_pos: 0, num: 1, magic: 0 };
        wheel.write_slots(&[slot], SECOND).unwrap();
        wheel.sync().unwrap();
        disk.crash();
        let wheel = TimerWheelFile::open(&disk, path).unwrap();
        assert_eq!(wheel.read_slot(5 * SECOND, SECOND).unwrap(), slot);
    }

    #[test]
    fn a_wheel_of_the_wrong_length_is_refused_and_an_empty_one_replaced() {
        let disk = disk();
        disk.create_dir_all(Path::new("/store")).unwrap();
        let wrong = Path::new("/store/wrong");
        disk.create(wrong, 4096).unwrap();
        let error = TimerWheelFile::open(&disk, wrong).err().unwrap();
        assert!(error.to_string().contains("38707200"), "{error}");
        let empty = Path::new("/store/empty");
        disk.create(empty, 0).unwrap();
        TimerWheelFile::open(&disk, empty).unwrap();
        assert_eq!(disk.image(empty).unwrap().len() as u64, WHEEL_FILE_BYTES);
    }
}
