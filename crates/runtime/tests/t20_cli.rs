//! The runc-compatible CLI over an OCI bundle (root only).

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swarm-runtime"))
}

#[test]
fn run_state_kill_delete_over_a_bundle() {
    common::require_root_and_busybox();
    let t = tempfile::tempdir().unwrap();
    let bundle = t.path().join("bundle");
    common::busybox_rootfs(&bundle.join("rootfs"));
    let cfg = |args: &str| {
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":{args},"env":["PATH=/bin"],"cwd":"/"}},"root":{{"path":"rootfs","readonly":true}},"hostname":"cli","linux":{{"namespaces":[{{"type":"pid"}},{{"type":"network"}},{{"type":"mount"}}]}}}}"#
        )
    };
    let root = t.path().join("state");
    let root_s = root.to_str().unwrap();
    let parent = format!("swarm-rt-cli-{}", std::process::id());
    let b = bundle.to_str().unwrap();
    std::fs::write(bundle.join("config.json"), cfg(r#"["sh","-c","exit 42"]"#)).unwrap();
    let st = bin()
        .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
        .args(["--root", root_s, "run", "--bundle", b, "c1"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(42), "run propagates the exit code");

    std::fs::write(bundle.join("config.json"), cfg(r#"["sleep","30"]"#)).unwrap();
    let ok = |args: &[&str]| {
        let o = bin()
            .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
            .args(["--root", root_s])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // create hands its stdio to the container (as runc does): do not capture it here.
    let st = bin()
        .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
        .args(["--root", root_s, "create", "--bundle", b, "c2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let state: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
    assert_eq!(state["status"], "created");
    assert!(state["pid"].as_i64().unwrap() > 0);
    ok(&["start", "c2"]);
    let state: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
    assert_eq!(state["status"], "running");
    assert!(ok(&["list"]).contains("c2"));
    ok(&["kill", "c2", "KILL"]);
    common::wait_until("stopped", std::time::Duration::from_secs(10), || {
        let s: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
        s["status"] == "stopped"
    });
    ok(&["delete", "c2"]);
    assert!(!ok(&["list"]).contains("c2"));
    if let Ok(h) = swarm_runtime::cgroup::detect() {
        let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &parent).remove();
    }
}

/// runc options swarm-runtime does not support fail with a reason (no root needed: refused
/// before anything is touched).
#[test]
fn unsupported_runc_options_are_refused_with_a_reason() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("state");
    for (args, says) in [
        (
            &["exec", "--tty", "c1", "sh"][..],
            "a terminal exec needs --console-socket",
        ),
        (
            &["--systemd-cgroup", "run", "c1"][..],
            "--systemd-cgroup is not supported",
        ),
        (
            &["run", "--no-pivot", "c1"][..],
            "--no-pivot is not supported",
        ),
        (
            &["--criu", "/bin/criu", "list"][..],
            "--criu is not supported",
        ),
    ] {
        let o = bin().arg("--root").arg(&root).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!root.join("containers/c1").exists(), "nothing was created");
}

/// `--log FILE --log-format json`: the error goes to the file as a runc-style record (that is
/// where containerd reads it), and still to stderr.
#[test]
fn errors_are_logged_as_json_records_with_log_and_log_format() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("runtime.log");
    let o = bin()
        .arg("--root")
        .arg(t.path().join("state"))
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "no-such-container"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-container"));
    let text = std::fs::read_to_string(&log).expect("the log file is written");
    let rec: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(rec["level"], "error", "{text}");
    assert!(
        rec["msg"].as_str().unwrap().contains("no-such-container"),
        "{text}"
    );
    assert!(rec["time"].is_string(), "{text}");
}

/// `--pid-file` holds the init pid; `kill --all` reaches every process of the container's
/// cgroup, not only its init.
#[test]
fn pid_file_and_kill_all() {
    common::require_root_and_busybox();
    let t = tempfile::tempdir().unwrap();
    let bundle = t.path().join("bundle");
    common::busybox_rootfs(&bundle.join("rootfs"));
    std::fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["sh","-c","sleep 300 & sleep 300 & wait"],"env":["PATH=/bin"],"cwd":"/"},"root":{"path":"rootfs","readonly":true},"hostname":"cli","linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"mount"}]}}"#,
    )
    .unwrap();
    let root = t.path().join("state");
    let root_s = root.to_str().unwrap();
    let parent = format!("swarm-rt-cli-all-{}", std::process::id());
    let pid_file = t.path().join("c3.pid");
    // Removes the container and its cgroups even when an assertion fails.
    struct Cleanup<'a>(&'a str, &'a str);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = bin()
                .env("SWARM_RUNTIME_CGROUP_PARENT", self.1)
                .args(["--root", self.0, "delete", "--force", "c3"])
                .output();
            if let Ok(h) = swarm_runtime::cgroup::detect() {
                let _ = swarm_runtime::cgroup::Cgroup::new(h, "", self.1).remove();
            }
        }
    }
    let _cleanup = Cleanup(root_s, &parent);
    let ok = |args: &[&str]| {
        let o = bin()
            .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
            .args(["--root", root_s])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let st = bin()
        .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
        .args([
            "--root",
            root_s,
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("c3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let state: serde_json::Value = serde_json::from_str(&ok(&["state", "c3"])).unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        state["pid"].to_string(),
        "the pid file holds the init pid"
    );
    ok(&["start", "c3"]);
    let cg =
        swarm_runtime::cgroup::Cgroup::new(swarm_runtime::cgroup::detect().unwrap(), &parent, "c3");
    // init, sh and two sleeps
    common::wait_until("4 processes", std::time::Duration::from_secs(10), || {
        cg.pids().len() >= 4
    });
    let stopped = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
            .unwrap_or(false)
    };
    ok(&["kill", "--all", "c3", "STOP"]);
    common::wait_until(
        "every process of the container stopped",
        std::time::Duration::from_secs(10),
        || cg.pids().iter().all(|p| stopped(*p)),
    );
    ok(&["kill", "--all", "c3", "KILL"]);
    common::wait_until(
        "container stopped",
        std::time::Duration::from_secs(10),
        || {
            let s: serde_json::Value = serde_json::from_str(&ok(&["state", "c3"])).unwrap();
            s["status"] == "stopped"
        },
    );
    ok(&["delete", "c3"]);
}

/// A bundle over the busybox rootfs, a state root and a cgroup parent for one test, driven
/// through the CLI. Dropping it (also when an assertion fails) deletes every container it
/// made and the cgroup parent, so a failing test leaves nothing running.
struct CliEnv {
    t: tempfile::TempDir,
    exe: std::path::PathBuf,
    parent: String,
}

impl CliEnv {
    fn new(tag: &str, config: &str) -> CliEnv {
        common::require_root_and_busybox();
        let t = tempfile::tempdir().unwrap();
        let bundle = t.path().join("bundle");
        common::busybox_rootfs(&bundle.join("rootfs"));
        std::fs::write(bundle.join("config.json"), config).unwrap();
        CliEnv {
            t,
            exe: env!("CARGO_BIN_EXE_swarm-runtime").into(),
            parent: format!("swarm-rt-cli-{tag}-{}", std::process::id()),
        }
    }

    /// Runs a private copy of the binary (an inode no other test executes).
    fn with_own_binary(mut self) -> CliEnv {
        let own = self.t.path().join("swarm-runtime");
        std::fs::copy(&self.exe, &own).unwrap();
        // A child another test thread forked while the copy was open for writing holds that
        // descriptor until it execs, and executing the copy meanwhile fails with "text file
        // busy" (ETXTBSY). Once one exec succeeds no such descriptor is left.
        for _ in 0..100 {
            match Command::new(&own).arg("--help").output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("cannot run the copy {}: {e}", own.display()),
                Ok(_) => break,
            }
        }
        self.exe = own;
        self
    }

    fn bundle(&self) -> String {
        self.t.path().join("bundle").display().to_string()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("SWARM_RUNTIME_CGROUP_PARENT", &self.parent)
            .arg("--root")
            .arg(self.t.path().join("state"))
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }

    /// Output captured (not for create/run: they hand their stdio to the container).
    fn out(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }

    /// Exit status, with the stdio left to the container.
    fn status(&self, args: &[&str]) -> std::process::ExitStatus {
        self.cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    }
}

impl Drop for CliEnv {
    fn drop(&mut self) {
        let dir = self.t.path().join("state/containers");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let _ = self.out(&["delete", "--force", &id]);
        }
        if let Ok(h) = swarm_runtime::cgroup::detect() {
            let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &self.parent).remove();
        }
    }
}

