//! Compressed message bodies, as RocketMQ's producers write them: a body of
//! `compressMsgBodyOverHowmuch` (4096) bytes or more is compressed, and the record's SYSFLAG
//! says so (`COMPRESSED`, with RocketMQ 5's compression type in bits 8-10: LZ4 1, ZSTD 2,
//! ZLIB 3, and 0 from older clients meaning ZLIB). Every client deflates in zlib's format at
//! `compressLevel` 5 unless a Java 5 producer is set to another type
//! (`rocketmq.message.compressType`): LZ4 then writes an LZ4 frame (lz4-java's
//! `LZ4FrameOutputStream`), ZSTD a Zstandard frame (zstd-jni's `ZstdOutputStream`). The
//! broker stores and serves such a body as it came; a consumer inflates it.
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
/// The largest Zstandard window a body may ask for whatever the caller's limit: 8 MiB, what
/// zstd's levels up to 19 use for a stream of unknown length, as zstd-jni's are.
const ZSTD_WINDOW_BYTES_MIN: usize = 8 << 20;

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

    /// The SYSFLAG bits of a body compressed so: `COMPRESSED` and its type.
    pub fn flags(self) -> i32 {
        let kind = match self {
            Codec::Lz4 => 1,
            Codec::Zstd => 2,
            Codec::Zlib => 3,
        };
        sys_flag::COMPRESSED | kind << 8
    }
}

/// Why a compressed body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the body's SYSFLAG names compression type {0}, which RocketMQ does not define")]
    UnknownType(i32),
    #[error("the {} body does not inflate: {detail}", .codec.name())]
    Corrupt { codec: Codec, detail: String },
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
    let Some(codec) = codec(flags)? else {
        return Ok(Cow::Borrowed(body));
    };
    let corrupt = |e: &dyn std::fmt::Display| BodyError::Corrupt { codec, detail: e.to_string() };
    let out = match codec {
        Codec::Zlib => read_bounded(flate2::read::ZlibDecoder::new(body), body.len(), max),
        Codec::Lz4 => {
            // The decoder takes a frame cut at a block's end for a whole one.
            lz4_frames_end(body).map_err(|e| corrupt(&e))?;
            read_bounded(lz4_flex::frame::FrameDecoder::new(body), body.len(), max)
        }
        Codec::Zstd => {
            let window = u64::try_from(max.max(ZSTD_WINDOW_BYTES_MIN)).unwrap_or(u64::MAX);
            let decoder =
                ruzstd::decoding::StreamingDecoder::new_with_max_window_size(body, window)
                    .map_err(|e| corrupt(&e))?;
            read_bounded(decoder, body.len(), max)
        }
    };
    let out = out.map_err(|e| corrupt(&e))?;
    if out.len() > max {
        return Err(BodyError::TooLarge { max });
    }
    Ok(Cow::Owned(out))
}

/// Everything `decoder` gives, but no more than one byte past `max`: that byte tells a body
/// that fits exactly from one that does not.
fn read_bounded(decoder: impl Read, stored: usize, max: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(stored.saturating_mul(4).min(max));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Whether `body`'s LZ4 frames each run to their end mark (and content checksum, if they
/// have one): the frame format's block sizes walked, no byte decoded.
fn lz4_frames_end(body: &[u8]) -> Result<(), &'static str> {
    const CUT: &str = "the LZ4 frame is cut short";
    let take = |at: &mut usize, n: usize| -> Result<usize, &'static str> {
        let start = *at;
        *at = start.checked_add(n).filter(|&end| end <= body.len()).ok_or(CUT)?;
        Ok(start)
    };
    let word = |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let mut at = 0;
    while at < body.len() {
        let magic = take(&mut at, 4)?;
        if word(magic) != 0x184d_2204 {
            return Err("no LZ4 frame's magic number where a frame starts");
        }
        let flg = body[take(&mut at, 2)?];
        let content_size = if flg & 0x08 != 0 { 8 } else { 0 };
        let dictionary = if flg & 0x01 != 0 { 4 } else { 0 };
        take(&mut at, content_size + dictionary + 1)?;
        let block_checksum = if flg & 0x10 != 0 { 4 } else { 0 };
        loop {
            let size = word(take(&mut at, 4)?);
            if size == 0 {
                break;
            }
            take(&mut at, (size & 0x7fff_ffff) as usize + block_checksum)?;
        }
        if flg & 0x04 != 0 {
            take(&mut at, 4)?;
        }
    }
    Ok(())
}

