//! SQL92 filter expressions and the properties they are evaluated over: never a panic, a
//! refusal that points inside the expression, the same verdict over encoded and decoded
//! properties. The logic lives in `petrel_core::broker::sql92::fuzz_sql92` so the corpus
//! replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_core::broker::sql92::fuzz_sql92(data);
});
