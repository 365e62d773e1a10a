//! Arbitrary bytes as a run of the store against its model: appends, flushes, crashes with
//! disk faults, restarts; every promise of `petrel_storage::model` is checked after each
//! recovery. The logic lives in `petrel_storage::fuzzing::fuzz_recover_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_storage::fuzzing::fuzz_recover_ops(data);
});
