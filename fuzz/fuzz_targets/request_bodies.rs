//! The bodies and header values a broker decodes from clients (batch bodies, heartbeats,
//! subscription expressions, delayed messages' properties, delay levels): never a panic, and
//! what decodes encodes back. The logic lives in `petrel_net::codec::fuzz_request_bodies` so the
//! corpus replays in `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_net::codec::fuzz_request_bodies(data);
});
