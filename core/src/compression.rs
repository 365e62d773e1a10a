//! Compressed message bodies, as RocketMQ's producers write them: a body of
//! `compressMsgBodyOverHowmuch` (4096) bytes or more is deflated in zlib's format at
//! `compressLevel` 5, and the record's SYSFLAG says so (`COMPRESSED`, with RocketMQ 5's
//! compression type in bits 8-10: LZ4 1, ZSTD 2, ZLIB 3, and 0 from older clients meaning
//! ZLIB). The broker stores and serves such a body as it came; a consumer inflates it.
//!
//! Inflating is bounded: a body that would grow past the caller's limit is refused before
//! more than that is allocated.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::record::sys_flag;

/// RocketMQ's `compressMsgBodyOverHowmuch`: bodies at least this long are compressed.
pub const COMPRESS_BODY_BYTES_MIN: usize = 4096;
/// RocketMQ's `compressLevel`.
pub const COMPRESS_LEVEL: u32 = 5;
/// RocketMQ 5's compression-type bits of the SYSFLAG.
pub const TYPE_MASK: i32 = 0x7 << 8;
/// The type a producer names when it deflates (`COMPRESSION_ZLIB_TYPE`).
pub const TYPE_ZLIB: i32 = 0x3 << 8;

/// How a body was compressed, by its SYSFLAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zlib,
    Lz4,
    Zstd,
}

impl Codec {
    /// RocketMQ's name for it (`CompressionType`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zlib => "ZLIB",
            Codec::Lz4 => "LZ4",
            Codec::Zstd => "ZSTD",
        }
    }
}

/// Why a compressed body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the body is compressed with {}, which Petrel cannot inflate yet (ZLIB only)", .0.name())]
    Unsupported(Codec),
    #[error("the body's SYSFLAG names compression type {0}, which RocketMQ does not define")]
    UnknownType(i32),
    #[error("the compressed body does not inflate: {0}")]
    Corrupt(String),
    #[error("the body inflates to more than {max} bytes")]
    TooLarge { max: usize },
}

/// The codec a record's SYSFLAG names, or `None` for a body stored as sent.
pub fn codec(flags: i32) -> Result<Option<Codec>, BodyError> {
    if flags & sys_flag::COMPRESSED == 0 {
        return Ok(None);
    }
    match (flags & TYPE_MASK) >> 8 {
        // 0: a client from before the type bits, which only deflated.
        0 | 3 => Ok(Some(Codec::Zlib)),
        1 => Ok(Some(Codec::Lz4)),
        2 => Ok(Some(Codec::Zstd)),
        other => Err(BodyError::UnknownType(other)),
    }
}

/// The body a consumer sees: `body` itself unless `flags` say it is compressed, then the
/// inflated bytes, at most `max` of them.
pub fn inflated(flags: i32, body: &[u8], max: usize) -> Result<Cow<'_, [u8]>, BodyError> {
    match codec(flags)? {
        None => Ok(Cow::Borrowed(body)),
        Some(Codec::Zlib) => inflate_zlib(body, max).map(Cow::Owned),
        Some(other) => Err(BodyError::Unsupported(other)),
    }
}

fn inflate_zlib(body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    // One byte past the limit tells a body that fits exactly from one that does not.
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::ZlibDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLarge { max });
    }
    Ok(out)
}

/// `body` deflated in zlib's format at `level` (0-9), as RocketMQ's `ZlibCompressor` writes it.
pub fn deflate(body: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    let mut encoder = flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zlib.compress(TEXT, 5)` from zlib itself, the library Java's `Deflater` wraps: the
    /// bytes a RocketMQ producer stores for this body.
    const TEXT: &[u8] = b"RocketMQ compresses bodies of 4096 bytes or more with zlib at level 5. \
RocketMQ compresses bodies of 4096 bytes or more with zlib at level 5. ";
    const ZLIB_LEVEL_5: &str = "785e0bca4fce4e2df10d5448cecf2d284a2d2e4e2d5648ca4fc90452f9690a\
260696660a499525205e91426e7e51aa427966498642554e6692426289424e6a596a8e82a99e4210758c0100ee7f3101";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_body_rocketmq_deflated_inflates_under_either_flag() {
        let stored = hex(ZLIB_LEVEL_5);
        for flags in [sys_flag::COMPRESSED, sys_flag::COMPRESSED | TYPE_ZLIB] {
            assert_eq!(inflated(flags, &stored, 1 << 20).as_deref(), Ok(TEXT));
        }
        assert_eq!(inflated(0, &stored, 1 << 20).as_deref(), Ok(&stored[..]), "not flagged");
        assert_eq!(inflated(TYPE_ZLIB, &stored, 1 << 20).as_deref(), Ok(&stored[..]));
    }

    #[test]
    fn what_petrel_deflates_inflates_back() {
        let body: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let stored = deflate(&body, COMPRESS_LEVEL);
        assert!(stored.len() < body.len() / 2, "{} bytes", stored.len());
        assert_eq!(stored[0], 0x78, "a zlib header");
        let flags = sys_flag::COMPRESSED | TYPE_ZLIB;
        assert_eq!(inflated(flags, &stored, body.len()).as_deref(), Ok(&body[..]));
    }

    #[test]
    fn a_body_that_inflates_past_the_limit_is_refused() {
        let stored = deflate(&vec![0u8; 1 << 20], 9);
        let flags = sys_flag::COMPRESSED;
        assert_eq!(
            inflated(flags, &stored, (1 << 20) - 1),
            Err(BodyError::TooLarge { max: (1 << 20) - 1 })
        );
        assert_eq!(inflated(flags, &stored, 1 << 20).map(|b| b.len()), Ok(1 << 20));
    }

    #[test]
    fn bad_bodies_and_types_are_named() {
        let flags = sys_flag::COMPRESSED;
        assert!(matches!(inflated(flags, b"not zlib", 1024), Err(BodyError::Corrupt(_))));
        let stored = hex(ZLIB_LEVEL_5);
        for cut in [2, stored.len() / 2, stored.len() - 1] {
            let truncated = inflated(flags, &stored[..cut], 1024);
            assert!(matches!(truncated, Err(BodyError::Corrupt(_))), "cut at {cut}: {truncated:?}");
        }
        let lz4 = sys_flag::COMPRESSED | (1 << 8);
        assert_eq!(inflated(lz4, b"x", 1024), Err(BodyError::Unsupported(Codec::Lz4)));
        let zstd = sys_flag::COMPRESSED | (2 << 8);
        assert_eq!(inflated(zstd, b"x", 1024), Err(BodyError::Unsupported(Codec::Zstd)));
        let unknown = sys_flag::COMPRESSED | (5 << 8);
        assert_eq!(inflated(unknown, b"x", 1024), Err(BodyError::UnknownType(5)));
    }
}
