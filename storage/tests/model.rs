#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
//! Model-based test of the store under crashes and disk faults: random operations against
//! `petrel_storage::model` (which states the promises checked). `PETREL_STORE_CASES` and
//! `PETREL_STORE_SEED` widen or move the search.

use petrel_storage::disk::SimDiskFaults;
use petrel_storage::model::{ModelRun, Op, Setup, TOPICS};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..TOPICS.len(), 0..2i32, 0..1500usize, proptest::option::of(0..3u8), 1..4usize)
            .prop_map(|(topic, queue, len, tag, count)| Op::Append { topic, queue, len, tag, count }),
        3 => Just(Op::Flush),
        3 => Just(Op::Dispatch),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    let ratio = |r: f64| prop_oneof![Just(0.0), Just(r)];
    (any::<u64>(), any::<bool>(), 0..4usize, ratio(0.02), ratio(0.01), ratio(0.01)).prop_map(
        |(seed, sync_flush, torn, fsync, enospc, flips)| Setup {
            seed,
            sync_flush,
            faults: SimDiskFaults {
                torn_write_ratio: [0.0, 0.3, 0.7, 1.0][torn],
                fsync_fail_ratio: fsync,
                enospc_ratio: enospc,
                read_bitflip_ratio: 0.0,
            },
            recovery_bitflip_ratio: flips,
        },
    )
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env("PETREL_STORE_CASES", 2000) as u32,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("PETREL_STORE_SEED", 1)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_across_crashes(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut run = ModelRun::new(&setup);
        for op in &ops {
            run.apply(op);
        }
        run.crash();
    }
}
