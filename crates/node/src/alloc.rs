//! `swarmd`'s memory allocator: jemalloc (feature `jemalloc`, on by default), set up for a
//! daemon that allocates in bursts of thousands of tasks and then rests.
//!
//! Measured on the scale benchmark's leader (BENCHMARKS 2026-12-05, tenth session): with
//! glibc (tuned, [`swarm_runtime::sys::tune_allocator_for_bursts`]) the leader held ~1.8–1.95
//! KiB a task after a 100k-task burst and never gave it back; with jemalloc and these options
//! it holds ~1.3 at the burst and ~0.95 once its dirty pages decay, and creates tasks faster.
//! A heap profile (feature `heap-profile`) put the live heap at ~1.2 KiB a task: glibc's
//! extra half a KiB was free memory it kept.
//!
//! The same binary is every container's init (`__swarm-runtime-init`), one process per
//! container: there jemalloc costs ~0.16 MB more private memory than glibc (1.20 against 1.05
//! MB an init, measured over 30 containers). Keeping glibc in the init by choosing the
//! allocator per process saved only 40 kB of that, because jemalloc initialises itself from a
//! constructor before `main` whether it is used or not, so it was not kept. Most of an init's
//! private memory is the relocated pages of this position-independent binary, not its heap.

use swarm_node::AllocatorStats;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it initialises (before `main`); `_RJEM_MALLOC_CONF` in the
/// environment still overrides them. Two arenas (glibc was held to two as well: more only
/// spread a burst's garbage); freed pages handed back to the kernel after a second instead of
/// ten, straight away rather than through a second "muzzy" stage; and no per-thread caches
/// except on the runtime's workers ([`set_up_daemon`]).
///
/// Thread caches were most of the managers' growth over the soak (BENCHMARKS 2026-12-06,
/// fifteenth session): jemalloc trims a thread's cache only while that thread allocates, so
/// the threads besides the runtime's workers (the blocking pool's, sled's, the main thread)
/// kept what they had freed, and those objects pinned half-empty pages round after round
/// (leader +12 to +14 % from round 2 to 25 in four runs). With caches off everywhere the
/// soak stayed within +2 to +10 %, but the 5,000 idle agents cost the leader ~10 % more CPU
/// (every allocation then takes an arena lock); with caches on the two workers only, which do
/// nearly all the allocating and never stay idle for long, both hold.
#[cfg(feature = "jemalloc")]
// Defines the C global jemalloc reads (`const char *malloc_conf`): a thin pointer to a
// NUL-terminated string that lives for the whole program, which a `&[u8; N]` is.
#[allow(unsafe_code, non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 60] =
    b"narenas:2,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Sets the allocator up for the daemon; call first thing in `main`, after the container
/// init mode has had its chance to take over and before any thread starts.
pub fn set_up_daemon() {
    #[cfg(feature = "jemalloc")]
    {
        // Purge on a background thread: without it jemalloc purges only when the daemon
        // allocates, so a manager at rest after a burst would keep the burst's pages.
        if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
            eprintln!("swarmd: jemalloc's background purging could not start ({e}); freed memory is returned more slowly");
        }
    }
    #[cfg(not(feature = "jemalloc"))]
    swarm_runtime::sys::tune_allocator_for_bursts();
    swarm_node::report_allocator_stats(stats);
    // The workers allocate for every request: they keep a thread cache (the fast path);
    // every other thread allocates rarely and would only hoard (`malloc_conf`).
    swarm_node::set_up_workers_with(enable_thread_cache);
    #[cfg(feature = "heap-profile")]
    crate::heap_profile::start();
}

/// The allocator's current statistics; `None` without jemalloc (glibc keeps no such counts)
/// or if they cannot be read.
pub fn stats() -> Option<AllocatorStats> {
    #[cfg(feature = "jemalloc")]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        epoch::advance().ok()?;
        Some(AllocatorStats {
            allocated: stats::allocated::read().ok()? as u64,
            active: stats::active::read().ok()? as u64,
            resident: stats::resident::read().ok()? as u64,
            mapped: stats::mapped::read().ok()? as u64,
            metadata: stats::metadata::read().ok()? as u64,
            retained: stats::retained::read().ok()? as u64,
        })
    }
    #[cfg(not(feature = "jemalloc"))]
    None
}

/// Gives the calling thread a cache of freed objects (off by default, `malloc_conf`).
fn enable_thread_cache() {
    #[cfg(feature = "jemalloc")]
    #[allow(unsafe_code)]
    // SAFETY: `thread.tcache.enabled` takes a bool, which is what is written.
    if let Err(e) = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.tcache.enabled\0", true) } {
        eprintln!("swarmd: a worker thread's allocation cache could not be enabled ({e})");
    }
}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    /// The tests read process-wide counters: one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn jemalloc_reads_the_compiled_in_options() {
        // Fails if the linker kept jemalloc's own (empty) `malloc_conf` instead of ours, or
        // if the string stopped parsing (jemalloc ignores what it cannot read). Run it
        // without `_RJEM_MALLOC_CONF` in the environment, which would override them.
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 2);
        let s = std::ffi::CStr::from_bytes_with_nul(super::malloc_conf).unwrap();
        assert!(s.to_str().unwrap().contains("dirty_decay_ms:1000"));
        assert!(!tikv_jemalloc_ctl::opt::tcache::read().unwrap());
    }

    #[test]
    fn statistics_count_what_is_allocated() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = super::stats().expect("jemalloc is built with statistics");
        let big = vec![1u8; 64 << 20];
        let during = super::stats().unwrap();
        assert!(
            during.allocated >= before.allocated + (60 << 20),
            "{before:?} → {during:?}"
        );
        assert!(during.active >= during.allocated && during.resident >= during.active);
        drop(big);
    }

    #[test]
    #[allow(unsafe_code)]
    fn only_a_thread_that_asks_gets_a_cache() {
        // SAFETY: `thread.tcache.enabled` is a bool.
        let enabled =
            || unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"thread.tcache.enabled\0") };
        std::thread::spawn(move || {
            assert!(!enabled().unwrap(), "threads start without a cache");
            super::enable_thread_cache();
            assert!(enabled().unwrap(), "the thread asked for one");
        })
        .join()
        .unwrap();
    }
}
