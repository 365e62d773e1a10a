//! [`Flag`]: a stop or close signal that tasks await, waking in a reproducible order.
//!
//! tokio's `watch` channel would do the job, but it spreads its waiters over eight notifiers
//! picked by a thread-local random number whose seed comes from a process-wide counter. Under
//! simulation two runs of one seed in one process then wake the same waiters in different
//! orders, and the runs drift apart. A `Notify` wakes its waiters in the order they came.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A flag that is set once and awaited by any number of tasks; clones share it.
#[derive(Clone, Default)]
pub struct Flag {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    changed: Notify,
}

impl Flag {
    /// A flag not set yet.
    pub fn new() -> Flag {
        Flag::default()
    }

    /// Sets the flag and wakes every waiter; true if it was not set before.
    pub fn set(&self) -> bool {
        let first = !self.inner.set.swap(true, Ordering::AcqRel);
        if first {
            self.inner.changed.notify_waiters();
        }
        first
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.load(Ordering::Acquire)
    }

    /// Returns once the flag is set (at once if it is already).
    pub async fn wait(&self) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a `set` between the two is not missed.
            changed.as_mut().enable();
            if self.is_set() {
                return;
            }
            changed.await;
        }
    }
}

/// The owner's end of a [`Flag`]: sets it when dropped, so that the tasks an owner started stop
/// when it goes, whether or not it was shut down first (as dropping a watch sender did).
pub struct SetOnDrop(Flag);

impl SetOnDrop {
    /// A new flag, and this guard of it.
    pub fn new() -> SetOnDrop {
        SetOnDrop(Flag::new())
    }

    /// The flag, for the tasks to wait on.
    pub fn flag(&self) -> Flag {
        self.0.clone()
    }

    /// Sets the flag now.
    pub fn set(&self) -> bool {
        self.0.set()
    }
}

impl Default for SetOnDrop {
    fn default() -> Self {
        SetOnDrop::new()
    }
}

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_wakes_once_the_flag_is_set() {
        let flag = Flag::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let flag = flag.clone();
                tokio::spawn(async move { flag.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(flag.set(), "the first set sets it");
        assert!(!flag.set(), "a second set changes nothing");
        for waiter in waiters {
            waiter.await.unwrap();
        }
        flag.wait().await;
    }

    #[tokio::test]
    async fn dropping_the_guard_sets_the_flag() {
        let guard = SetOnDrop::new();
        let flag = guard.flag();
        let waiter = tokio::spawn(async move { flag.wait().await });
        drop(guard);
        waiter.await.unwrap();
    }
}
