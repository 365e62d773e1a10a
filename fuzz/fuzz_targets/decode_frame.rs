//! Arbitrary bytes, fed in arbitrary chunks, into the frame decoder: it must never panic, never
//! reserve past the frame cap, and every frame it accepts must re-encode to the same command.
//! The logic lives in `petrel_net::codec::fuzz_decode_frame` so the corpus replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_net::codec::fuzz_decode_frame(data);
});
