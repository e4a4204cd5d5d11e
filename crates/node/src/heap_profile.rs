//! A profiling build's heap dumps (feature `heap-profile`, never in a normal build): jemalloc
//! samples allocations with their call stacks, and this thread writes what is live on demand,
//! so the memory a manager holds at rest can be named without slowing it the way a tracing
//! profiler does.
//!
//! Run with `_RJEM_MALLOC_CONF=prof:true,lg_prof_sample:17` (added to the compiled-in options
//! of `alloc.rs`) and `SWARM_HEAP_PROFILE=<dir>`;
//! `touch <dir>/dump.<pid>` writes `<dir>/heap.<pid>.<n>` (read it with `jeprof`) and
//! `<dir>/heap.<pid>.<n>.stats` (jemalloc's allocated, active, resident, mapped, retained and metadata bytes).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts the dump thread when `SWARM_HEAP_PROFILE` names a directory.
pub fn start() {
    let Some(dir) = std::env::var_os("SWARM_HEAP_PROFILE").map(PathBuf::from) else {
        return;
    };
    let pid = std::process::id();
    let trigger = dir.join(format!("dump.{pid}"));
    std::thread::spawn(move || {
        let mut n = 0u32;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if std::fs::remove_file(&trigger).is_err() {
                continue;
            }
            n += 1;
            let out = dir.join(format!("heap.{pid}.{n}"));
            if let Err(e) = dump(&out) {
                eprintln!("swarmd: heap profile {}: {e}", out.display());
            }
        }
    });
}

// The one unsafe call: jemalloc's control interface takes a C string.
#[allow(unsafe_code)]
fn dump(out: &Path) -> Result<(), String> {
    let e = |e: tikv_jemalloc_ctl::Error| e.to_string();
    let path =
        std::ffi::CString::new(out.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: `prof.dump` takes a NUL-terminated file name, which `path` is and outlives.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.dump\0", path.as_ptr()) }.map_err(e)?;
    let st = crate::alloc::stats().ok_or("jemalloc's statistics cannot be read")?;
    let line = format!(
        "allocated {} active {} resident {} mapped {} retained {} metadata {}\n",
        st.allocated, st.active, st.resident, st.mapped, st.retained, st.metadata,
    );
    std::fs::write(
        out.with_extension(format!(
            "{}.stats",
            out.extension().and_then(|x| x.to_str()).unwrap_or("0")
        )),
        line,
    )
    .map_err(|e| e.to_string())
}
