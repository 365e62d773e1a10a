//! What a scenario says about its run besides its verdict: the fault schedule it drew, for
//! instance. Notes collect on the thread that runs the simulation (madsim runs every node on
//! one thread); `cargo sim --seed` prints them before the verdict, and a range drops them.

use std::cell::RefCell;

thread_local! {
    static NOTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records a line of the run's report.
pub fn note(line: impl Into<String>) {
    NOTES.with(|notes| notes.borrow_mut().push(line.into()));
}

/// Takes the lines recorded on this thread since the last call.
pub fn take() -> Vec<String> {
    NOTES.with(|notes| std::mem::take(&mut *notes.borrow_mut()))
}
