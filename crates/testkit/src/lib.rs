//! Test harness: real `swarmd` processes on loopback ports with their own state dirs, driven
//! through `swarmctl` and the gRPC control API. Faults are injected with signals. Every
//! process is killed and every directory removed when the harness is dropped, also when a test
//! fails.
#![forbid(unsafe_code)]

pub mod chaos;
mod cleanup;
pub mod metrics;
pub mod netns;
pub mod procstat;
pub use cleanup::*;

use anyhow::{anyhow, bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use swarm_api::control::control_client::ControlClient;
use tonic::transport::Channel;

/// Directory holding the workspace's built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SWARM_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; panics with the fix when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (`cargo build --bins`, or `scripts/test`)",
        p.display()
    );
    p
}

/// A free TCP port on loopback (bound and released; fine for tests).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports for daemons a test starts.
///
/// They come from below the kernel's ephemeral range, so neither an outgoing connection nor
/// another `bind(":0")` can take one between this call and the daemon's own bind (a metrics port
/// once went to one of the daemon's own outgoing connections in CI), and a process-wide cursor
/// never hands the same port out twice. Each candidate is bound once to check it is free.
pub fn free_ports<const N: usize>() -> [u16; N] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = private_port_range();
    let span = hi - lo;
    // Start each test process at a different place, so two test binaries running at once
    // (or a daemon a killed test left behind) rarely meet.
    let _ = NEXT.compare_exchange(
        0,
        1 + std::process::id() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut out = [0u16; N];
    let mut got = 0;
    for _ in 0..span {
        let port = (lo + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out[got] = port;
            got += 1;
            if got == N {
                return out;
            }
        }
    }
    panic!("no free port left in {lo}..{hi} on 127.0.0.1");
}

/// Ports `[lo, hi)` below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn private_port_range() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let hi = ephemeral_low.clamp(12_000, 65_536);
    (hi - 10_000, hi)
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `swarmd` process (or its stopped state dir).
pub struct Daemon {
    pub name: String,
    pub state_dir: PathBuf,
    pub addr: String,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Runs the daemon under this prefix (e.g. `nsenter --net=...`).
    pub prefix: Vec<String>,
    /// Extra environment of the daemon (e.g. a per-process fake clock); kept across restarts.
    pub env: Vec<(String, String)>,
    /// The cluster registry address it serves on when it is a manager (`--registry-addr`).
    pub registry: String,
}

