//! Start-up logic of `swarmd`: create a cluster, join one, or resume from the state dir; then
//! run the manager (if this node is one) and the agent until a termination signal.

use crate::agent_route::AgentRouter;
use crate::args::Args;
use crate::identity::{self, Identity};
use anyhow::{anyhow, bail, Context};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::{ManagerPromoteRequest, RenewRequest};
use swarm_manager::nodes::NodeServiceImpl;
use swarm_manager::{Manager, ManagerConfig};
use swarm_types::objects::{
    ClusterSpec, JoinTokens, ManagerStatus, NodeDescription, NodeState, NodeStatus, Platform,
};
use swarm_types::spec::{NodeRole, NodeSpec};
use swarm_types::store::{Op, WriteBatch};
use swarm_types::token::JoinToken;
use swarm_types::{Cluster, ClusterId, Node, NodeId, Object};
use tokio::sync::watch;

fn init_logging(args: &Args) {
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
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
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

fn hostname(args: &Args) -> String {
    args.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
}

fn describe(args: &Args) -> anyhow::Result<NodeDescription> {
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
fn advertise_addr(args: &Args, towards: Option<&str>) -> anyhow::Result<String> {
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

fn manager_config(args: &Args, id: &Identity) -> ManagerConfig {
    let mut c = ManagerConfig::new(
        id.node_id.clone(),
        id.raft_id,
        id.advertise_addr.clone(),
        args.state_dir.join("raft"),
    );
    c.heartbeat_ms = args.raft_heartbeat_ms;
    c.election_timeout_min_ms = args.raft_election_timeout_ms;
    c.election_timeout_max_ms = args.raft_election_timeout_ms * 2;
    c.snapshot_interval = args.raft_snapshot_interval;
    c.logs_to_keep = args.raft_logs_to_keep;
    c
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging(&args);
    args.check_addr_pools().map_err(|e| anyhow!(e))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_fd_limit();
    let _lock = lock_state_dir(&args.state_dir)?;
    let description = describe(&args)?;

    let mut id = match identity::load(&args.state_dir)? {
        Some(id) => {
            if args.join.is_some() {
                tracing::info!(
                    "state dir already holds node {}; resuming (--join ignored)",
                    id.node_id
                );
            }
            id
        }
        None => match &args.join {
            None => new_identity(&args)?,
            Some(addr) => join(&args, addr, &description).await?,
        },
    };

    let certs = identity::load_certs(&args.state_dir)?;
    let node_certs = swarm_api::tls::NodeCerts::new(&certs.ca_pem, &certs.cert_pem, &certs.key_pem)
        .context("load this node's certificate")?;
    let client_tls = swarm_api::tls::client_config(&node_certs)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut manager = None;
    let mut agent_router = AgentRouter::new(id.node_id.to_string(), None);
    let sock = args
        .control_socket
        .clone()
        .unwrap_or_else(|| args.state_dir.join("swarmd.sock"));
    if id.role == NodeRole::Manager {
        let listener = tokio::net::TcpListener::bind(&args.listen_addr)
            .await
            .with_context(|| {
                format!(
                    "listen on {}; is the port already in use?",
                    args.listen_addr
                )
            })?;
        let mut mcfg = manager_config(&args, &id);
        mcfg.cluster_id = id.cluster_id.clone();
        mcfg.tls = Some(client_tls.clone());
        let m = Manager::start(mcfg).await?;
        let nodes = NodeServiceImpl::new(m.clone());
        agent_router = AgentRouter::new(
            id.node_id.to_string(),
            Some((m.clone(), node_certs.clone())),
        );
        tasks.push(crate::server::serve_tcp(
            listener,
            swarm_api::tls::server_config(&node_certs)?,
            m.clone(),
            nodes.clone(),
            agent_router.clone(),
            shutdown_rx.clone(),
        ));
        {
            let nodes = nodes.clone();
            swarm_manager::supervise::spawn(
                "node monitor",
                move || nodes.clone().run_monitor(),
                shutdown_rx.clone(),
            );
        }
        if !id.complete {
            if id.pending_token.is_empty() && !id.promoting {
                bootstrap(&m, &id, &description, &certs, &args).await?;
                identity::remove_bootstrap_ca_key(&args.state_dir);
            } else {
                promote(&id, &client_tls).await?;
                id.pending_token.clear();
                id.promoting = false;
            }
            id.complete = true;
            identity::save(&args.state_dir, &id)?;
        }
        let loop_cfg = swarm_manager::orchestration::LoopConfig {
            node_down_grace: args.node_down_grace,
            ..Default::default()
        };
        {
            let (m, shutdown) = (m.clone(), shutdown_rx.clone());
            swarm_manager::supervise::spawn(
                "orchestration",
                move || {
                    swarm_manager::orchestration::run(m.clone(), loop_cfg.clone(), shutdown.clone())
                },
                shutdown_rx.clone(),
            );
        }
        tasks.push(
            crate::registry::start(
                &args,
                &id,
                &description.hostname,
                client_tls.clone(),
                m.clone(),
                shutdown_rx.clone(),
            )
            .await?,
        );
        tracing::info!(node = %id.node_id, addr = %id.advertise_addr, "manager running");
        manager = Some(m);
    } else {
        serve_worker(
            &args,
            &id,
            &node_certs,
            &agent_router,
            &shutdown_rx,
            &mut tasks,
        )
        .await?;
        tracing::info!(node = %id.node_id, "worker running");
    }

    // The agent: heartbeats and task execution, talking to this node's own manager first.
    let mut addrs = id.managers.clone();
    if id.role == NodeRole::Manager {
        addrs.retain(|m| *m != id.advertise_addr);
        addrs.insert(0, id.advertise_addr.clone());
    }
    let managers = swarm_agent::managers::ManagerSet::with_tls(addrs, Some(client_tls.clone()));
    tokio::spawn(renew_certificates(
        args.state_dir.clone(),
        node_certs.clone(),
        managers.clone(),
        args.cert_renew_after,
        shutdown_rx.clone(),
    ));
    let crate::agent::Parts {
        images,
        volumes,
        puller,
        net,
        unavailable,
    } = crate::agent::start(&args, &id, &managers, &shutdown_rx).await;
    let (role_tx, mut role_rx) = watch::channel(None);
    let session = swarm_agent::session::Session {
        node_id: id.node_id.clone(),
        managers: managers.clone(),
        description,
        desired_role: Some(role_tx),
        unavailable,
    };
    tasks.push(tokio::spawn(session.run(shutdown_rx.clone())));
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(addr.clone(), id.node_id.clone(), id.role, manager.clone()).await?;
    }
    // The node-local API answers on every node, so that a worker's socket can say what it is.
    let local = swarm_agent::local::LocalService::new(
        id.node_id.clone(),
        id.role,
        managers.clone(),
        images,
    )
    .with_puller(puller, net)
    .with_volumes(volumes);
    agent_router.set_local(local);
    tasks.push(crate::server::serve_unix(
        &sock,
        manager.clone(),
        agent_router,
        shutdown_rx.clone(),
    )?);

    // Runs until a signal, or until the cluster changes this node's role (promote/demote):
    // then the node takes a certificate for the new role and restarts itself in it.
    // Containers keep running across the restart.
    let mut restart = false;
    let mut fatal = None;
    let signal = Signals::install().first();
    tokio::pin!(signal);
    let raft_stopped = {
        let m = manager.clone();
        async move {
            match m {
                Some(m) => m.fatal().await,
                None => std::future::pending().await,
            }
        }
    };
    tokio::pin!(raft_stopped);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            // Fail-stop: a manager whose Raft node died (its storage failed) would otherwise
            // linger, answering RPCs and never applying, even after the cause is gone.
            e = &mut raft_stopped => {
                tracing::error!(error = %e, "raft stopped on a fatal error; exiting so that a supervisor restarts this manager from its storage");
                fatal = Some(e);
                break;
            }
            changed = role_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let Some((desired, raft_id)) = *role_rx.borrow() else {
                    continue;
                };
                // Same role and same Raft identity: nothing to do. A manager that was
                // removed from Raft and promoted again before it ever ran as a worker (demoted
                // while paused, then promoted) keeps its manager role but gets a new Raft id:
                // it must rejoin under that id, or nobody adds it back to the membership.
                let rejoin = desired == NodeRole::Manager && raft_id != 0 && raft_id != id.raft_id;
                if desired == id.role && !rejoin {
                    continue;
                }
                match switch_role(&args.state_dir, &mut id, desired, raft_id, &managers).await {
                    Ok(()) => {
                        restart = true;
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "role change to {} failed; will retry", desired.as_str()),
                }
            }
        }
    }
    // Containers keep running: nothing below stops them, and the next start re-adopts them.
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    let graceful = async {
        if let Some(m) = manager {
            m.shutdown().await;
        }
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful)
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown did not finish within {SHUTDOWN_GRACE:?}; exiting anyway (Raft state is durable)"
        );
    }
    if let Some(e) = fatal {
        bail!("raft stopped: {e}");
    }
    if restart {
        drop(_lock);
        use std::os::unix::process::CommandExt;
        tracing::info!(role = id.role.as_str(), "restarting in the new role");
        let err = std::process::Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .exec();
        bail!("could not restart swarmd in its new role: {err}");
    }
    Ok(())
}

