//! The epoch file (`epochFileCheckpoint`) and the AutoSwitch handshake's epoch entries, as a
//! broker reads them from its disk and from its master: never a panic, and what decodes
//! encodes back. The logic lives in `petrel_core::ha::epoch::fuzz_epoch_file` so the corpus
//! replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_core::ha::epoch::fuzz_epoch_file(data);
});
