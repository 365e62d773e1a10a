//! Replays every checked-in fuzz input through the fuzz targets' logic, so each past finding
//! stays fixed on stable Rust without cargo-fuzz. New inputs come from
//! `cargo fuzz run -s none decode_frame` (see docs/fuzzing.md).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries.flatten() {
        let data = fs::read(entry.path()).expect("readable corpus file");
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn decode_frame_corpus() {
    let replayed = replay("decode_frame", petrel_net::codec::fuzz_decode_frame);
    assert!(replayed >= 9, "the decode_frame corpus lost its seeds: {replayed} files");
}

#[test]
fn recover_corpus() {
    let replayed = replay("recover", petrel_storage::fuzzing::fuzz_recover);
    assert!(replayed >= 5, "the recover corpus lost its seeds: {replayed} files");
}

#[test]
fn recover_ops_corpus() {
    let replayed = replay("recover_ops", petrel_storage::fuzzing::fuzz_recover_ops);
    assert!(replayed >= 5, "the recover_ops corpus lost its seeds: {replayed} files");
}

#[test]
fn request_bodies_corpus() {
    let replayed = replay("request_bodies", petrel_net::codec::fuzz_request_bodies);
    assert!(replayed >= 5, "the request_bodies corpus lost its seeds: {replayed} files");
}

#[test]
fn epoch_file_corpus() {
    let replayed = replay("epoch_file", petrel_core::ha::epoch::fuzz_epoch_file);
    assert!(replayed >= 5, "the epoch_file corpus lost its seeds: {replayed} files");
}

#[test]
fn raft_state_corpus() {
    let replayed = replay("raft_state", petrel_core::controller::node::fuzz_raft_state);
    assert!(replayed >= 3, "the raft_state corpus lost its seeds: {replayed} files");
}

#[test]
fn sql92_corpus() {
    let replayed = replay("sql92", petrel_core::broker::sql92::fuzz_sql92);
    assert!(replayed >= 20, "the sql92 corpus lost its seeds: {replayed} files");
}

#[test]
fn compressed_body_corpus() {
    let replayed = replay("compressed_body", petrel_core::compression::fuzz_compressed_body);
    assert!(replayed >= 6, "the compressed_body corpus lost its seeds: {replayed} files");
}