/// A worker serves its node-local API on its listen address, so that managers can forward
/// operators' `--node` calls to it. A worker whose address is taken (several nodes on one
/// host without their own `--listen-addr`) still runs its tasks; only those calls cannot reach
/// it, which is logged.
async fn serve_worker(
    args: &Args,
    id: &Identity,
    certs: &swarm_api::tls::NodeCerts,
    router: &AgentRouter,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    match tokio::net::TcpListener::bind(&args.listen_addr).await {
        Ok(listener) => tasks.push(crate::server::serve_worker_tcp(
            listener,
            swarm_api::tls::server_config(certs)?,
            id.cluster_id.clone(),
            router.clone(),
            shutdown.clone(),
        )),
        Err(e) => tracing::warn!(
            addr = %args.listen_addr,
            error = %e,
            "cannot listen on --listen-addr: managers cannot forward node-local calls (image build --node, volume --node) to this node; give it a free --listen-addr"
        ),
    }
    Ok(())
}

/// Takes a certificate for the role the cluster wants (the manager signs it with the role from
/// the store) and records the new role; the caller restarts the process.
async fn switch_role(
    state_dir: &std::path::Path,
    id: &mut Identity,
    desired: NodeRole,
    raft_id: u64,
    managers: &swarm_agent::managers::Managers,
) -> anyhow::Result<()> {
    let (cert_pem, key_pem) = renew_once(managers).await?;
    let der = swarm_api::tls::certs_from_pem(&cert_pem)?;
    let got = der
        .first()
        .and_then(|c| swarm_api::tls::identity_of(c.as_ref()))
        .map(|p| p.role)
        .unwrap_or_default();
    if got != desired.as_str() {
        bail!(
            "the manager issued a {got} certificate, not {}; not switching yet",
            desired.as_str()
        );
    }
    let ca_pem = identity::load_certs(state_dir)?.ca_pem;
    identity::save_certs(
        state_dir,
        &identity::Certs {
            ca_pem,
            cert_pem,
            key_pem,
        },
    )?;
    id.managers = managers.addrs();
    id.role = desired;
    if desired == NodeRole::Manager {
        id.raft_id = raft_id;
        id.complete = false;
        id.promoting = true;
    } else {
        id.complete = true;
        id.promoting = false;
    }
    identity::save(state_dir, id)?;
    tracing::info!(role = desired.as_str(), "role changed by the cluster");
    Ok(())
}

