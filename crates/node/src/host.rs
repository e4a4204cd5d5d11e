//! What this host is and how the process behaves on it: logging, the state-dir lock, the
//! host's description and advertised address, the fd limit, termination signals.

use crate::args::Args;
use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use swarm_types::objects::{NodeDescription, Platform};

pub(crate) fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(match args.log_level.as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => {
            format!("{l},openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn,rustls=warn,tokio_rustls=warn")
        }
        other => other.to_string(),
    })
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.log_format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Holds an exclusive lock on the state dir for the life of the process.
pub(crate) fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("create state dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("swarmd.lock"))?;
    f.try_lock().map_err(|_| {
        anyhow!(
            "another swarmd is already using state dir {}; stop it or pass a different --state-dir",
            dir.display()
        )
    })?;
    Ok(f)
}

pub(crate) fn hostname(args: &Args) -> String {
    args.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
}

pub(crate) fn describe(args: &Args) -> anyhow::Result<NodeDescription> {
    let mut engine_labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| anyhow!("invalid --label {l:?}: expected KEY=VALUE"))?;
        engine_labels.insert(k.to_string(), v.to_string());
    }
    let mem_kib: i64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i64;
    Ok(NodeDescription {
        hostname: hostname(args),
        platform: Platform {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        },
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: mem_kib * 1024,
        engine_labels,
        version: swarm_api::VERSION.into(),
    })
}

/// The address to advertise: explicit, else the listen address when it is specific, else the
/// local address that routes towards `towards` (no packet is sent), else loopback.
pub(crate) fn advertise_addr(args: &Args, towards: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = &args.advertise_addr {
        return Ok(a.clone());
    }
    let listen: std::net::SocketAddr = args.listen_addr.parse().with_context(|| {
        format!(
            "invalid --listen-addr {:?}: expected IP:PORT",
            args.listen_addr
        )
    })?;
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    if let Some(t) = towards.and_then(|t| t.parse::<std::net::SocketAddr>().ok()) {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        if s.connect(t).is_ok() {
            if let Ok(local) = s.local_addr() {
                return Ok(format!("{}:{}", local.ip(), listen.port()));
            }
        }
    }
    tracing::warn!("no --advertise-addr given and the listen address is unspecified; advertising 127.0.0.1 (other hosts cannot join)");
    Ok(format!("127.0.0.1:{}", listen.port()))
}

/// Managers hold a connection per agent: lift the soft open-files limit to the hard one.
pub(crate) fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// How long a stopping swarmd waits for its servers and Raft to close before it exits anyway.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// SIGTERM and SIGINT, caught from [`Signals::install`] on.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (within a tokio runtime).
    pub(crate) fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT. From then on, a second one exits the process
    /// at once (128 + signal), whatever the shutdown is doing.
    pub(crate) async fn first(mut self) {
        use nix::sys::signal::Signal;
        let first = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        tracing::info!("{first} received; stopping (send it again to exit at once)");
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = self.term.recv() => 128 + Signal::SIGTERM as i32,
                _ = self.int.recv() => 128 + Signal::SIGINT as i32,
            };
            eprintln!("swarmd: second signal; exiting now");
            std::process::exit(code);
        });
    }
}
