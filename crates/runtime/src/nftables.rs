//! nftables rulesets loaded in-process through `libnftables` (opened at run time with
//! `dlopen`, so nothing links it and nothing fails without it), in a container's network
//! namespace from a short-lived thread that joins it. Owns only the library handle; the agent
//! writes the rules (`network/lb.rs`) and keeps the `nft` process as the fallback.
//!
//! Why: loading a container's service-address table through `nsenter nft -f -` cost 11–22 ms
//! per container start (BENCHMARKS 2026-12-04), above the 5 ms goal. Measured here: the same
//! table created in a fresh namespace through the library takes 0.3–0.9 ms; what remains of the
//! cost is the kernel's (replacing or flushing an existing table waits 10–16 ms for an RCU
//! grace period, which the agent avoids on a container's first load).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_error: CtxGetBuffer,
    run: RunCmd,
    /// libnftables keeps process-wide tables (marks, realms) it sets up per context: one
    /// context at a time.
    one_at_a_time: Mutex<()>,
}

fn lib() -> Option<&'static Lib> {
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = open();
        if lib.is_none() {
            tracing::info!("libnftables.so.1 not found: nftables rules load through `nft`");
        }
        lib
    })
    .as_ref()
}

fn open() -> Option<Lib> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is never closed, so the
    // function pointers stay valid for the life of the process. Each symbol is cast to the
    // signature libnftables(3) documents for it.
    unsafe {
        let handle = libc::dlopen(
            c"libnftables.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        if handle.is_null() {
            return None;
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(handle, name.as_ptr());
            (!p.is_null()).then_some(p)
        };
        Some(Lib {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
            buffer_output: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                c"nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                c"nft_ctx_buffer_error",
            )?),
            get_error: std::mem::transmute::<*mut c_void, CtxGetBuffer>(sym(
                c"nft_ctx_get_error_buffer",
            )?),
            run: std::mem::transmute::<*mut c_void, RunCmd>(sym(c"nft_run_cmd_from_buffer")?),
            one_at_a_time: Mutex::new(()),
        })
    }
}

/// Loads `rules` (nft's file syntax, one transaction) in the calling thread's namespace.
fn load_here(lib: &Lib, rules: &CStr) -> Result<(), String> {
    let _one = lib.one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the context is created, used and freed here, on this thread only; the error
    // buffer is copied before the context is freed.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            return Err("libnftables: cannot create a context".into());
        }
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        let rc = (lib.run)(ctx, rules.as_ptr());
        let err = if rc == 0 {
            None
        } else {
            let p = (lib.get_error)(ctx);
            Some(if p.is_null() {
                format!("exit status {rc}")
            } else {
                CStr::from_ptr(p).to_string_lossy().trim().to_string()
            })
        };
        (lib.ctx_free)(ctx);
        err.map_or(Ok(()), Err)
    }
}

/// Loads `rules` in the network namespace of process `pid`; `None` when the library is not
/// there (the caller runs `nft` instead). The error is what nft would print.
pub fn load_in(pid: i32, rules: &str) -> Option<Result<(), String>> {
    let lib = lib()?;
    Some(load_in_with(lib, pid, rules))
}

fn load_in_with(lib: &'static Lib, pid: i32, rules: &str) -> Result<(), String> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let rules = CString::new(rules).map_err(|_| "nftables rules contain a NUL byte".to_string())?;
    // A thread of its own joins the namespace and ends with the load: no thread of a pool
    // is ever left in a container's namespace.
    std::thread::Builder::new()
        .name("nft-load".into())
        .spawn(move || {
            // SAFETY: setns on this thread only (a network namespace may be joined by one
            // thread of a multi-threaded process); the fd is open for the call.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("join {path}: {}", std::io::Error::last_os_error()));
            }
            load_here(lib, &rules)
        })
        .map_err(|e| format!("cannot start a thread to load nft rules: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the nft-load thread panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A process alone in a new network namespace, killed when dropped.
    struct InNetns(Child);

    impl Drop for InNetns {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn nft_list(pid: u32) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["nft", "list", "ruleset"])
            .output()
            .expect("run nft (CI installs nftables)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn rules_load_in_the_namespace_of_the_process_and_nowhere_else() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "needs root (CI runs as root)"
        );
        assert!(
            lib().is_some(),
            "libnftables.so.1 is missing (CI installs nftables, which brings it)"
        );
        let ns = InNetns(
            Command::new("unshare")
                .args(["-n", "sleep", "60"])
                .spawn()
                .expect("unshare"),
        );
        let pid = ns.0.id();
        // unshare has joined its namespace once /proc shows another inode than ours.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&mine)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare never left our namespace"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let table = "swarm-nftables-test";
        let rules = format!(
            "table ip {table} {{\n  chain out {{\n    type nat hook output priority -100; policy accept;\n    ip daddr 10.9.9.9 dnat to 10.9.9.10\n  }}\n}}\n"
        );
        load_in(pid as i32, &rules)
            .expect("library present")
            .expect("load");
        let listed = nft_list(pid);
        assert!(listed.contains(table), "{listed}");
        assert!(listed.contains("dnat to 10.9.9.10"), "{listed}");
        let here = String::from_utf8_lossy(
            &Command::new("nft")
                .args(["list", "tables"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert!(
            !here.contains(table),
            "leaked into our own namespace: {here}"
        );

        // A refused ruleset says why, as nft would, and changes nothing.
        let err = load_in(
            pid as i32,
            &format!("table ip {table}\ndelete table ip {table}\nbogus\n"),
        )
        .unwrap()
        .unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
        assert!(nft_list(pid).contains("dnat to 10.9.9.10"));

        // A process that is gone is an error naming its namespace.
        let err = load_in(i32::MAX, &rules).unwrap().unwrap_err();
        assert!(err.contains("/ns/net"), "{err}");
    }
}
