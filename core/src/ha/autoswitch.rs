//! The AutoSwitch HA connection's frames (`docs/failover.md`, "The AutoSwitch HA
//! connection"), big-endian, each led by its state (RocketMQ's `HAConnectionState` ordinal):
//!
//! ```text
//!   slave → master   1 | int16 syncFromLastFile | int16 asyncLearner | int64 brokerId     16 bytes
//!                    2 | int64 offset                                                  12 bytes
//!   master → slave   1 | int32 bodySize | int64 maxOffset | int32 lastEpoch | entries  20 + body
//!                    2 | int32 size | int64 offset | int32 epoch | int64 epochStart
//!                      | int64 confirmOffset | data                                    36 + size
//! ```
//!
//! Every length is checked against its bound when its header is complete, before anything is
//! held for the rest.

use super::codec::{HaFrameError, Transfer, TRANSFER_DATA_MAX};
use super::epoch::{EpochCache, EpochEntry, ENTRIES_MAX, WIRE_ENTRY_BYTES};

/// `HAConnectionState.HANDSHAKE`.
pub const STATE_HANDSHAKE: i32 = 1;
/// `HAConnectionState.TRANSFER`.
pub const STATE_TRANSFER: i32 = 2;

pub const SLAVE_HANDSHAKE_BYTES: usize = 16;
pub const SLAVE_REPORT_BYTES: usize = 12;
pub const MASTER_HANDSHAKE_HEADER_BYTES: usize = 20;
pub const TRANSFER_HEADER_BYTES: usize = 36;

/// What the slave says about itself when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveHello {
    pub broker_id: u64,
    pub sync_from_last_file: bool,
    pub async_learner: bool,
}

/// What the master answers: where its log ends (as far as it sends it) and its epochs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterHello {
    pub end: u64,
    pub epochs: EpochCache,
}

/// A frame the master receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromSlave {
    Hello(SlaveHello),
    Report(u64),
}

/// A frame the slave receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromMaster {
    Hello(MasterHello),
    Transfer(Transfer),
}

pub fn encode_slave_hello(hello: &SlaveHello) -> [u8; SLAVE_HANDSHAKE_BYTES] {
    let mut out = [0u8; SLAVE_HANDSHAKE_BYTES];
    out[..4].copy_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    out[4..6].copy_from_slice(&i16::from(hello.sync_from_last_file).to_be_bytes());
    out[6..8].copy_from_slice(&i16::from(hello.async_learner).to_be_bytes());
    out[8..].copy_from_slice(&hello.broker_id.to_be_bytes());
    out
}

pub fn encode_slave_report(offset: u64) -> [u8; SLAVE_REPORT_BYTES] {
    let mut out = [0u8; SLAVE_REPORT_BYTES];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..].copy_from_slice(&offset.to_be_bytes());
    out
}

/// The master's answer, header and entries, appended to `out`.
pub fn encode_master_hello(hello: &MasterHello, out: &mut Vec<u8>) {
    let body = hello.epochs.entries().len() * WIRE_ENTRY_BYTES;
    out.extend_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    out.extend_from_slice(&(body as i32).to_be_bytes());
    out.extend_from_slice(&hello.end.to_be_bytes());
    out.extend_from_slice(&hello.epochs.last_epoch().unwrap_or(-1).to_be_bytes());
    hello.epochs.encode_wire(out);
}

/// A transfer frame's header: `size` bytes from `offset`, written in `epoch`, follow it.
pub fn encode_transfer_header(
    offset: u64,
    size: u32,
    epoch: EpochEntry,
    confirm: u64,
) -> [u8; TRANSFER_HEADER_BYTES] {
    let mut out = [0u8; TRANSFER_HEADER_BYTES];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..8].copy_from_slice(&size.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    out[16..20].copy_from_slice(&epoch.epoch.to_be_bytes());
    out[20..28].copy_from_slice(&epoch.start.to_be_bytes());
    out[28..].copy_from_slice(&confirm.to_be_bytes());
    out
}

/// Why bytes are not an AutoSwitch frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoSwitchFrameError {
    #[error("a frame in state {0}, which is neither HANDSHAKE (1) nor TRANSFER (2)")]
    State(i32),
    #[error(transparent)]
    Frame(#[from] HaFrameError),
    #[error("a handshake body of {0} bytes is not whole 12-byte epoch entries within the bound")]
    Body(i32),
    #[error("the master's epochs: {0}")]
    Epochs(String),
    #[error("a handshake flag is {0}, neither 0 nor 1")]
    Flag(i16),
}

