//! The HA connection's two frames (`docs/replication.md`), big-endian:
//!
//! ```text
//!   slave → master   int64 maxPhyOffset                          8 bytes
//!   master → slave   int64 offset | int32 size | data[size]      12 + size bytes (size 0: heartbeat)
//! ```

use super::epoch::EpochEntry;

/// Bytes of the slave's offset report.
pub const REPORT_BYTES: usize = 8;

/// Bytes of a transfer frame's header.
pub const TRANSFER_HEADER_BYTES: usize = 12;

/// The most data a transfer frame may carry before it is refused unread (the remoting frame
/// limit; RocketMQ's default batch is 32 KiB).
pub const TRANSFER_DATA_MAX: usize = 16 * 1024 * 1024;

/// The slave's report of where its commit log ends.
pub fn encode_report(offset: u64) -> [u8; REPORT_BYTES] {
    offset.to_be_bytes()
}

/// A transfer frame's header: `size` bytes of the commit log from `offset` follow it.
pub fn encode_transfer_header(offset: u64, size: u32) -> [u8; TRANSFER_HEADER_BYTES] {
    let mut header = [0u8; TRANSFER_HEADER_BYTES];
    header[..8].copy_from_slice(&offset.to_be_bytes());
    header[8..].copy_from_slice(&size.to_be_bytes());
    header
}

/// Why bytes from the peer are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HaFrameError {
    #[error("a transfer frame claims {size} bytes, over the limit of {TRANSFER_DATA_MAX}")]
    TooLarge { size: i64 },
    #[error("a transfer frame claims a negative size {size}")]
    NegativeSize { size: i32 },
    #[error("a report or frame names the negative offset {offset}")]
    NegativeOffset { offset: i64 },
}

/// Reads the slave's reports from the bytes the master receives, however they were cut by
/// the network: like RocketMQ's master, the newest complete report counts.
#[derive(Debug, Default)]
pub struct ReportDecoder {
    partial: [u8; REPORT_BYTES],
    held: usize,
}

impl ReportDecoder {
    /// Takes `bytes` and returns the newest report they complete, if any.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Option<u64>, HaFrameError> {
        let mut newest = None;
        while !bytes.is_empty() {
            let take = (REPORT_BYTES - self.held).min(bytes.len());
            self.partial[self.held..self.held + take].copy_from_slice(&bytes[..take]);
            self.held += take;
            bytes = &bytes[take..];
            if self.held == REPORT_BYTES {
                self.held = 0;
                let offset = i64::from_be_bytes(self.partial);
                if offset < 0 {
                    return Err(HaFrameError::NegativeOffset { offset });
                }
                newest = Some(offset as u64);
            }
        }
        Ok(newest)
    }
}

/// One frame from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub offset: u64,
    /// Commit-log bytes from `offset`; empty for a heartbeat.
    pub data: Vec<u8>,
    /// The epoch the bytes were written in (AutoSwitch frames only).
    pub epoch: Option<EpochEntry>,
    /// The master's confirm offset when it sent the frame (AutoSwitch frames only).
    pub confirm: Option<u64>,
}

impl Transfer {
    /// A classic frame: bytes and their offset, nothing more.
    pub fn classic(offset: u64, data: Vec<u8>) -> Transfer {
        Transfer { offset, data, epoch: None, confirm: None }
    }
}

/// Reads the master's frames from the bytes the slave receives. A frame's size is checked
/// when its header is complete, before any of its data is held.
#[derive(Debug, Default)]
pub struct TransferDecoder {
    buffer: Vec<u8>,
}

impl TransferDecoder {
    /// Takes `bytes`; call [`TransferDecoder::next_frame`] until it returns `None`.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Transfer>, HaFrameError> {
        let Some(header) = self.buffer.get(..TRANSFER_HEADER_BYTES) else { return Ok(None) };
        let offset = i64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(header[8..].try_into().expect("4 bytes"));
        if offset < 0 {
            return Err(HaFrameError::NegativeOffset { offset });
        }
        if size < 0 {
            return Err(HaFrameError::NegativeSize { size });
        }
        let size = size as usize;
        if size > TRANSFER_DATA_MAX {
            return Err(HaFrameError::TooLarge { size: size as i64 });
        }
        if self.buffer.len() < TRANSFER_HEADER_BYTES + size {
            return Ok(None);
        }
        let data = self.buffer[TRANSFER_HEADER_BYTES..TRANSFER_HEADER_BYTES + size].to_vec();
        self.buffer.drain(..TRANSFER_HEADER_BYTES + size);
        Ok(Some(Transfer::classic(offset as u64, data)))
    }

    /// Bytes held for a frame not yet complete.
    pub fn held(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of docs/replication.md.
    #[test]
    fn frames_match_the_documented_vectors() {
        assert_eq!(encode_report(1 << 32), [0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(encode_report(300), [0, 0, 0, 0, 0, 0, 0x01, 0x2C]);
        assert_eq!(encode_transfer_header(1024, 0), [0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let mut frame = encode_transfer_header(0x4000_0000, 3).to_vec();
        frame.extend_from_slice(&[0xAA, 0xBB, 0xCC]);
        assert_eq!(frame, [0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 3, 0xAA, 0xBB, 0xCC]);
        let mut decoder = TransferDecoder::default();
        decoder.feed(&frame);
        let transfer = decoder.next_frame().unwrap().unwrap();
        assert_eq!(transfer, Transfer::classic(0x4000_0000, vec![0xAA, 0xBB, 0xCC]));
    }

    #[test]
    fn reports_are_read_whatever_the_cuts_and_the_newest_counts() {
        let mut stream = Vec::new();
        for offset in [5u64, 700, 1 << 40] {
            stream.extend_from_slice(&encode_report(offset));
        }
        for cut in 0..=stream.len() {
            let mut decoder = ReportDecoder::default();
            let first = decoder.feed(&stream[..cut]).unwrap();
            let second = decoder.feed(&stream[cut..]).unwrap();
            assert_eq!(second.or(first), Some(1 << 40), "cut at {cut}");
            if (8..16).contains(&cut) {
                assert_eq!(first, Some(5));
            }
        }
        let mut decoder = ReportDecoder::default();
        assert_eq!(decoder.feed(&[0xFF; 8]), Err(HaFrameError::NegativeOffset { offset: -1 }));
    }

    #[test]
    fn frames_are_read_byte_by_byte_and_bad_sizes_refused_unread() {
        let mut stream = encode_transfer_header(8, 4).to_vec();
        stream.extend_from_slice(b"abcd");
        stream.extend_from_slice(&encode_transfer_header(12, 0));
        let mut decoder = TransferDecoder::default();
        let mut frames = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        let expected =
            vec![Transfer::classic(8, b"abcd".to_vec()), Transfer::classic(12, Vec::new())];
        assert_eq!(frames, expected);
        assert_eq!(decoder.held(), 0);

        let mut decoder = TransferDecoder::default();
        decoder.feed(&encode_transfer_header(0, TRANSFER_DATA_MAX as u32 + 1));
        let too_large = HaFrameError::TooLarge { size: TRANSFER_DATA_MAX as i64 + 1 };
        assert_eq!(decoder.next_frame(), Err(too_large));
        let mut decoder = TransferDecoder::default();
        decoder.feed(&encode_transfer_header(0, u32::MAX));
        assert_eq!(decoder.next_frame(), Err(HaFrameError::NegativeSize { size: -1 }));
    }
}
