//! A global allocator that counts allocations when asked to, for `petrel bench send`'s
//! allocations per send. The `petrel` binary installs it; counting is off unless the process
//! starts with `PETREL_COUNT_ALLOCATIONS=1`, so the production path pays one relaxed load of a
//! flag per allocation. GET_BROKER_RUNTIME_INFO reports the count (`allocations`) when on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (and reallocations) while counting is on.
pub struct CountingAllocator;

#[allow(unsafe_code)] // A global allocator is an unsafe trait; this one only forwards to System.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Turns counting on when the environment asks for it (`PETREL_COUNT_ALLOCATIONS=1`).
pub fn count_if_asked() {
    if std::env::var_os("PETREL_COUNT_ALLOCATIONS").is_some_and(|v| v == "1") {
        COUNTING.store(true, Ordering::Relaxed);
    }
}

/// Allocations so far, if counting.
pub fn allocations() -> Option<u64> {
    COUNTING.load(Ordering::Relaxed).then(|| ALLOCATIONS.load(Ordering::Relaxed))
}
