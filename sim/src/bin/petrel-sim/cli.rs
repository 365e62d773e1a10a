//! The command line of `cargo sim`: which runs to make, and what to print of them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use petrel_sim::runner::{self, Job, Outcome};
use petrel_sim::scenarios::{self, Scenario};

#[derive(Parser, Debug)]
#[command(name = "cargo sim", about = "Run Petrel's simulation scenarios under madsim")]
struct Args {
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run this one seed (with --scenario), printing its summary or its failure.
    #[arg(long, conflicts_with_all = ["seeds", "regressions"])]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B excluded), of each chosen scenario.
    #[arg(long, value_parser = parse_range, conflicts_with = "regressions")]
    seeds: Option<(u64, u64)>,
    /// Replay every `<seed> <scenario> ...` line of this file.
    #[arg(long)]
    regressions: Option<PathBuf>,
    /// Scenarios to run (repeat the flag); every scenario when none is given.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Runs at once, each on its own thread and runtime.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run each seed twice and fail when the second run draws a different random number, then
    /// twice more and fail when their event logs differ; one seed at a time.
    #[arg(long)]
    check_determinism: bool,
    /// Print every log event of the run (one seed only); RUST_LOG narrows it.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Where a range writes its failing seeds.
    #[arg(long, default_value = "sim-failures.txt")]
    failures: PathBuf,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (start, end) = text.split_once("..").ok_or("a range is A..B, B excluded")?;
    let start: u64 = start.trim().parse().map_err(|e| format!("{start}: {e}"))?;
    let end: u64 = end.trim().parse().map_err(|e| format!("{end}: {e}"))?;
    if end <= start {
        return Err(format!("{text} is empty: B must be above A"));
    }
    Ok((start, end))
}

/// The process's exit code: 0 when every run passed.
pub fn main() -> i32 {
    let args = Args::parse();
    if args.list {
        for scenario in scenarios::ALL {
            println!("{:<14} {}", scenario.name, scenario.about);
        }
        return 0;
    }
    let chosen = match chosen(&args.scenarios) {
        Ok(chosen) => chosen,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if let Some(seed) = args.seed {
        return one(&chosen, seed, &args);
    }
    let work = match (&args.seeds, &args.regressions) {
        (Some((start, end)), _) => (*start..*end)
            .flat_map(|seed| chosen.iter().map(move |scenario| Job { scenario, seed }))
            .collect(),
        (None, Some(path)) => match regressions(path) {
            Ok(work) => work,
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        },
        (None, None) => {
            eprintln!(
                "say what to run: --seed N --scenario S, --seeds A..B, or --regressions FILE"
            );
            return 2;
        }
    };
    many(&work, &args)
}

fn chosen(names: &[String]) -> Result<Vec<&'static Scenario>, String> {
    if names.is_empty() {
        return Ok(scenarios::ALL.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            scenarios::find(name).ok_or_else(|| {
                let known: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
                format!("no scenario {name:?}; there are {}", known.join(", "))
            })
        })
        .collect()
}

fn regressions(path: &PathBuf) -> Result<Vec<Job>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut work = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let at = || format!("{}:{}", path.display(), n + 1);
        let seed: u64 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("{}: a line starts with its seed", at()))?;
        let name =
            words.next().ok_or_else(|| format!("{}: the seed's scenario is missing", at()))?;
        let scenario =
            scenarios::find(name).ok_or_else(|| format!("{}: no scenario {name:?}", at()))?;
        work.push(Job { scenario, seed });
    }
    Ok(work)
}

/// One seed of each chosen scenario, in the foreground, with its panic printed as it happens.
fn one(chosen: &[&'static Scenario], seed: u64, args: &Args) -> i32 {
    if args.trace {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let mut failed = 0;
    for scenario in chosen {
        println!("scenario {} (seed {seed}): {}", scenario.name, scenario.about);
        let outcome = runner::run(Job { scenario, seed }, args.check_determinism);
        for line in &outcome.notes {
            println!("{line}");
        }
        match &outcome.verdict {
            Ok(summary) => println!("PASS in {:.2} s: {summary}", outcome.elapsed.as_secs_f64()),
            Err(message) => {
                failed += 1;
                println!("FAIL: {message}\nreplay: {}", outcome.replay());
            }
        }
    }
    i32::from(failed > 0)
}

/// Many runs on `--jobs` threads: progress, a table, the failures file.
fn many(work: &[Job], args: &Args) -> i32 {
    runner::quiet_panics();
    let started = Instant::now();
    let (finished, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let terminal = std::io::stderr().is_terminal();
    let total = work.len();
    let done = |outcome: &Outcome| {
        let n = finished.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(message) = &outcome.verdict {
            failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("{}FAIL {}: {message}", if terminal { "\r" } else { "" }, outcome.replay());
        }
        let failures = failed.load(Ordering::Relaxed);
        if terminal {
            eprint!(
                "\r{n}/{total} runs, {failures} failed, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        } else if n % (total / 10).max(1) == 0 || n == total {
            eprintln!(
                "{n}/{total} runs, {failures} failed, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        let _ = std::io::stderr().flush();
    };
    // The event-log hash needs each run alone in the process: tracing caches, per call site and
    // process-wide, whether anyone listens, and a call site first reached on one thread while
    // another installs its log can stay muted for that log, so two logs of a seed would differ.
    let jobs = if args.check_determinism { 1 } else { args.jobs };
    if jobs < args.jobs {
        eprintln!("--check-determinism runs one seed at a time (event logs are process-wide)");
    }
    let outcomes = runner::run_all(work, jobs, args.check_determinism, &done);
    if terminal {
        eprintln!();
    }
    table(&outcomes);
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.verdict.is_err()).collect();
    if !failures.is_empty() {
        write_failures(&args.failures, &failures);
    }
    let passed = outcomes.len() - failures.len();
    let status = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "test result: {status}. {passed} passed; {} failed; {:.0} s on {} jobs",
        failures.len(),
        started.elapsed().as_secs_f64(),
        jobs
    );
    i32::from(!failures.is_empty())
}

fn table(outcomes: &[Outcome]) {
    #[derive(Default)]
    struct Row {
        runs: usize,
        failed: usize,
        busy: Duration,
        first_failure: Option<u64>,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for outcome in outcomes {
        let row = rows.entry(outcome.scenario).or_default();
        row.runs += 1;
        row.busy += outcome.elapsed;
        if outcome.verdict.is_err() {
            row.failed += 1;
            row.first_failure =
                Some(row.first_failure.map_or(outcome.seed, |s| s.min(outcome.seed)));
        }
    }
    println!(
        "{:<14} {:>6} {:>6} {:>6} {:>9}  first failing seed",
        "scenario", "runs", "passed", "failed", "ms/run"
    );
    for (name, row) in rows {
        let per_run = row.busy.as_secs_f64() * 1000.0 / row.runs.max(1) as f64;
        let first = row.first_failure.map_or_else(String::new, |s| s.to_string());
        println!(
            "{name:<14} {:>6} {:>6} {:>6} {per_run:>9.0}  {first}",
            row.runs,
            row.runs - row.failed,
            row.failed
        );
    }
}

fn write_failures(path: &PathBuf, failures: &[&Outcome]) {
    let lines: String = failures
        .iter()
        .map(|o| {
            let message = o.verdict.as_ref().err().map_or("", |m| m.lines().next().unwrap_or(""));
            format!("{} {} {message}\n", o.seed, o.scenario)
        })
        .collect();
    match std::fs::write(path, lines) {
        Ok(()) => println!("failing seeds written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
