#!/usr/bin/env bash
# Every test Petrel has, in one command: formatting, lints, unit and integration tests (golden
# cases, tidy, fuzz corpus replay, real processes on loopback), third-party RocketMQ clients,
# then the simulation seeds.
#
#   bash ./scripts/test.sh
#
# Environment:
#   CARGO_TARGET_DIR   build directory (default ./target); simulation builds go to its sim/.
#   SIM_SEEDS          how many seeds of each simulation scenario to run (default 300), from
#                      SIM_SEED_START (1), on SIM_JOBS threads (2); a deeper run is, say,
#                      SIM_SEEDS=5000, or `cargo sim --seeds 1..20001 --jobs 2`.
#   SIM_EXPLORE_SEEDS  how many seeds of each scenario to run from a start derived from the
#                      commit under test (default 1000), so that every commit explores seeds
#                      no earlier run tried; SIM_EXPLORE_START fixes the start instead.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
sim_seeds="${SIM_SEEDS:-300}"
sim_seed_start="${SIM_SEED_START:-1}"
sim_jobs="${SIM_JOBS:-2}"
sim_explore_seeds="${SIM_EXPLORE_SEEDS:-1000}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "unit, integration, golden, tidy, fuzz corpus replay, process tests"
cargo test --workspace 2>&1 | tee -a "$log"

# Real RocketMQ clients from PyPI and npm, installed by the script itself, against the
# `petrel` binary the step above built.
step "third-party clients (PyPI rocketmq, npm ali-ons) against petrel standalone"
bash tests/clients/run.sh "$target_dir/debug/petrel" 2>&1 | tee -a "$log"

step "metrics scraped by a real Prometheus (Debian's package, installed if missing)"
bash tests/prometheus/run.sh "$target_dir/debug/petrel" 2>&1 | tee -a "$log"

step "the web console in headless Chromium (Debian's chromium and chromium-driver, installed if missing)"
bash tests/console/run.sh "$target_dir/debug/petrel" 2>&1 | tee -a "$log"

# The simulation build replaces tokio with madsim (--cfg madsim) and lives in its own target
# directory so the two builds never invalidate each other. It is optimised (the `sim` profile
# keeps debug assertions and overflow checks): its seeds run about ten times faster than in a
# dev build. `cargo sim-release` is this runner; `cargo sim` replays a seed in the dev build.
sim() {
  cargo run --quiet --profile sim --config "build.rustflags=['--cfg','madsim']" \
    --target-dir "$target_dir/sim" -p petrel-sim --bin petrel-sim -- "$@"
}

step "clippy (simulation scenarios and runner, built with --cfg madsim)"
cargo clippy --config "build.rustflags=['--cfg','madsim']" --target-dir "$target_dir/sim" \
  -p petrel-sim --all-targets --quiet -- -D warnings

step "simulation: the checkers' own tests (synthetic histories each checker must pass or fail)"
cargo test --quiet --profile sim --config "build.rustflags=['--cfg','madsim']" \
  --target-dir "$target_dir/sim" -p petrel-sim --lib 2>&1 | tee -a "$log"

step "simulation: $sim_seeds seeds of each scenario from $sim_seed_start, $sim_jobs jobs"
sim --seeds "$sim_seed_start..$((sim_seed_start + sim_seeds))" --jobs "$sim_jobs" \
  --failures "$target_dir/sim-failures.txt" | tee -a "$log"

# New ground for every commit, as continuous simulation runs do: a block of seeds whose start
# comes from the commit's hash (10 000 to about 4.3 billion, clear of the fixed seeds above).
# A failure here fails the run like any other; its replay command is printed with it.
if [ -n "${SIM_EXPLORE_START:-}" ]; then
  explore_start="$SIM_EXPLORE_START"
  explore_from="SIM_EXPLORE_START"
else
  commit="$(git rev-parse HEAD 2>/dev/null || true)"
  if [ -z "$commit" ]; then
    echo "the simulation's exploring block needs the commit's hash: run from a git checkout, or set SIM_EXPLORE_START" >&2
    exit 1
  fi
  explore_start=$((10000 + 0x${commit:0:8}))
  explore_from="commit ${commit:0:12}"
fi
step "simulation: $sim_explore_seeds seeds of each scenario from $explore_start (from $explore_from); replay the block with SIM_EXPLORE_START=$explore_start"
sim --seeds "$explore_start..$((explore_start + sim_explore_seeds))" --jobs "$sim_jobs" \
  --failures "$target_dir/sim-explore-failures.txt" | tee -a "$log"

step "simulation: determinism check (20 seeds of each scenario, one at a time: random draws and event-log hashes of two runs)"
sim --seeds "$sim_seed_start..$((sim_seed_start + 20))" --jobs "$sim_jobs" --check-determinism \
  --failures "$target_dir/sim-nondeterministic.txt" | tee -a "$log"

step "simulation: regression seeds (sim/regressions.txt)"
sim --regressions sim/regressions.txt --jobs "$sim_jobs" \
  --failures "$target_dir/sim-regressions-failed.txt" | tee -a "$log"

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
printf '\nall tests: %s passed, %s failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