/// `body` compressed by `codec` as a RocketMQ producer set to it writes it; `level` (0-9) is
/// zlib's. LZ4 frames have no level (lz4-java's frame writer has none either); ZSTD frames
/// are written at zstd's fastest level, the one its pure-Rust encoder has, whatever `level`
/// says: any Zstandard decoder reads them.
pub fn compress(codec: Codec, body: &[u8], level: u32) -> Vec<u8> {
    match codec {
        Codec::Zlib => deflate(body, level),
        Codec::Lz4 => {
            let out = Vec::with_capacity(body.len() / 2 + 64);
            let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(body);
            encoder.finish().unwrap_or_default()
        }
        Codec::Zstd => {
            ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

/// `body` deflated in zlib's format at `level` (0-9), as RocketMQ's `ZlibCompressor` writes it.
pub fn deflate(body: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    let mut encoder = flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level.min(9)));
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// The fuzz target `compressed_body`'s logic, here so its corpus replays in `cargo test`: the
/// first byte picks the SYSFLAG's type (none, LZ4, ZSTD, ZLIB, or one RocketMQ does not
/// define), the rest is a stored body. Never a panic; never more than the limit handed over;
/// what inflates compresses back to bytes that inflate to it again.
pub fn fuzz_compressed_body(data: &[u8]) {
    // Small, so that a bomb costs the fuzzer little to compress back.
    const MAX: usize = 64 << 10;
    let Some((&kind, stored)) = data.split_first() else { return };
    let flags = match kind % 5 {
        0 => 0,
        n => sys_flag::COMPRESSED | i32::from(n) << 8 | i32::from(kind & 0x80 != 0) << 10,
    };
    let Ok(body) = inflated(flags, stored, MAX) else { return };
    assert!(body.len() <= MAX, "{} bytes inflated past the limit", body.len());
    let Ok(Some(codec)) = codec(flags) else { return };
    let again = compress(codec, &body, COMPRESS_LEVEL);
    assert_eq!(inflated(codec.flags(), &again, MAX).as_deref(), Ok(&body[..]));
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
    fn a_body_that_inflates_past_the_limit_is_refused() {
        let stored = deflate(&vec![0u8; 1 << 20], 9);
        let flags = sys_flag::COMPRESSED;
        assert_eq!(
            inflated(flags, &stored, (1 << 20) - 1),
            Err(BodyError::TooLarge { max: (1 << 20) - 1 })
        );
        assert_eq!(inflated(flags, &stored, 1 << 20).map(|b| b.len()), Ok(1 << 20));
    }

    /// The same text as Java's LZ4 and ZSTD writers frame it, made by the reference tools
    /// with those writers' settings: `lz4 -B7 --no-frame-crc` (v1.9.4: 4 MiB independent
    /// blocks, no checksums, as lz4-java's `LZ4FrameOutputStream`) and `zstd -5 --no-check`
    /// from standard input (v1.5.4: no content size, no checksum, as zstd-jni's
    /// `ZstdOutputStream` at RocketMQ's level 5).
    const LZ4_FRAME: &str = "04224d1860408252000000f017526f636b65744d5120636f6d707265737365732\
0626f64696573206f662034303936206279740e00ff0e72206d6f72652077697468207a6c6962206174206c6576656c\
20352e2047002f506c20352e2000000000";
    const ZSTD_FRAME: &str = "28b52ffd00585d02007244101980c5e9118c61b773a3c5c0bf60d76a85d0800631d\
c0ddaa1010fc6ab82ae9319a955f84935b8edd8edc626017d2044b173635573682c625b805d5a49b280744b01000729688802";

    #[test]
    fn bodies_java_compressed_as_lz4_and_zstd_inflate() {
        for (kind, stored) in [(Codec::Lz4, LZ4_FRAME), (Codec::Zstd, ZSTD_FRAME)] {
            let stored = hex(stored);
            assert_eq!(inflated(kind.flags(), &stored, 1 << 20).as_deref(), Ok(TEXT), "{kind:?}");
            assert_eq!(codec(kind.flags()), Ok(Some(kind)));
        }
        assert_eq!(Codec::Lz4.flags(), 0x101);
        assert_eq!(Codec::Zstd.flags(), 0x201);
        assert_eq!(Codec::Zlib.flags(), sys_flag::COMPRESSED | TYPE_ZLIB);
    }

    #[test]
    fn what_petrel_compresses_inflates_back_in_every_codec() {
        let body: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Codec::Zlib, Codec::Lz4, Codec::Zstd] {
            let stored = compress(codec, &body, COMPRESS_LEVEL);
            assert!(stored.len() < body.len() / 2, "{codec:?}: {} bytes", stored.len());
            assert_eq!(codec == Codec::Zlib, stored[0] == 0x78, "{codec:?}: a zlib header or not");
            let back = inflated(codec.flags(), &stored, body.len());
            assert_eq!(back.as_deref(), Ok(&body[..]), "{codec:?}");
            let short = inflated(codec.flags(), &stored, body.len() - 1);
            assert_eq!(short, Err(BodyError::TooLarge { max: body.len() - 1 }), "{codec:?}");
        }
    }

    #[test]
    fn a_zstd_window_past_the_limit_is_refused_before_it_is_allocated() {
        // A frame header asking for a 2 GiB window (window descriptor 0xa8: 2^(10 + 21)).
        let hostile = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00];
        let refused = inflated(Codec::Zstd.flags(), &hostile, 1 << 20);
        assert!(
            matches!(refused, Err(BodyError::Corrupt { codec: Codec::Zstd, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn bad_bodies_and_types_are_named() {
        for codec in [Codec::Zlib, Codec::Lz4, Codec::Zstd] {
            let garbage = inflated(codec.flags(), b"not a compressed body", 1024);
            assert!(
                matches!(garbage, Err(BodyError::Corrupt { codec: c, .. }) if c == codec),
                "{codec:?}: {garbage:?}"
            );
            let stored = compress(codec, TEXT, COMPRESS_LEVEL);
            for cut in [2, stored.len() / 2, stored.len() - 4, stored.len() - 1] {
                let truncated = inflated(codec.flags(), &stored[..cut], 1024);
                let message = truncated.as_ref().map_err(|e| e.to_string());
                assert!(
                    matches!(truncated, Err(BodyError::Corrupt { .. })),
                    "{codec:?} cut at {cut}: {message:?}"
                );
            }
        }
        let flags = sys_flag::COMPRESSED;
        let error = inflated(flags, b"not zlib", 1024).map(|_| ()).map_err(|e| e.to_string());
        assert!(matches!(&error, Err(text) if text.starts_with("the ZLIB body does not inflate")));
        let unknown = sys_flag::COMPRESSED | (5 << 8);
        assert_eq!(inflated(unknown, b"x", 1024), Err(BodyError::UnknownType(5)));
    }
}
