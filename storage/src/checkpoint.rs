//! The `checkpoint` file: one 4 KiB page saying how far the store was durable.
//!
//! RocketMQ's five fields sit at the start; Petrel's exact offsets follow in bytes RocketMQ
//! leaves zero, sealed by a CRC, so a RocketMQ broker reads Petrel's checkpoint and Petrel
//! falls back to RocketMQ's timestamps when the extension is absent or damaged
//! (`docs/storage-format.md` §7). Pure: bytes in, bytes out.

/// RocketMQ maps one OS page for the checkpoint.
pub const CHECKPOINT_BYTES: usize = 4096;
/// "PETRELCP": marks Petrel's extension fields.
pub const EXTENSION_MAGIC: u64 = 0x5045_5452_454C_4350;
const EXTENSION_CRC_AT: usize = 64;

/// The checkpoint's fields. Timestamps are milliseconds; zero means never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Store time of the last commit-log record known flushed.
    pub physic_msg_timestamp: i64,
    /// Store time of the last record whose consume-queue unit is known flushed.
    pub logics_msg_timestamp: i64,
    /// Store time of the last record whose index entries are known flushed.
    pub index_msg_timestamp: i64,
    pub master_flushed_offset: i64,
    pub confirm_phy_offset: i64,
    /// Petrel: every commit-log byte below this was fdatasync'ed.
    pub commit_log_flushed_offset: Option<u64>,
    /// Petrel: every consume-queue unit (and index entry) of records below this was
    /// fdatasync'ed.
    pub dispatched_flushed_offset: Option<u64>,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; CHECKPOINT_BYTES] {
        let mut page = [0u8; CHECKPOINT_BYTES];
        page[0..8].copy_from_slice(&self.physic_msg_timestamp.to_be_bytes());
        page[8..16].copy_from_slice(&self.logics_msg_timestamp.to_be_bytes());
        page[16..24].copy_from_slice(&self.index_msg_timestamp.to_be_bytes());
        page[24..32].copy_from_slice(&self.master_flushed_offset.to_be_bytes());
        page[32..40].copy_from_slice(&self.confirm_phy_offset.to_be_bytes());
        if let (Some(log), Some(dispatched)) =
            (self.commit_log_flushed_offset, self.dispatched_flushed_offset)
        {
            page[40..48].copy_from_slice(&EXTENSION_MAGIC.to_be_bytes());
            page[48..56].copy_from_slice(&log.to_be_bytes());
            page[56..64].copy_from_slice(&dispatched.to_be_bytes());
            let crc = crc32fast::hash(&page[..EXTENSION_CRC_AT]);
            page[EXTENSION_CRC_AT..EXTENSION_CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        }
        page
    }

    /// Reads a checkpoint page; a short page reads as zeros past its end, and Petrel's fields
    /// count only with their magic and a matching CRC.
    pub fn decode(bytes: &[u8]) -> Checkpoint {
        let mut page = [0u8; CHECKPOINT_BYTES];
        let n = bytes.len().min(CHECKPOINT_BYTES);
        page[..n].copy_from_slice(&bytes[..n]);
        let i64_at = |at: usize| i64::from_be_bytes(page_array(&page, at));
        let u64_at = |at: usize| u64::from_be_bytes(page_array(&page, at));
        let stored_crc = u32::from_be_bytes(page_array(&page, EXTENSION_CRC_AT));
        let extended = u64_at(40) == EXTENSION_MAGIC
            && crc32fast::hash(&page[..EXTENSION_CRC_AT]) == stored_crc;
        Checkpoint {
            physic_msg_timestamp: i64_at(0),
            logics_msg_timestamp: i64_at(8),
            index_msg_timestamp: i64_at(16),
            master_flushed_offset: i64_at(24),
            confirm_phy_offset: i64_at(32),
            commit_log_flushed_offset: extended.then(|| u64_at(48)),
            dispatched_flushed_offset: extended.then(|| u64_at(56)),
        }
    }

    /// RocketMQ's `getMinTimestamp`: the older of the commit-log and consume-queue times, less
    /// three seconds for records stored out of timestamp order.
    pub fn min_timestamp(&self) -> i64 {
        let min = self.physic_msg_timestamp.min(self.logics_msg_timestamp);
        min.saturating_sub(3_000).max(0)
    }
}

fn page_array<const N: usize>(page: &[u8; CHECKPOINT_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&page[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_extension() {
        let mut checkpoint = Checkpoint {
            physic_msg_timestamp: 1_700_000_000_123,
            logics_msg_timestamp: 1_700_000_000_100,
            index_msg_timestamp: 1_700_000_000_050,
            ..Checkpoint::default()
        };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), checkpoint);
        checkpoint.commit_log_flushed_offset = Some(4096);
        checkpoint.dispatched_flushed_offset = Some(1024);
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), checkpoint);
        assert_eq!(checkpoint.min_timestamp(), 1_700_000_000_100 - 3_000);
    }

    #[test]
    fn damaged_extension_falls_back_to_timestamps() {
        let checkpoint = Checkpoint {
            physic_msg_timestamp: 5_000,
            commit_log_flushed_offset: Some(4096),
            dispatched_flushed_offset: Some(1024),
            ..Checkpoint::default()
        };
        let mut page = checkpoint.encode();
        page[50] ^= 1;
        let read = Checkpoint::decode(&page);
        assert_eq!(read.commit_log_flushed_offset, None);
        assert_eq!(read.physic_msg_timestamp, 5_000);
        assert_eq!(Checkpoint::decode(&[]), Checkpoint::default());
    }
}