fn int32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))
}

fn int64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn offset(bytes: &[u8]) -> Result<u64, HaFrameError> {
    let offset = int64(bytes);
    u64::try_from(offset).map_err(|_| HaFrameError::NegativeOffset { offset })
}

/// Bytes received, cut into frames however the network cut them.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held for a frame not yet complete.
    pub fn held(&self) -> usize {
        self.buffer.len()
    }

    fn state(&self) -> Option<i32> {
        self.buffer.get(..4).map(int32)
    }

    /// The next frame from the slave, `None` when more bytes are needed.
    pub fn from_slave(&mut self) -> Result<Option<FromSlave>, AutoSwitchFrameError> {
        let Some(state) = self.state() else { return Ok(None) };
        let bytes = match state {
            STATE_HANDSHAKE => SLAVE_HANDSHAKE_BYTES,
            STATE_TRANSFER => SLAVE_REPORT_BYTES,
            other => return Err(AutoSwitchFrameError::State(other)),
        };
        let Some(frame) = self.buffer.get(..bytes) else { return Ok(None) };
        let parsed = match state {
            STATE_HANDSHAKE => {
                let flag = |at: usize| match i16::from_be_bytes([frame[at], frame[at + 1]]) {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(AutoSwitchFrameError::Flag(other)),
                };
                FromSlave::Hello(SlaveHello {
                    sync_from_last_file: flag(4)?,
                    async_learner: flag(6)?,
                    broker_id: u64::from_be_bytes(frame[8..16].try_into().expect("8 bytes")),
                })
            }
            _ => FromSlave::Report(offset(&frame[4..])?),
        };
        self.buffer.drain(..bytes);
        Ok(Some(parsed))
    }

    /// The next frame from the master, `None` when more bytes are needed.
    pub fn from_master(&mut self) -> Result<Option<FromMaster>, AutoSwitchFrameError> {
        let Some(state) = self.state() else { return Ok(None) };
        let header_bytes = match state {
            STATE_HANDSHAKE => MASTER_HANDSHAKE_HEADER_BYTES,
            STATE_TRANSFER => TRANSFER_HEADER_BYTES,
            other => return Err(AutoSwitchFrameError::State(other)),
        };
        let Some(header) = self.buffer.get(..header_bytes) else { return Ok(None) };
        let size = int32(&header[4..]);
        let body = match state {
            STATE_HANDSHAKE => usize::try_from(size)
                .ok()
                .filter(|b| b % WIRE_ENTRY_BYTES == 0 && *b <= ENTRIES_MAX * WIRE_ENTRY_BYTES)
                .ok_or(AutoSwitchFrameError::Body(size))?,
            _ => match usize::try_from(size) {
                Err(_) => return Err(HaFrameError::NegativeSize { size }.into()),
                Ok(big) if big > TRANSFER_DATA_MAX => {
                    return Err(HaFrameError::TooLarge { size: i64::from(size) }.into())
                }
                Ok(data) => data,
            },
        };
        let start = offset(&header[8..])?;
        let Some(frame) = self.buffer.get(..header_bytes + body) else { return Ok(None) };
        let parsed = match state {
            STATE_HANDSHAKE => {
                let epochs = EpochCache::decode_wire(&frame[header_bytes..], ENTRIES_MAX)
                    .map_err(|e| AutoSwitchFrameError::Epochs(e.to_string()))?;
                FromMaster::Hello(MasterHello { end: start, epochs })
            }
            _ => {
                let epoch = EpochEntry { epoch: int32(&header[16..]), start: int64(&header[20..]) };
                if epoch.epoch < 0 || epoch.start < 0 {
                    let why = format!("a transfer names epoch {epoch:?}");
                    return Err(AutoSwitchFrameError::Epochs(why));
                }
                FromMaster::Transfer(Transfer {
                    offset: start,
                    data: frame[header_bytes..].to_vec(),
                    epoch: Some(epoch),
                    confirm: Some(offset(&header[28..])?),
                })
            }
        };
        self.buffer.drain(..header_bytes + body);
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(entries: &[(i32, i64)]) -> EpochCache {
        let entries = entries.iter().map(|&(epoch, start)| EpochEntry { epoch, start }).collect();
        EpochCache::from_entries(entries).unwrap()
    }

    /// The vectors of docs/failover.md, each decoded byte by byte.
    #[test]
    fn frames_match_the_documented_vectors() {
        let hello = SlaveHello { broker_id: 2, sync_from_last_file: true, async_learner: false };
        let bytes = encode_slave_hello(&hello);
        assert_eq!(bytes, [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let report = encode_slave_report(300);
        assert_eq!(report, [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0x2C]);
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for byte in bytes.iter().chain(&report) {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(frame) = decoder.from_slave().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, [FromSlave::Hello(hello), FromSlave::Report(300)]);

        let answer = MasterHello { end: 8000, epochs: epochs(&[(7, 7000)]) };
        let mut stream = Vec::new();
        encode_master_hello(&answer, &mut stream);
        let expected_answer = [
            0, 0, 0, 1, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0x1F, 0x40, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0,
            0, 0, 0, 0x1B, 0x58,
        ];
        assert_eq!(stream, expected_answer);
        let epoch = EpochEntry { epoch: 7, start: 7000 };
        let header = encode_transfer_header(8000, 3, epoch, 7500);
        let expected_header = [
            0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x1F, 0x40, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0,
            0x1B, 0x58, 0, 0, 0, 0, 0, 0, 0x1D, 0x4C,
        ];
        assert_eq!(header, expected_header);
        stream.extend_from_slice(&header);
        stream.extend_from_slice(&[0xAA, 0xBB, 0xCC]);
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(frame) = decoder.from_master().unwrap() {
                got.push(frame);
            }
        }
        let transfer = Transfer {
            offset: 8000,
            data: vec![0xAA, 0xBB, 0xCC],
            epoch: Some(epoch),
            confirm: Some(7500),
        };
        assert_eq!(got, [FromMaster::Hello(answer), FromMaster::Transfer(transfer)]);
        assert_eq!(decoder.held(), 0);
    }

    /// Bad states, sizes, bodies and flags are refused from the header alone.
    #[test]
    fn bad_frames_are_refused_before_their_body() {
        let refused = |bytes: &[u8], from_master: bool| {
            let mut decoder = Decoder::default();
            decoder.feed(bytes);
            match from_master {
                true => decoder.from_master().unwrap_err(),
                false => decoder.from_slave().unwrap_err(),
            }
        };
        assert_eq!(refused(&[0, 0, 0, 3], true), AutoSwitchFrameError::State(3));
        assert_eq!(refused(&[0, 0, 0, 0], false), AutoSwitchFrameError::State(0));
        let mut hello = encode_slave_hello(&SlaveHello {
            broker_id: 1,
            sync_from_last_file: false,
            async_learner: false,
        });
        hello[5] = 2;
        assert_eq!(refused(&hello, false), AutoSwitchFrameError::Flag(2));
        let mut header = [0u8; MASTER_HANDSHAKE_HEADER_BYTES];
        header[3] = 1;
        header[4..8].copy_from_slice(&13i32.to_be_bytes());
        assert_eq!(refused(&header, true), AutoSwitchFrameError::Body(13));
        let too_many = ((ENTRIES_MAX + 1) * WIRE_ENTRY_BYTES) as i32;
        header[4..8].copy_from_slice(&too_many.to_be_bytes());
        assert_eq!(refused(&header, true), AutoSwitchFrameError::Body(too_many));
        let epoch = EpochEntry { epoch: 1, start: 0 };
        let mut transfer = encode_transfer_header(0, 0, epoch, 0);
        transfer[4..8].copy_from_slice(&(TRANSFER_DATA_MAX as i32 + 1).to_be_bytes());
        let too_large = HaFrameError::TooLarge { size: TRANSFER_DATA_MAX as i64 + 1 };
        assert_eq!(refused(&transfer, true), AutoSwitchFrameError::Frame(too_large));
        transfer[4..8].copy_from_slice(&(-1i32).to_be_bytes());
        let negative = HaFrameError::NegativeSize { size: -1 };
        assert_eq!(refused(&transfer, true), AutoSwitchFrameError::Frame(negative));
        let mut unordered = Vec::new();
        let answer = MasterHello { end: 10, epochs: epochs(&[(1, 0)]) };
        encode_master_hello(&answer, &mut unordered);
        unordered.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        unordered[4..8].copy_from_slice(&24i32.to_be_bytes());
        assert!(matches!(refused(&unordered, true), AutoSwitchFrameError::Epochs(_)));
    }
}
