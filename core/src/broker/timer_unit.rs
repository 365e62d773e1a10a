//! One timer-log unit (52 bytes) and the 16-byte blank that ends a timer-log file
//! (`docs/storage-format.md` §13, `timerlog/`). Pure: bytes in, bytes out.

/// A unit's length, which its first field repeats.
pub const UNIT_BYTES: u64 = 52;
/// The blank that fills the end of a file: i32 bytes left in the file, i64 0, i32 magic.
pub const BLANK_BYTES: u64 = 16;
/// RocketMQ's `BLANK_MAGIC_CODE`, `0xBBCCDDEE ^ (1880681586 + 8)` in Java `int` arithmetic.
pub const BLANK_MAGIC: i32 = 0xCBD4_3194_u32 as i32;
use crate::broker::timer::{MAGIC_DELETE, MAGIC_ROLL};

const SIZE_AT: usize = 0;
const PREV_POS_AT: usize = 4;
/// Where a unit keeps its magic and a blank its `BLANK_MAGIC`: the scan tells them apart here.
pub const MAGIC_AT: usize = 12;
const WRITE_TIME_AT: usize = 16;
const DELAY_AT: usize = 24;
const OFFSET_PY_AT: usize = 28;
const SIZE_PY_AT: usize = 36;
const TOPIC_HASH_AT: usize = 40;
const RESERVED_AT: usize = 44;

const _: () = assert!(RESERVED_AT + 8 == UNIT_BYTES as usize, "the reserved i64 ends the unit");
// The blank's magic sits where a unit's does, so one read at a unit's position tells them apart.
const _: () = assert!(MAGIC_AT + 4 == BLANK_BYTES as usize);

/// Whether RocketMQ accepts `magic` (`isMagicOK`): no bit above the low four is set.
pub fn is_magic_ok(magic: i32) -> bool {
    (magic | 0xF) == 0xF
}

/// One unit of the timer log: a message waiting in a slot of the wheel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerUnit {
    /// Timer-log position of the slot's previous unit; -1 for the slot's first.
    pub prev_pos: i64,
    /// `MAGIC_DEFAULT`, with `MAGIC_ROLL` and `MAGIC_DELETE` as they apply.
    pub magic: i32,
    /// When the unit was written, in milliseconds.
    pub write_time_ms: i64,
    /// The slot's time less `write_time_ms`.
    pub delay_ms: i32,
    /// The timer message's commit-log offset.
    pub offset_py: i64,
    /// The timer message's record size.
    pub size_py: i32,
    /// Java's `String.hashCode` of the message's `REAL_TOPIC` (`crate::record::java_hash`).
    pub topic_hash: i32,
}

impl TimerUnit {
    /// The unit's bytes; the reserved i64 at the end is 0.
    pub fn encode(&self) -> [u8; UNIT_BYTES as usize] {
        debug_assert!(is_magic_ok(self.magic), "unit magic {:#x} has bits above 0xF", self.magic);
        let mut out = [0u8; UNIT_BYTES as usize];
        out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&(UNIT_BYTES as i32).to_be_bytes());
        out[PREV_POS_AT..PREV_POS_AT + 8].copy_from_slice(&self.prev_pos.to_be_bytes());
        out[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(&self.magic.to_be_bytes());
        out[WRITE_TIME_AT..WRITE_TIME_AT + 8].copy_from_slice(&self.write_time_ms.to_be_bytes());
        out[DELAY_AT..DELAY_AT + 4].copy_from_slice(&self.delay_ms.to_be_bytes());
        out[OFFSET_PY_AT..OFFSET_PY_AT + 8].copy_from_slice(&self.offset_py.to_be_bytes());
        out[SIZE_PY_AT..SIZE_PY_AT + 4].copy_from_slice(&self.size_py.to_be_bytes());
        out[TOPIC_HASH_AT..TOPIC_HASH_AT + 4].copy_from_slice(&self.topic_hash.to_be_bytes());
        out
    }

    /// Reads a unit from the first 52 bytes of `bytes`, as RocketMQ's recovery judges one:
    /// `None` when there are fewer bytes, the size field is not 52, or the magic is not OK.
    /// The reserved field is not looked at.
    pub fn decode(bytes: &[u8]) -> Option<TimerUnit> {
        let bytes = bytes.get(..UNIT_BYTES as usize)?;
        let i32_at = |at: usize| i32::from_be_bytes(array_at(bytes, at));
        let i64_at = |at: usize| i64::from_be_bytes(array_at(bytes, at));
        if i32_at(SIZE_AT) != UNIT_BYTES as i32 || !is_magic_ok(i32_at(MAGIC_AT)) {
            return None;
        }
        Some(TimerUnit {
            prev_pos: i64_at(PREV_POS_AT),
            magic: i32_at(MAGIC_AT),
            write_time_ms: i64_at(WRITE_TIME_AT),
            delay_ms: i32_at(DELAY_AT),
            offset_py: i64_at(OFFSET_PY_AT),
            size_py: i32_at(SIZE_PY_AT),
            topic_hash: i32_at(TOPIC_HASH_AT),
        })
    }