impl Daemon {
    pub fn socket(&self) -> PathBuf {
        self.state_dir.join("swarmd.sock")
    }
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }
    /// Length of the daemon's log now: pass it to [`Daemon::log_since`] to see only what a
    /// later phase logged (the log is appended to across restarts).
    pub fn log_len(&self) -> usize {
        std::fs::metadata(&self.log)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// What the daemon logged after `offset` (from [`Daemon::log_len`]).
    pub fn log_since(&self, offset: usize) -> String {
        let s = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(s.get(offset..).unwrap_or_default()).into_owned()
    }

    /// Last lines of the daemon's log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// A cluster of local `swarmd` processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Daemon>,
    /// Extra flags every daemon gets.
    pub extra_args: Vec<String>,
    /// Environment the next added daemon gets (then cleared).
    pub next_env: Vec<(String, String)>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    pub fn new() -> Self {
        Cluster {
            dir: tempfile::Builder::new()
                .prefix("swarm-test-")
                .tempdir()
                .expect("tempdir"),
            nodes: Vec::new(),
            extra_args: Vec::new(),
            next_env: Vec::new(),
        }
    }

    fn spawn(&mut self, idx: usize) -> anyhow::Result<()> {
        let d = &mut self.nodes[idx];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.log)?;
        let mut cmd = if d.prefix.is_empty() {
            Command::new(bin("swarmd"))
        } else {
            let mut c = Command::new(&d.prefix[0]);
            c.args(&d.prefix[1..]).arg(bin("swarmd"));
            c
        };
        let child = cmd
            .args(&d.args)
            .envs(d.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn swarmd")?;
        d.child = Some(child);
        Ok(())
    }

    /// State dir the next added daemon will get (so a test can mount something there first).
    pub fn next_state_dir(&self) -> PathBuf {
        self.dir.path().join(format!("n{}", self.nodes.len() + 1))
    }

    fn add(&mut self, extra: &[String]) -> anyhow::Result<usize> {
        self.add_on(extra, None, Vec::new())
    }

    /// Adds a daemon listening on `ip:4242` (a network-namespace host) or on a free loopback
    /// port, run under `prefix`.
    pub fn add_on(
        &mut self,
        extra: &[String],
        ip: Option<&str>,
        prefix: Vec<String>,
    ) -> anyhow::Result<usize> {
        let idx = self.nodes.len();
        let name = format!("n{}", idx + 1);
        let state_dir = self.next_state_dir();
        let [listen_port, registry_port] = free_ports::<2>();
        let addr = match ip {
            Some(ip) => format!("{ip}:4242"),
            None => format!("127.0.0.1:{listen_port}"),
        };
        let mut args = vec![
            "--state-dir".to_string(),
            state_dir.display().to_string(),
            "--listen-addr".into(),
            addr.clone(),
            "--hostname".into(),
            name.clone(),
        ];
        // Every daemon gets its own registry port (several managers share loopback).
        let given = self
            .extra_args
            .iter()
            .chain(extra)
            .position(|a| a == "--registry-addr");
        let all: Vec<&String> = self.extra_args.iter().chain(extra).collect();
        let registry = match given.and_then(|i| all.get(i + 1)) {
            Some(r) => r.to_string(),
            None => {
                let r = match ip {
                    Some(ip) => format!("{ip}:4243"),
                    None => format!("127.0.0.1:{registry_port}"),
                };
                args.extend(["--registry-addr".to_string(), r.clone()]);
                r
            }
        };
        if !self
            .extra_args
            .iter()
            .chain(extra)
            .any(|a| a == "--log-level")
        {
            args.extend(["--log-level".to_string(), "debug".to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args.extend(extra.iter().cloned());
        let log = self.dir.path().join(format!("{name}.log"));
        self.nodes.push(Daemon {
            name,
            state_dir,
            addr,
            args,
            child: None,
            log,
            prefix,
            env: self.next_env.drain(..).collect(),
            registry,
        });
        self.spawn(idx)?;
        Ok(idx)
    }

    /// Starts the first manager of a new cluster and waits until it serves requests.
    pub fn init(&mut self) -> anyhow::Result<usize> {
        let i = self.add(&[])?;
        self.wait_ready(i)?;
        Ok(i)
    }

    /// Starts the first manager of a new cluster on a network-namespace host.
    pub fn init_on(&mut self, hosts: &netns::Hosts, h: usize) -> anyhow::Result<usize> {
        let i = self.add_on(&[], Some(&hosts.ips[h]), hosts.exec_prefix(h))?;
        self.wait_ready(i)?;
        Ok(i)
    }

    /// Starts a node on host `h` joining through node `via` with `token`.
    pub fn join_on(
        &mut self,
        hosts: &netns::Hosts,
        h: usize,
        via: usize,
        token: &str,
    ) -> anyhow::Result<usize> {
        let join = self.nodes[via].addr.clone();
        self.add_on(
            &["--join".into(), join, "--token".into(), token.into()],
            Some(&hosts.ips[h]),
            hosts.exec_prefix(h),
        )
    }

    /// Starts a node that joins through node `via` with `token`; waits until it is serving
    /// (managers) or registered (workers).
    pub fn join(&mut self, via: usize, token: &str) -> anyhow::Result<usize> {
        let join = self.nodes[via].addr.clone();
        let i = self.add(&["--join".into(), join, "--token".into(), token.into()])?;
        Ok(i)
    }

    /// Joins a manager and waits until it is a voter that serves requests.
    pub fn join_manager(&mut self, via: usize) -> anyhow::Result<usize> {
        let token = self.token(via, "manager")?;
        let i = self.join(via, &token)?;
        let name = self.nodes[i].name.clone();
        self.wait_ready(i)?;
        wait_until(
            &format!("{name} to be a reachable manager"),
            Duration::from_secs(30),
            || {
                let out = self.ctl(via, &["node", "ls", "--format", "json"]).ok()?;
                out.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .any(|v| {
                        v["Hostname"] == name.as_str()
                            && (v["ManagerStatus"] == "Reachable" || v["ManagerStatus"] == "Leader")
                    })
                    .then_some(())
            },
        )?;
        Ok(i)
    }

    /// Waits until node `i` answers a linearizable read on its control socket.
    pub fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.ctl(i, &["cluster", "inspect"]).is_ok() {
                return Ok(());
            }
            if !self.nodes[i].is_running() {
                bail!(
                    "{} exited:\n{}",
                    self.nodes[i].name,
                    self.nodes[i].log_tail(30)
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} not ready after 60s:\n{}",
                    self.nodes[i].name,
                    self.nodes[i].log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs swarmctl against node `i`; Ok(stdout) on success, Err(stderr) otherwise.
    pub fn ctl(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let out = self.ctl_raw(i, args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    pub fn ctl_raw(&self, i: usize, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(bin("swarmctl"))
            .arg("-H")
            .arg(self.nodes[i].host())
            .args(args)
            .output()
            .context("run swarmctl")
    }

    pub fn token(&self, i: usize, role: &str) -> anyhow::Result<String> {
        Ok(self
            .ctl(i, &["cluster", "join-token", role, "-q"])?
            .trim()
            .to_string())
    }

    /// gRPC control client on node `i`'s socket.
    pub async fn client(&self, i: usize) -> anyhow::Result<ControlClient<Channel>> {
        let t = swarm_api::transport::Target::Unix(self.nodes[i].socket().display().to_string());
        Ok(ControlClient::new(swarm_api::transport::connect(&t).await?)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES))
    }

    /// Index of the node `i` believes is the leader.
    pub fn leader(&self, i: usize) -> Option<usize> {
        let out = self.ctl(i, &["node", "ls", "--format", "json"]).ok()?;
        let host = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["ManagerStatus"] == "Leader")?["Hostname"]
            .as_str()?
            .to_string();
        self.nodes.iter().position(|d| d.name == host)
    }

    /// Sends `sig` to node `i`'s process.
    pub fn signal(&self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.nodes[i].pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait for a clean exit (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGTERM);
        if let Some(mut c) = self.nodes[i].child.take() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again with the same command line (its state dir is kept).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// SIGKILLs every container process of node `i` (found through its cgroup parent).
    pub fn kill_containers(&self, i: usize) -> usize {
        let mut n = 0;
        for pid in container_pids(&self.nodes[i].state_dir) {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// Everything the daemons logged, for failure messages.
    pub fn dump(&self) -> String {
        self.nodes
            .iter()
            .map(|d| format!("===== {} ({}) =====\n{}", d.name, d.addr, d.log_tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn state_dir(&self, i: usize) -> &Path {
        &self.nodes[i].state_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // Containers outlive their daemon by design: stop them, then their cgroups and mounts.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut left = 0;
            for i in 0..self.nodes.len() {
                left += self.kill_containers(i);
            }
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for d in &self.nodes {
            remove_cgroups(&d.state_dir);
            unmount_under(&d.state_dir);
            remove_host_networks(&d.state_dir);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
        if std::env::var_os("SWARM_KEEP_TEST_DIRS").is_some() {
            let p = self.dir.path().to_path_buf();
            eprintln!("keeping {}", p.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}
