//! What this library knows of the process's memory allocator. The binary chooses it
//! (`swarmd`'s `alloc.rs`: jemalloc) and hands over how to read its statistics at start;
//! without that (tests, other binaries) `/metrics` reports none.

use std::sync::OnceLock;

/// What the allocator holds, in bytes (jemalloc's statistics, refreshed on every call).
#[derive(Debug, Clone, Copy)]
pub struct AllocatorStats {
    /// Bytes the program has allocated and not freed (objects in thread caches included;
    /// untouched parts of large allocations too).
    pub allocated: u64,
    /// Bytes in pages that hold at least one allocation: `allocated` plus the free space
    /// inside those pages (fragmentation).
    pub active: u64,
    /// `active` plus freed pages not yet handed back to the kernel, plus `metadata`: an upper
    /// bound on what is resident (pages reserved but never written count too, so it can
    /// exceed the process's RSS).
    pub resident: u64,
    /// Bytes in the allocator's active extents (a multiple of the page size, above `active`).
    pub mapped: u64,
    /// The allocator's own bookkeeping.
    pub metadata: u64,
    /// Virtual memory handed back to the kernel but kept mapped for reuse (not resident).
    pub retained: u64,
}

/// How the binary reads its allocator's statistics.
static STATS: OnceLock<fn() -> Option<AllocatorStats>> = OnceLock::new();

/// Has `/metrics` report the allocator's statistics, read by `read`; the first call wins.
pub fn report_allocator_stats(read: fn() -> Option<AllocatorStats>) {
    let _ = STATS.set(read);
}

pub(crate) fn stats() -> Option<AllocatorStats> {
    STATS.get()?()
}

/// What the binary runs once on each runtime worker thread (see [`on_worker_park`]).
static WORKER_SETUP: OnceLock<fn()> = OnceLock::new();

/// Has `setup` run once on every tokio worker thread, the first time it goes idle; the
/// first call wins.
pub fn set_up_workers_with(setup: fn()) {
    let _ = WORKER_SETUP.set(setup);
}

/// Run by tokio as a worker parks (only workers park, not the blocking pool's threads):
/// the first time on each thread, the binary's worker setup.
pub(crate) fn on_worker_park() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    DONE.with(|done| {
        if !done.replace(true) {
            if let Some(setup) = WORKER_SETUP.get() {
                setup();
            }
        }
    });
}