/// What Docker passes in config.json: the capability sets and its seccomp profile, honoured.
#[test]
fn the_bundle_s_capabilities_and_seccomp_profile_apply() {
    let env = CliEnv::new(
        "caps",
        r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},
            "args":["sh","-c","mkdir /tmp/x 2>&1; grep -E 'CapEff|Seccomp:' /proc/self/status"],
            "env":["PATH=/bin"],"cwd":"/",
            "capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL","CAP_CHOWN"],"permitted":["CAP_KILL","CAP_CHOWN"]}},
           "root":{"path":"rootfs","readonly":false},"hostname":"cli",
           "linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"mount"}],
             "seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}}}"#,
    );
    let o = env.out(&["run", "--bundle", &env.bundle(), "c4"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Permission denied"),
        "the profile's errno: {out}"
    );
    assert!(
        out.contains("CapEff:\t0000000000000021"),
        "CHOWN and KILL only: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

const SLEEPER: &str = r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":["sleep","30"],"env":["PATH=/bin"],"cwd":"/"},"root":{"path":"rootfs","readonly":true},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

/// CVE-2019-5736: whoever gets hold of a container init's executable (an `O_PATH` open of
/// `/proc/<pid>/exe`, kept until the runtime is gone) must not be able to reopen it for
/// writing: the CLI runs helpers from its binary behind a read-only bind mount (EROFS); the
/// library from a sealed memfd copy. The host binary is never writable that way.
#[test]
fn a_container_init_s_executable_cannot_be_reopened_for_writing() {
    use std::os::fd::AsRawFd;
    let env = CliEnv::new("exe", SLEEPER).with_own_binary();
    assert!(env
        .status(&["create", "--bundle", &env.bundle(), "c5"])
        .success());
    let state: serde_json::Value =
        serde_json::from_slice(&env.out(&["state", "c5"]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let exe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    // The init and every runtime process gone: nothing is "busy" any more.
    assert!(env.out(&["delete", "--force", "c5"]).status.success());
    let running_it = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == env.exe))
    };
    common::wait_until(
        "no process runs the copy",
        std::time::Duration::from_secs(10),
        || !running_it(),
    );
    let reopened = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    match reopened {
        Ok(_) => panic!("the init's executable reopened for writing"),
        // EROFS: the read-only bind (a sealed memfd copy would say EPERM).
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
    }
}

/// `pause`/`resume` (what `docker pause` calls), `features` and `--version`.
#[test]
fn pause_resume_features_and_version() {
    let env = CliEnv::new("pause", SLEEPER);
    let v = env.out(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("swarm-runtime version "));
    let f: serde_json::Value = serde_json::from_slice(&env.out(&["features"]).stdout).unwrap();
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));

    let status = || {
        let s: serde_json::Value =
            serde_json::from_slice(&env.out(&["state", "c6"]).stdout).unwrap();
        s["status"].as_str().unwrap().to_string()
    };
    assert!(env
        .status(&["run", "--detach", "--bundle", &env.bundle(), "c6"])
        .success());
    assert!(env.out(&["pause", "c6"]).status.success());
    assert_eq!(status(), "paused");
    assert!(env.out(&["resume", "c6"]).status.success());
    assert_eq!(status(), "running");
    let o = env.out(&["resume", "c6"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("only a paused container"));
    assert!(env.out(&["pause", "c6"]).status.success());
    assert!(env.out(&["delete", "--force", "c6"]).status.success());
    assert!(
        env.out(&["state", "c6"]).status.code() != Some(0),
        "deleted while paused"
    );
}