    /// The time of the slot the unit sits in: `write_time_ms + delay_ms` (wrapping, as Java's
    /// `long` addition does, so a damaged unit cannot panic a debug build).
    pub fn slot_time(&self) -> i64 {
        self.write_time_ms.wrapping_add(i64::from(self.delay_ms))
    }

    /// Whether the unit could have been written by a timer store: it names a record
    /// (`size_py > 0`). A write torn before byte 40 keeps the size and perhaps the magic of a
    /// unit but leaves zeros after them, which `decode` alone accepts; RocketMQ would put such
    /// a unit in the slot of time 0 pointing at offset 0.
    pub fn is_whole(&self) -> bool {
        self.size_py > 0
    }

    /// Whether the unit carries `MAGIC_ROLL`.
    pub fn is_roll(&self) -> bool {
        self.magic & MAGIC_ROLL != 0
    }

    /// Whether the unit carries `MAGIC_DELETE`.
    pub fn is_delete(&self) -> bool {
        self.magic & MAGIC_DELETE != 0
    }
}

/// The blank written where a unit would leave fewer than `BLANK_BYTES` in its file;
/// `bytes_left` counts from the blank's first byte to the end of the file.
pub fn encode_blank(bytes_left: u64) -> [u8; BLANK_BYTES as usize] {
    let left = i32::try_from(bytes_left).expect("a timer-log file is at most i32::MAX bytes");
    let mut out = [0u8; BLANK_BYTES as usize];
    out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&left.to_be_bytes());
    out[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    out
}

/// Whether the bytes at a unit's position are a blank: RocketMQ looks only at the magic.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.len() >= BLANK_BYTES as usize
        && i32::from_be_bytes(array_at(bytes, MAGIC_AT)) == BLANK_MAGIC
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::broker::timer::MAGIC_DEFAULT;
    use proptest::prelude::*;

    /// Bytes from hex digits, ignoring spaces and line breaks.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        let value = |d: u8| (d as char).to_digit(16).unwrap() as u8;
        digits.chunks(2).map(|pair| value(pair[0]) << 4 | value(pair[1])).collect()
    }

    #[test]
    fn blank_magic_is_computed_as_java_does() {
        let java = (0xBBCC_DDEE_u32 as i32) ^ (1_880_681_586 + 8);
        assert_eq!(java, BLANK_MAGIC);
        assert_eq!(BLANK_MAGIC as u32, 0xCBD4_3194);
    }

    #[test]
    fn topic_hash_is_java_string_hash() {
        assert_eq!(crate::record::java_hash("TopicTest"), -1_902_610_879);
        assert_eq!(crate::record::java_hash(""), 0);
    }

    #[test]
    fn unit_matches_the_format_document() {
        let unit = TimerUnit {
            prev_pos: -1,
            magic: MAGIC_DEFAULT,
            write_time_ms: 1_699_999_990_000,
            delay_ms: 10_000,
            offset_py: 4096,
            size_py: 300,
            topic_hash: crate::record::java_hash("TopicTest"),
        };
        let expected = hex("00000034 ffffffffffffffff 00000001 0000018bcfe540f0 00002710 \
                            0000000000001000 0000012c 8e987641 0000000000000000");
        assert_eq!(unit.encode().to_vec(), expected);
        assert_eq!(TimerUnit::decode(&expected), Some(unit));
        assert_eq!(unit.slot_time(), 1_700_000_000_000);
        assert!(unit.is_whole() && !unit.is_roll() && !unit.is_delete());
    }

    #[test]
    fn decode_refuses_a_bad_size_or_magic() {
        let unit =
            TimerUnit { magic: MAGIC_DEFAULT | MAGIC_ROLL, size_py: 1, ..TimerUnit::default() };
        let bytes = unit.encode();
        assert!(TimerUnit::decode(&bytes[..51]).is_none(), "too short");
        let mut bad_size = bytes;
        bad_size[3] = 53;
        assert!(TimerUnit::decode(&bad_size).is_none());
        let mut bad_magic = bytes;
        bad_magic[MAGIC_AT + 3] = 0x10;
        assert!(TimerUnit::decode(&bad_magic).is_none());
        assert!(TimerUnit::decode(&[0u8; 52]).is_none(), "zeros are no unit");
        let blank = encode_blank(40);
        assert!(is_blank(&blank) && TimerUnit::decode(&[&blank[..], &[0; 36]].concat()).is_none());
        assert!(TimerUnit::decode(&bytes).is_some_and(|u| u.is_roll()));
    }

    proptest! {
        #[test]
        fn units_round_trip(
            prev_pos in any::<i64>(),
            magic in 0..16i32,
            write_time_ms in any::<i64>(),
            delay_ms in any::<i32>(),
            offset_py in any::<i64>(),
            size_py in any::<i32>(),
            topic_hash in any::<i32>(),
        ) {
            let unit = TimerUnit {
                prev_pos, magic, write_time_ms, delay_ms, offset_py, size_py, topic_hash,
            };
            let bytes = unit.encode();
            prop_assert_eq!(TimerUnit::decode(&bytes), Some(unit));
            prop_assert!(!is_blank(&bytes));
            prop_assert_eq!(&bytes[44..], &[0u8; 8][..]);
        }
    }
}
