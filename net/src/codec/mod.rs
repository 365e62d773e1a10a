//! The remoting protocol's pure codec: frames, headers, codes and RocketMQ's JSON.
//!
//! A frame is `int32 total | int32 (serializeType << 24 | headerLength) | header | body`, where
//! `total` counts everything after itself (`docs/protocol.md` has the byte diagram and the test
//! vectors). Decoding is two-phase: [`decode_frame`] answers `Ok(None)` until a whole frame is
//! buffered, and checks the announced length against the cap before reserving anything for it.
//!
//! No I/O here: the transport in `crate::transport` feeds bytes in and writes bytes out.

pub mod codes;
pub mod command;
mod fields;
mod fuzzing;
pub mod header;
pub mod json;

use bytes::{Buf, BytesMut};

pub use command::{ExtFields, RemotingCommand, SerializeType};
pub use fuzzing::fuzz_request_bodies;

/// Largest frame accepted unless configured otherwise (RocketMQ `frameMaxLength`, 16 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// Largest header: the header length field has 24 bits.
pub const HEADER_BYTES_MAX: usize = (1 << 24) - 1;

/// The two length words at the start of every frame.
pub const FRAME_PREFIX_BYTES: usize = 8;

/// Why bytes are not a frame. Any of these closes the connection that sent them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced frame length is over the cap.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    OverLimit { len: usize, max: usize },
    /// The announced frame length cannot hold the header-length word.
    #[error("frame length {len} is too short to hold a header length")]
    TooShort { len: i64 },
    /// A frame to be sent does not fit the 32-bit length word.
    #[error("frame of {len} bytes does not fit the length field")]
    TooLong { len: usize },
    /// The header length runs past the frame's end.
    #[error("header length {header} does not fit in a frame of {frame} bytes")]
    HeaderOutOfFrame { header: usize, frame: usize },
    /// A header to be sent is over the 24-bit header length.
    #[error("header of {len} bytes is over the 24-bit header length")]
    HeaderTooLong { len: usize },
    /// The serialize type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown serialize type {0}")]
    SerializeType(u8),
    /// The JSON header does not parse.
    #[error("malformed JSON header: {0}")]
    Json(String),
    /// A binary header's length field runs past the header's end.
    #[error("binary header needs {needed} more bytes but has {left}")]
    BinaryHeader { needed: usize, left: usize },
    /// A string in a binary header is not UTF-8.
    #[error("binary header string is not UTF-8")]
    Utf8,
    /// The code does not fit the binary header's 16-bit code field.
    #[error("request code {0} does not fit a ROCKETMQ binary header")]
    CodeNotBinary(i32),
}

/// Takes one whole frame off the front of `buf`, or answers `Ok(None)` when more bytes are
/// needed. `frame_bytes_max` bounds the announced length (not counting the length word itself)
/// before anything is reserved for it.
pub fn decode_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<RemotingCommand>, FrameError> {
    let Some(total) = check_frame(buf, frame_bytes_max)? else { return Ok(None) };
    let mut frame = buf.split_to(4 + total).freeze();
    frame.advance(4);
    let word = frame.get_u32();
    let serialize_type = match (word >> 24) as u8 {
        0 => SerializeType::Json,
        1 => SerializeType::RocketMq,
        other => return Err(FrameError::SerializeType(other)),
    };
    let header_len = (word & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(FrameError::HeaderOutOfFrame { header: header_len, frame: total });
    }
    let header = frame.split_to(header_len);
    RemotingCommand::decode(serialize_type, &header, frame).map(Some)
}

/// The cheap first phase: is a whole, acceptable frame buffered? Returns its length (after the
/// length word). Reserves room for the rest of a frame it has accepted.
pub fn check_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let announced = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if announced < 4 {
        return Err(FrameError::TooShort { len: i64::from(announced) });
    }
    let total = announced as usize;
    if total > frame_bytes_max {
        return Err(FrameError::OverLimit { len: total, max: frame_bytes_max });
    }
    if buf.len() < 4 + total {
        buf.reserve(4 + total - buf.len());
        return Ok(None);
    }
    Ok(Some(total))
}

/// The body of the `decode_frame` fuzz target, kept here so a normal test replays its corpus:
/// feed arbitrary bytes in arbitrary chunks; decoding must never panic, never reserve more than
/// the cap, and every frame it accepts must encode and decode back to itself.
pub fn fuzz_decode_frame(data: &[u8]) {
    const CAP: usize = 64 * 1024;
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut buf = BytesMut::new();
    for piece in data.get(1..).unwrap_or_default().chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decode_frame(&mut buf, CAP) {
                Ok(Some(command)) => assert_round_trip(&command),
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(buf.capacity() <= 2 * (CAP + 4) + data.len(), "reserved past the cap");
        }
    }
}

fn assert_round_trip(command: &RemotingCommand) {
    // A binary header cannot carry a null remark distinct from an empty one, nor can JSON
    // carry a code that would not fit: compare what the encoding can express.
    let Ok(frame) = command.encode_frame() else { return };
    let mut again = BytesMut::from(&frame[..]);
    let back = decode_frame(&mut again, usize::MAX).expect("re-encoded frame decodes");
    let back = back.expect("re-encoded frame is whole");
    assert_eq!(back.code, command.code);
    assert_eq!(back.opaque, command.opaque);
    assert_eq!(back.flag, command.flag);
    assert_eq!(back.ext_fields, command.ext_fields);
    assert_eq!(back.body, command.body);
}