/// Accepts the one connection a console socket gets and returns the pty's name and master.
fn receive_master(listener: &std::os::unix::net::UnixListener) -> (String, std::fs::File) {
    use std::os::fd::{FromRawFd, OwnedFd};
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener
        .accept()
        .expect("the runtime connected before returning");
    conn.set_nonblocking(false).unwrap();
    let mut name = [0u8; 128];
    let (bytes, fd) = {
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let msg = nix::sys::socket::recvmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a file descriptor in the message");
        (msg.bytes, fd)
    };
    let pty_name = String::from_utf8_lossy(&name[..bytes]).to_string();
    assert!(pty_name.starts_with("/dev/pts/"), "{pty_name:?}");
    // SAFETY: the fd was just received and belongs to nothing else.
    #[allow(unsafe_code)]
    let master = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    (pty_name, master)
}

/// Reads a pty master until `until` shows up, the terminal closes, or 10 s pass.
fn read_until(master: &mut std::fs::File, until: &str) -> String {
    use std::io::Read;
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(until) && std::time::Instant::now() < deadline {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

/// A bundle with `process.terminal: true` and `--console-socket`: the pty master arrives on
/// the socket during create (as containerd's shim expects), and the workload's stdin and
/// stdout are that terminal; `exec --tty --console-socket` gets a terminal of its own.
/// Without a socket, a terminal is refused with what to pass.
#[test]
fn a_terminal_s_master_is_sent_to_the_console_socket() {
    use std::io::Write;
    let env = CliEnv::new(
        "console",
        r#"{"ociVersion":"1.0.2","process":{"terminal":true,"user":{"uid":0,"gid":0},"args":["sh","-c","tty; test -t 0 && echo stdin-is-a-tty; read x; echo got-$x; sleep 30"],"env":["PATH=/bin"],"cwd":"/"},"root":{"path":"rootfs","readonly":true},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
    );
    let o = env.out(&["create", "--bundle", &env.bundle(), "c7"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--console-socket"), "{err}");

    let sock_path = env.t.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let sock = sock_path.to_str().unwrap();
    let st = env.status(&[
        "create",
        "--bundle",
        &env.bundle(),
        "--console-socket",
        sock,
        "c7",
    ]);
    assert!(st.success(), "create with a console socket");
    let (pty_name, mut master) = receive_master(&listener);

    assert!(env.out(&["start", "c7"]).status.success());
    master.write_all(b"hello\n").unwrap();
    let seen = read_until(&mut master, "got-hello");
    assert!(seen.contains(&pty_name), "tty names the pty: {seen:?}");
    assert!(seen.contains("stdin-is-a-tty"), "{seen:?}");
    assert!(seen.contains("got-hello"), "{seen:?}");

    let exec_sock = env.t.path().join("exec.sock");
    let exec_listener = std::os::unix::net::UnixListener::bind(&exec_sock).unwrap();
    let o = env.out(&[
        "exec",
        "--tty",
        "--console-socket",
        exec_sock.to_str().unwrap(),
        "c7",
        "sh",
        "-c",
        "test -t 1 && echo exec-on-a-tty $(tty); exit 5",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (exec_pty, mut exec_master) = receive_master(&exec_listener);
    assert_ne!(exec_pty, pty_name, "an exec gets a terminal of its own");
    let seen = read_until(&mut exec_master, &exec_pty);
    assert!(
        seen.contains(&format!("exec-on-a-tty {exec_pty}")),
        "{seen:?}"
    );
}

/// `update` (what `docker update` runs through containerd's shim): flags and an OCI
/// `LinuxResources` document on stdin change the running container's cgroup; what cannot be
/// applied is refused by name and changes nothing.
#[test]
fn update_changes_the_limits_of_a_running_container() {
    let env = CliEnv::new("update", SLEEPER);
    assert!(env
        .status(&["run", "--detach", "--bundle", &env.bundle(), "c8"])
        .success());
    let cg = swarm_runtime::cgroup::Cgroup::new(
        swarm_runtime::cgroup::detect().unwrap(),
        &env.parent,
        "c8",
    );
    let read = |file: &str| {
        cg.dirs()
            .iter()
            .map(|d| d.join(file))
            .find(|p| p.exists())
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
            .unwrap_or_else(|| panic!("no {file} in {:?}", cg.dirs()))
    };
    let o = env.out(&["update", "--memory", "64m", "--pids-limit", "50", "c8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cg.stats().memory_limit_bytes, Some(64 << 20));
    assert_eq!(read("pids.max"), "50");

    let mut child = env
        .cmd(&["update", "--resources", "-", "c8"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        br#"{"memory":{"limit":33554432,"swap":33554432},"cpu":{"shares":0,"quota":25000,"period":100000,"cpus":"","mems":""},"pids":{"limit":0}}"#,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(cg.stats().memory_limit_bytes, Some(32 << 20));
    assert_eq!(read("pids.max"), "50", "pids limit 0 leaves it as it was");
    let cpu = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && cg.dirs().len() == 1
    {
        read("cpu.max")
    } else {
        format!("{} {}", read("cpu.cfs_quota_us"), read("cpu.cfs_period_us"))
    };
    assert_eq!(cpu, "25000 100000");

    let o = env.out(&["update", "--cpuset-cpus", "0", "c8"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cpuset-cpus is not supported"));
    assert_eq!(cg.stats().memory_limit_bytes, Some(32 << 20), "unchanged");

    // events --stats: one runc-shaped record with the limits now in force.
    let o = env.out(&["events", "--stats", "c8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "c8");
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 32u64 << 20);
    assert_eq!(ev["data"]["pids"]["limit"], 50);
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    assert!(ev["data"]["cpu"]["usage"]["total"].as_u64().is_some());
    // Without --stats, a record every interval while the container runs.
    let mut follower = env
        .cmd(&["events", "--interval", "100ms", "c8"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(follower.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains(r#""type":"stats""#), "{first}");
    assert!(env.out(&["kill", "c8", "KILL"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ended = loop {
        if let Some(st) = follower.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "events never ended");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(ended.success(), "events ends with the container");
    common::wait_until("stopped", std::time::Duration::from_secs(10), || {
        let s: serde_json::Value =
            serde_json::from_slice(&env.out(&["state", "c8"]).stdout).unwrap();
        s["status"] == "stopped"
    });
    let o = env.out(&["update", "--memory", "128m", "c8"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("has not stopped"));
}
