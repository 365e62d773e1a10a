//! The controller's raft state file, as a restarting controller reads it from its disk: never a
//! panic, never an allocation past the file's size, and what decodes encodes to the same
//! bytes. The logic lives in `petrel_core::controller::node::fuzz_raft_state` so the corpus
//! replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_core::controller::node::fuzz_raft_state(data);
});