/// Managers hold a connection per agent: lift the soft open-files limit to the hard one.
fn raise_fd_limit() {
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
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (within a tokio runtime).
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT. From then on, a second one exits the process
    /// at once (128 + signal), whatever the shutdown is doing.
    async fn first(mut self) {
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

/// First start of the first manager: a fresh identity, persisted before anything else so an
/// interrupted bootstrap resumes.
fn new_identity(args: &Args) -> anyhow::Result<Identity> {
    let id = Identity {
        node_id: NodeId::generate(),
        cluster_id: ClusterId::generate().to_string(),
        role: NodeRole::Manager,
        raft_id: rand::random::<u64>() >> 1,
        advertise_addr: advertise_addr(args, None)?,
        managers: vec![],
        complete: false,
        pending_token: String::new(),
        promoting: false,
    };
    // The cluster's root CA and this node's certificate exist before anything listens.
    let ca = swarm_manager::ca::generate_root_ca(&id.cluster_id)?;
    let (key_pem, csr) = swarm_api::tls::new_key_and_csr()?;
    let cert_pem = swarm_manager::ca::issue(
        &ca,
        &csr,
        id.node_id.as_str(),
        "manager",
        &id.cluster_id,
        args.cert_expiry.max(Duration::from_secs(3600)),
    )?;
    identity::save_bootstrap_ca_key(&args.state_dir, &ca.key_pem)?;
    identity::save_certs(
        &args.state_dir,
        &identity::Certs {
            ca_pem: ca.cert_pem,
            cert_pem,
            key_pem,
        },
    )?;
    identity::save(&args.state_dir, &id)?;
    tracing::info!(node = %id.node_id, "creating a new cluster");
    Ok(id)
}

/// Initializes Raft with this node alone and writes the cluster and node objects.
async fn bootstrap(
    m: &Manager,
    id: &Identity,
    description: &NodeDescription,
    certs: &identity::Certs,
    args: &Args,
) -> anyhow::Result<()> {
    m.initialize_cluster().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !m.is_leader() {
        if tokio::time::Instant::now() > deadline {
            bail!("this node did not become leader of its new cluster within 30s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if m.store().read(|s| s.cluster().is_some()) {
        return Ok(());
    }
    let root_ca = swarm_types::objects::RootCa {
        cert_pem: certs.ca_pem.clone(),
        key_pem: identity::load_bootstrap_ca_key(&args.state_dir)?,
        digest: swarm_manager::ca::pem_digest(&certs.ca_pem)
            .ok_or_else(|| anyhow!("unreadable CA certificate in the state dir"))?,
    };
    let cluster = Cluster {
        id: ClusterId::new(id.cluster_id.clone()),
        meta: Default::default(),
        spec: ClusterSpec {
            name: "default".into(),
            task_history_limit: 5,
            node_cert_expiry_secs: args.cert_expiry.as_secs().max(3600),
            default_addr_pool: args.default_addr_pool.clone(),
            subnet_size: args.default_addr_pool_mask_len,
        },
        join_tokens: JoinTokens {
            worker: JoinToken::generate(&root_ca.digest).to_string(),
            manager: JoinToken::generate(&root_ca.digest).to_string(),
        },
        root_ca,
    };
    let node = Node {
        id: id.node_id.clone(),
        meta: Default::default(),
        spec: NodeSpec {
            role: NodeRole::Manager,
            ..Default::default()
        },
        description: description.clone(),
        status: NodeStatus {
            state: NodeState::Unknown,
            message: String::new(),
            addr: id.advertise_addr.clone(),
        },
        manager_status: Some(ManagerStatus {
            raft_id: id.raft_id,
            addr: id.advertise_addr.clone(),
        }),
        role: NodeRole::Manager,
    };
    m.write(WriteBatch {
        ops: vec![
            Op::Create(Object::Cluster(cluster)),
            Op::Create(Object::Node(node)),
        ],
        now_ms: 0,
    })
    .await?;
    tracing::info!("cluster created");
    Ok(())
}

/// Registers with the cluster of the manager at `addr`; the token decides the role.
async fn join(args: &Args, addr: &str, description: &NodeDescription) -> anyhow::Result<Identity> {
    let token_str = args.token.clone().unwrap_or_default();
    let advertise = advertise_addr(args, Some(addr))?;
    let joined = swarm_agent::join::join(addr, &token_str, &advertise, description).await?;
    let resp = joined.resp;
    identity::save_certs(
        &args.state_dir,
        &identity::Certs {
            ca_pem: resp.ca_cert_pem.clone(),
            cert_pem: resp.cert_pem.clone(),
            key_pem: joined.key_pem,
        },
    )?;
    // The role travels as its wire spelling; anything but a manager joins as a worker.
    let role: NodeRole = resp.role.parse().unwrap_or(NodeRole::Worker);
    let mut managers = resp.managers.clone();
    if !managers.contains(&addr.to_string()) {
        managers.push(addr.to_string());
    }
    let id = Identity {
        node_id: NodeId::new(resp.node_id),
        cluster_id: resp.cluster_id,
        role,
        raft_id: resp.raft_id,
        advertise_addr: advertise,
        managers,
        complete: role == NodeRole::Worker,
        pending_token: if role == NodeRole::Manager {
            token_str
        } else {
            String::new()
        },
        promoting: false,
    };
    identity::save(&args.state_dir, &id)?;
    tracing::info!(node = %id.node_id, role = role.as_str(), "joined cluster {}", id.cluster_id);
    Ok(id)
}

/// A joined manager asks the leader to add it as a learner and then a voter. Retries while
/// the cluster is electing or catching this node up.
async fn promote(id: &Identity, tls: &std::sync::Arc<rustls::ClientConfig>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last_err = String::new();
    loop {
        for addr in &id.managers {
            if *addr == id.advertise_addr {
                continue;
            }
            let res = async {
                let mut c =
                    NodeServiceClient::new(swarm_api::tls::connect(addr, tls.clone()).await?);
                c.promote_self(ManagerPromoteRequest {
                    node_id: id.node_id.to_string(),
                    token: id.pending_token.clone(),
                })
                .await
                .map_err(|s| anyhow!("{}", s.message()))?;
                anyhow::Ok(())
            }
            .await;
            match res {
                Ok(()) => {
                    tracing::info!("this manager is now a raft voter");
                    return Ok(());
                }
                Err(e) => {
                    last_err = format!("{addr}: {e:#}");
                    tracing::debug!(error = %last_err, "promotion attempt failed; retrying");
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("could not become a raft voter within 120s; last error: {last_err}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Renews this node's certificate at a random point between 50% and 80% of its lifetime (or
/// after `renew_after`, a test hook), without dropping connections: new connections use the
/// new certificate, existing ones keep going.
async fn renew_certificates(
    state_dir: std::path::PathBuf,
    certs: swarm_api::tls::NodeCerts,
    managers: swarm_agent::managers::Managers,
    renew_after: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let current = match identity::load_certs(&state_dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's certificate; renewal stopped");
                return;
            }
        };
        let wait = match renew_after {
            Some(d) => d,
            None => {
                let (left, total) =
                    swarm_api::tls::validity_of(&current.cert_pem).unwrap_or((0, 0));
                let frac = 0.5 + rand::random::<f64>() * 0.3;
                let at_left = (total as f64 * (1.0 - frac)) as i64;
                Duration::from_secs((left - at_left).max(1) as u64)
            }
        };
        tracing::debug!(?wait, "next certificate renewal");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let mut delay = Duration::from_secs(1);
        loop {
            match renew_once(&managers).await {
                Ok((cert_pem, key_pem)) => {
                    let saved = identity::save_certs(
                        &state_dir,
                        &identity::Certs {
                            ca_pem: current.ca_pem.clone(),
                            cert_pem: cert_pem.clone(),
                            key_pem: key_pem.clone(),
                        },
                    );
                    match saved.and_then(|_| certs.replace(&cert_pem, &key_pem).map_err(Into::into))
                    {
                        Ok(()) => tracing::info!("node certificate renewed"),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot store the renewed certificate")
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

async fn renew_once(
    managers: &swarm_agent::managers::Managers,
) -> anyhow::Result<(String, String)> {
    let (key_pem, csr) = swarm_api::tls::new_key_and_csr()?;
    let mut last = anyhow!("no manager known");
    for addr in managers.addrs() {
        let ch = managers.channel(&addr).map_err(|e| anyhow!(e))?;
        match NodeServiceClient::new(ch)
            .renew_certificate(RenewRequest { csr: csr.clone() })
            .await
        {
            Ok(r) => return Ok((r.into_inner().cert_pem, key_pem)),
            Err(s) => last = anyhow!("{addr}: {}", s.message()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    const CHILD: &str = "SWARMD_SIGNAL_TEST_CHILD";

    /// In a child process (this test binary again): signals installed, then a shutdown that
    /// never finishes after the first one.
    fn child() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let signals = Signals::install();
            println!("ready");
            signals.first().await;
            println!("stopping");
            std::future::pending::<()>().await;
        });
    }

    #[test]
    fn second_signal_exits_at_once_while_shutdown_hangs() {
        if std::env::var_os(CHILD).is_some() {
            return child();
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "node::tests::second_signal_exits_at_once_while_shutdown_hangs",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Killed on every way out of the test, a failed assertion included.
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut c = Reap(child);
        let c = &mut c.0;
        let (tx, lines) = std::sync::mpsc::channel();
        let out = c.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let expect = |what: &str| loop {
            match lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.ends_with(what) => break,
                Ok(_) => {}
                Err(e) => panic!("child never printed {what:?}: {e}"),
            }
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let term = nix::sys::signal::Signal::SIGTERM;
        expect("ready");
        nix::sys::signal::kill(pid, term).unwrap();
        expect("stopping");
        assert!(
            c.try_wait().unwrap().is_none(),
            "exited on the first signal"
        );
        nix::sys::signal::kill(pid, term).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 10 s after the second SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(128 + term as i32));
    }
}
