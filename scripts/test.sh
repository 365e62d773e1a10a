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
#                      SIM_SEED_START (1); a deeper run is, say, SIM_SEEDS=5000.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
sim_seeds="${SIM_SEEDS:-300}"
sim_seed_start="${SIM_SEED_START:-1}"
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

# The simulation build replaces tokio with madsim (--cfg madsim) and lives in its own target
# directory so the two builds never invalidate each other (this is what `cargo simtest` does).
sim() {
  cargo test --config "build.rustflags=['--cfg','madsim']" --target-dir "$target_dir/sim" \
    -p petrel-sim "$@"
}

step "clippy (simulation scenarios, built with --cfg madsim)"
cargo clippy --config "build.rustflags=['--cfg','madsim']" --target-dir "$target_dir/sim" \
  -p petrel-sim --all-targets --quiet -- -D warnings

step "simulation: $sim_seeds seeds of each scenario from $sim_seed_start"
MADSIM_TEST_SEED="$sim_seed_start" MADSIM_TEST_NUM="$sim_seeds" sim 2>&1 | tee -a "$log"

step "simulation: determinism check (each seed twice, traces must agree)"
MADSIM_TEST_SEED="$sim_seed_start" MADSIM_TEST_NUM=20 MADSIM_TEST_CHECK_DETERMINISM=1 sim 2>&1 | tee -a "$log"

step "simulation: regression seeds"
while read -r seed _; do
  case "$seed" in ''|'#'*) continue ;; esac
  MADSIM_TEST_SEED="$seed" MADSIM_TEST_NUM=1 sim 2>&1 | tee -a "$log"
done < sim/regressions.txt

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
printf '\nall tests: %s passed, %s failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
