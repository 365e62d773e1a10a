//! `cargo sim`: runs Petrel's simulation scenarios under madsim.
//!
//! ```sh
//! cargo sim --list                                  # the scenarios
//! cargo sim --seed 7 --scenario broker [--trace]    # one run, replayed exactly
//! cargo sim --seeds 1..1001 --jobs 2                # every scenario, seeds 1 to 1000
//! cargo sim --seeds 1..101 --scenario broker --check-determinism
//! cargo sim --regressions sim/regressions.txt       # every seed that ever failed
//! ```
//!
//! A range prints progress, then a table per scenario, writes the failing seeds to
//! `--failures` (in the format of `sim/regressions.txt`) and exits 1 if any failed. Every
//! failure ends with the command that replays it.

#[cfg(madsim)]
mod cli;

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("petrel-sim runs only in a simulation build: use `cargo sim` (see docs in sim/)");
    std::process::exit(2);
}
