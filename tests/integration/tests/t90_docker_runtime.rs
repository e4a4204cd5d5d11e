//! Docker drives `swarm-runtime` through containerd's runc shim: a private `dockerd` (its own
//! data root, exec root, socket, empty config, no bridge, no iptables) with
//! `--add-runtime swarm=target/debug/swarm-runtime`, so the machine's own daemon is untouched.
//! Checked: `docker run --runtime swarm` runs the command, its output and exit status reach
//! Docker (as with runc on the same daemon); `docker exec` (exit status, stdin, user,
//! detached) and `docker top`; `docker pause`/`unpause`; `docker stop` stops a detached
//! container; `-t` for run and exec (the pty master through containerd's console socket);
//! `docker update` of memory, CPU quota and pids limit (a cpuset is refused by name); masked
//! paths (`--security-opt systempaths=unconfined`) and `--device` from Docker's config;
//! `--privileged` (no seccomp filter, writable /sys); and a dockerd with `--userns-remap
//! default` (its user namespace maps reach the workload and `docker exec`).
//! (`swarm-runtime events` is tested in the runtime's own CLI tests: Docker does not call it.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;
use swarm_integration::{busybox_tar, init_tracing};
use swarm_testkit::wait_until;
use tracing::info;

struct Dockerd {
    dir: PathBuf,
    child: Child,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        Self::start_with("", &[])
    }

    /// A private dockerd whose directory is tagged `tag`, with `extra` flags.
    fn start_with(tag: &str, extra: &[&str]) -> Option<Dockerd> {
        let dockerd = which("dockerd")?;
        which("docker")?;
        // Short: containerd's sockets live under the exec root (108-byte limit).
        let dir = PathBuf::from(format!("/tmp/swd{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .args(extra)
            .arg("--add-runtime")
            .arg(format!(
                "swarm={}",
                swarm_testkit::bin("swarm-runtime").display()
            ))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { dir, child };
        wait_until("private dockerd answers", Duration::from_secs(60), || {
            d.docker(&["version"]).status.success().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
        Some(d)
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .output()
            .expect("run docker")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "t90-detached"]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = wait_until("dockerd exits", Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| Path::new(c).is_file())
    })
}

#[test]
fn docker_runs_containers_on_swarm_runtime() {
    init_tracing();
    // Docker is part of every machine this suite runs on (CI included): without it the test
    // fails rather than reporting ok for work it did not do.
    let d = Dockerd::start().expect(
        "docker and dockerd must be on PATH: this test drives swarm-runtime through a private dockerd",
    );
    let tar = busybox_tar("v1");
    let o = d.docker(&["import", tar.to_str().unwrap(), "t90-busybox:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    info!("phase: docker run's output and exit status, runc and swarm side by side");
    for runtime in ["runc", "swarm"] {
        let o = d.docker(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "none",
            "t90-busybox:1",
            "sh",
            "-c",
            "echo hello from $(cat /etc/image-version); exit 7",
        ]);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        info!(
            "{runtime}: status {:?} out {out:?} err {err:?}",
            o.status.code()
        );
        assert_eq!(o.status.code(), Some(7), "{runtime}: {err}\n{}", d.log());
        assert_eq!(out.trim(), "hello from v1", "{runtime}");
    }

    info!("phase: masked paths and devices from Docker's config, runc and swarm side by side");
    for runtime in ["runc", "swarm"] {
        let run = |extra: &[&str], cmd: &str| {
            let mut args = vec!["run", "--rm", "--runtime", runtime, "--network", "none"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["t90-busybox:1", "sh", "-c", cmd]);
            let o = d.docker(&args);
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).trim().to_string(),
                String::from_utf8_lossy(&o.stderr).to_string(),
            )
        };
        let (code, out, err) = run(&[], "head -c 16 /proc/timer_list; echo .");
        assert_eq!(
            (code, out.as_str()),
            (Some(0), "."),
            "{runtime}: masked by default: {err}"
        );
        let (code, out, err) = run(
            &["--security-opt", "systempaths=unconfined"],
            "head -c 16 /proc/timer_list; echo .",
        );
        assert_eq!(code, Some(0), "{runtime}: {err}");
        assert!(
            out.starts_with("Timer List"),
            "{runtime}: unmasked: {out:?} {err}"
        );
        if Path::new("/dev/loop-control").exists() {
            let (code, _, err) = run(
                &["--device", "/dev/loop-control"],
                "test -c /dev/loop-control",
            );
            assert_eq!(code, Some(0), "{runtime}: --device: {err}");
            let (code, _, _) = run(&[], "test -e /dev/loop-control");
            assert_eq!(code, Some(1), "{runtime}: no device unless asked");
        }
        // --privileged: no seccomp filter and a writable /sys, as runc would give it (runc
        // itself cannot run a privileged container on this machine: it fails to apply
        // capabilities the host's bounding set lacks, so only ours is checked); the default
        // keeps both.
        let probe = "grep Seccomp: /proc/self/status; grep \" /sys \" /proc/mounts";
        let (code, out, err) = run(&["--privileged"], probe);
        if runtime == "swarm" {
            assert_eq!(code, Some(0), "{runtime}: {err}");
            assert!(out.contains("Seccomp:\t0"), "{runtime}: privileged: {out}");
            assert!(out.contains(" sysfs rw,"), "{runtime}: privileged: {out}");
        } else {
            info!("{runtime} --privileged: status {code:?}, {out} {err}");
        }
        let (code, out, err) = run(&[], probe);
        assert_eq!(code, Some(0), "{runtime}: {err}");
        assert!(out.contains("Seccomp:\t2"), "{runtime}: default: {out}");
        assert!(out.contains(" sysfs ro,"), "{runtime}: default: {out}");
    }

    info!("phase: a detached container runs until docker stop, which reports its exit");
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        "t90-detached",
        "--runtime",
        "swarm",
        "--network",
        "none",
        "t90-busybox:1",
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = |f: &str| {
        String::from_utf8_lossy(&d.docker(&["inspect", "-f", f, "t90-detached"]).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(state("{{.State.Running}}"), "true");

    info!("phase: docker exec (exit status, stdin, user, detached) and docker top");
    let o = d.docker(&[
        "exec",
        "t90-detached",
        "sh",
        "-c",
        "echo exec $(cat /etc/image-version) $(id -u); exit 3",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "exec v1 0");
    let o = d.docker(&["exec", "-u", "1000", "t90-detached", "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1000");
    let mut child = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", d.dir.join("docker.sock").display()))
        .args(["exec", "-i", "t90-detached", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"through stdin\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "through stdin");
    let o = d.docker(&["exec", "-d", "t90-detached", "sleep", "4321"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_until(
        "the detached exec shows in docker top",
        Duration::from_secs(20),
        || {
            let top =
                String::from_utf8_lossy(&d.docker(&["top", "t90-detached"]).stdout).to_string();
            (top.contains("sleep 4321") && top.contains("sleep 1000")).then_some(())
        },
    )
    .unwrap();
    info!("phase: docker run -t and docker exec -t (a terminal through the console socket)");
    let o = d.docker(&["exec", "-t", "t90-detached", "sh", "-c", "tty; exit 4"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("/dev/pts/"),
        "exec -t runs on a terminal: {out:?}"
    );
    for runtime in ["runc", "swarm"] {
        let o = d.docker(&[
            "run",
            "--rm",
            "-t",
            "--runtime",
            runtime,
            "--network",
            "none",
            "t90-busybox:1",
            "sh",
            "-c",
            "tty; exit 6",
        ]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        info!("{runtime} -t: status {:?} out {out:?}", o.status.code());
        assert_eq!(o.status.code(), Some(6), "{runtime}: {out}\n{}", d.log());
        assert!(
            out.contains("/dev/pts/0"),
            "{runtime}: run -t on a terminal: {out:?}"
        );
    }

    info!("phase: docker pause and unpause (the freezer cgroup)");
    let o = d.docker(&["pause", "t90-detached"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    assert_eq!(state("{{.State.Paused}}"), "true");
    let o = d.docker(&["unpause", "t90-detached"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(state("{{.State.Paused}}"), "false");
    let o = d.docker(&["exec", "t90-detached", "true"]);
    assert!(o.status.success(), "runs again after unpause");

    info!("phase: docker update changes the running container's cgroup");
    let o = d.docker(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "t90-detached",
    ]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let pid = state("{{.State.Pid}}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let limit = |controller: &str, file: &str| -> Option<String> {
        cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let dir = if ctrls.is_empty() {
                PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'))
            } else if ctrls.split(',').any(|c| c == controller) {
                PathBuf::from("/sys/fs/cgroup")
                    .join(ctrls)
                    .join(path.trim_start_matches('/'))
            } else {
                return None;
            };
            std::fs::read_to_string(dir.join(file))
                .ok()
                .map(|s| s.trim().to_string())
        })
    };
    let mem = limit("memory", "memory.limit_in_bytes").or_else(|| limit("memory", "memory.max"));
    assert_eq!(mem.as_deref(), Some("67108864"), "{cgroups}");
    assert_eq!(
        limit("pids", "pids.max").as_deref(),
        Some("50"),
        "{cgroups}"
    );
    let quota = limit("cpu", "cpu.cfs_quota_us")
        .or_else(|| limit("cpu", "cpu.max").map(|m| m.split(' ').next().unwrap().to_string()));
    assert_eq!(quota.as_deref(), Some("50000"), "{cgroups}");
    let o = d.docker(&["update", "--cpuset-cpus", "0", "t90-detached"]);
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "a cpuset is refused: {both}");
    assert!(both.contains("cpu.cpus"), "refused by name: {both}");

    let o = d.docker(&["stop", "-t", "5", "t90-detached"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(state("{{.State.Running}}"), "false");
    // Our init is pid 1 and forwards SIGTERM, so sleep dies of it (Docker's --init).
    assert_eq!(state("{{.State.ExitCode}}"), "143");
}

/// Docker's `--userns-remap`: dockerd shifts the image to its `dockremap` ids and asks for a
/// user namespace with those maps; the workload and `docker exec` run in it, as with runc.
#[test]
fn docker_userns_remap_runs_on_swarm_runtime() {
    init_tracing();
    let d = Dockerd::start_with("u", &["--userns-remap", "default"]).expect(
        "docker and dockerd must be on PATH: this test drives swarm-runtime through a private dockerd",
    );
    let tar = busybox_tar("v1");
    let o = d.docker(&["import", tar.to_str().unwrap(), "t90-busybox:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // dockerd made `dockremap` and its ranges (default) before it answered.
    let start: u32 = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("dockremap:"))
        .and_then(|r| r.split(':').next()?.parse().ok())
        .expect("dockerd --userns-remap default added dockremap to /etc/subuid");
    let map_line = format!("0 {start} 65536");
    let words = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for runtime in ["runc", "swarm"] {
        let o = d.docker(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "none",
            "t90-busybox:1",
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; touch /etc/x && echo ETC-OK",
        ]);
        assert!(
            o.status.success(),
            "{runtime}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            words(&o.stdout),
            format!("{map_line} 0 ETC-OK"),
            "{runtime}"
        );
    }
    let name = format!("t90-remap-{}", std::process::id());
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "swarm",
        "--network",
        "none",
        "t90-busybox:1",
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d.docker(&["exec", &name, "sh", "-c", "cat /proc/self/uid_map; id -u"]);
    let _ = d.docker(&["rm", "-f", &name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        words(&o.stdout),
        format!("{map_line} 0"),
        "exec joins the namespace"
    );
}
