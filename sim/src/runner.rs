//! Runs scenarios under madsim, one seed at a time or a range on parallel jobs: what `cargo sim`
//! does. Each run gets a fresh runtime seeded with its seed, so a seed replays exactly; a
//! panic anywhere in the simulated cluster is the run's failure, with its message kept.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use madsim::runtime::Runtime;
use madsim::Config;

use crate::scenarios::Scenario;
use crate::trace::EventLog;

/// How long a run may take in simulated time before it counts as hung (the expiry scenario
/// waits an hour of it for commit-log files to expire).
pub const TIME_LIMIT: Duration = Duration::from_secs(2 * 60 * 60);
/// How long a run may take in wall-clock time before it counts as a livelock: a task that
/// loops without awaiting anything that takes simulated time never lets the clock reach
/// [`TIME_LIMIT`]. A run that hits this fails, and its thread is left to spin.
pub const WALL_LIMIT: Duration = Duration::from_secs(300);

/// One run to do.
#[derive(Clone, Copy)]
pub struct Job {
    pub scenario: &'static Scenario,
    pub seed: u64,
}

/// How one run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: &'static str,
    pub seed: u64,
    /// The summary on success, the panic message on failure.
    pub verdict: Result<String, String>,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
    /// What the scenario noted about the run (its fault schedule, for one).
    pub notes: Vec<String>,
}

impl Outcome {
    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!("cargo sim --seed {} --scenario {}", self.seed, self.scenario)
    }
}

thread_local! {
    /// The message of the last panic on this thread (see [`quiet_panics`]).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps panic messages (with their location) for the outcome instead of printing them, so
/// that parallel runs do not interleave their reports.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(text) => (*text).to_owned(),
            None => info.payload().downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        let at =
            info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message}{at}")));
    }));
}

/// Runs one job on this thread. With `check_determinism`, the run is made twice and every
/// random draw of the second must match the first (madsim's check), then twice more with
/// their event logs hashed, and the two hashes must agree.
pub fn run(job: Job, check_determinism: bool) -> Outcome {
    // Each run gets a thread of its own. std's HashMap keys are drawn once per thread, and
    // madsim makes them follow the seed only when its runtime exists before the thread's first
    // map: on a reused thread the second run's maps iterate in another order.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_here(job, check_determinism)));
        let _ = sender.send(outcome.ok());
    });
    let failed = |why: String, elapsed| Outcome {
        scenario: job.scenario.name,
        seed: job.seed,
        verdict: Err(why),
        elapsed,
        notes: Vec::new(),
    };
    let limit = if check_determinism { WALL_LIMIT * 4 } else { WALL_LIMIT };
    match receiver.recv_timeout(limit) {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(RecvTimeoutError::Disconnected) => {
            failed("the run's thread panicked outside the run".to_owned(), Duration::ZERO)
        }
        Err(RecvTimeoutError::Timeout) => failed(
            format!(
                "livelock: no end within {} s of wall-clock time; a task loops without letting \
                 the simulated clock move",
                limit.as_secs()
            ),
            limit,
        ),
    }
}

fn run_here(job: Job, check_determinism: bool) -> Outcome {
    let started = Instant::now();
    LAST_PANIC.with(|last| last.borrow_mut().take());
    crate::report::take();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if check_determinism {
            let summary = Runtime::check_determinism(job.seed, Config::default(), job.scenario.run);
            let (first, second) = (logged(job), logged(job));
            assert_eq!(
                first, second,
                "two runs of the seed differ: (event-log hash, events, summary) first, then second"
            );
            format!(
                "{summary}; the same {} events (hash {:016x}) and summary in two more runs",
                first.1, first.0
            )
        } else {
            let mut runtime = Runtime::with_seed_and_config(job.seed, Config::default());
            runtime.set_time_limit(TIME_LIMIT);
            runtime.block_on((job.scenario.run)())
        }
    }));
    let verdict = result.map_err(|payload| {
        LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the run panicked".to_owned())
        })
    });
    Outcome {
        scenario: job.scenario.name,
        seed: job.seed,
        verdict,
        elapsed: started.elapsed(),
        notes: crate::report::take(),
    }
}

/// One run with its event log recorded: the log's (hash, event count), and the run's summary.
fn logged(job: Job) -> (u64, u64, String) {
    let log = EventLog::default();
    let recorder = log.clone();
    let run = std::thread::spawn(move || {
        // The runtime first: it seeds the thread's HashMap keys, which must come before any
        // map the subscriber makes.
        let mut runtime = Runtime::with_seed_and_config(job.seed, Config::default());
        runtime.set_time_limit(TIME_LIMIT);
        recorder.record(|| runtime.block_on((job.scenario.run)()))
    });
    let summary = run.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload));
    let (hash, events) = log.digest();
    (hash, events, summary)
}

/// Runs every job on `jobs` threads, calling `done` as each finishes; returns the outcomes in
/// the order of `work`.
pub fn run_all(
    work: &[Job],
    jobs: usize,
    check_determinism: bool,
    done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; work.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = work.get(index) else { return };
                let outcome = run(*job, check_determinism);
                done(&outcome);
                outcomes.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(outcome);
            });
        }
    });
    outcomes.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}
