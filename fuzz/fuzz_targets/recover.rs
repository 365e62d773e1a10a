//! Arbitrary bytes as a store directory: recovery must not panic, must keep no record that fails
//! its checks and no unit past the log's end, and must be idempotent. The logic lives in
//! `petrel_storage::fuzzing::fuzz_recover` so the corpus replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_storage::fuzzing::fuzz_recover(data);
});
