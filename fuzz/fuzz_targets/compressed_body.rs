//! Compressed message bodies as a consumer inflates them (zlib, LZ4 frames, Zstandard frames):
//! never a panic, never past the limit, and what inflates compresses back. The logic lives in
//! `petrel_core::compression::fuzz_compressed_body` so the corpus replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_core::compression::fuzz_compressed_body(data);
});
