//! Start-up logic of `swarmd`: create a cluster, join one, or resume from the state dir; then
//! run the manager (if this node is one) and the agent until a termination signal.

use crate::agent_route::AgentRouter;
use crate::args::Args;
use crate::identity::{self, Identity};
use anyhow::{anyhow, bail, Context};
use std::path::Path;
use swarm_manager::nodes::NodeServiceImpl;
use swarm_manager::{Manager, ManagerConfig};
use swarm_types::objects::NodeDescription;
use swarm_types::spec::NodeRole;
use tokio::sync::watch;

use crate::host::*;
use crate::membership::*;
use crate::renewal::*;

fn manager_config(args: &Args, id: &Identity) -> ManagerConfig {
    let mut c = ManagerConfig::new(
        id.node_id.clone(),
        id.raft_id,
        id.advertise_addr.clone(),
        args.state_dir.join("raft"),
    )
    .with_election_timeout(args.raft_election_timeout_ms);
    c.heartbeat_ms = args.raft_heartbeat_ms;
    c.snapshot_interval = args.raft_snapshot_interval;
    c.logs_to_keep = args.raft_logs_to_keep;
    c
}

/// The id maps of `--userns-remap`, checked before the node starts anything, and whether
/// image layers must be chowned copies (no idmapped mounts here).
fn remap(args: &Args) -> anyhow::Result<Option<(swarm_runtime::userns::IdMap, bool)>> {
    let Some(v) = &args.userns_remap else {
        return Ok(None);
    };
    if args.executor == "fake" {
        bail!("--userns-remap needs real containers; the fake executor runs none");
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let map = crate::userns_remap::resolve(
        v,
        &passwd,
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
    )
    .context("--userns-remap")?;
    // Image layers are mounted idmapped through each container's namespace where the kernel
    // and the state dir's filesystem can (Linux 5.12+; ext4, xfs, btrfs, tmpfs); elsewhere
    // tasks run on chowned copies of their layers, as Docker's.
    let copies = match swarm_runtime::userns::check_idmapped_mounts(&args.state_dir, &map) {
        Ok(()) => args.userns_remap_copy,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no idmapped mounts under {}: remapped tasks run on chowned copies of their image layers (a copy per layer on disk)",
                args.state_dir.display()
            );
            true
        }
    };
    tracing::info!(uids = ?map.uids, gids = ?map.gids, layer_copies = copies, "task containers run in a user namespace");
    Ok(Some((map, copies)))
}

/// Runs the daemon until SIGTERM or SIGINT: open the state, start the manager if this node
/// is one (or serve as a worker), start the agent, serve until a signal or a role change.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging(&args);
    args.check_addr_pools().map_err(|e| anyhow!(e))?;
    args.check_raft_timing().map_err(|e| anyhow!(e))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_fd_limit();
    let _lock = lock_state_dir(&args.state_dir)?;
    let userns_remap = remap(&args)?;
    let description = describe(&args)?;
    let mut id = open_identity(&args, &description).await?;
    let tls = NodeTls::load(&args.state_dir)?;
    let managers = manager_set(&id, &tls)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut running = Running {
        tasks: Vec::new(),
        manager: None,
        router: AgentRouter::new(id.node_id.to_string(), None),
    };
    if id.role == NodeRole::Manager {
        start_manager(
            &args,
            &mut id,
            &description,
            &tls,
            &mut running,
            &shutdown_rx,
        )
        .await?;
    } else {
        serve_worker(
            &args,
            &id,
            &tls.node,
            &running.router,
            &managers,
            &shutdown_rx,
            &mut running.tasks,
        )
        .await?;
        tracing::info!(node = %id.node_id, "worker running");
    }
    let role_rx = start_agent(
        &args,
        &id,
        &tls,
        &managers,
        description,
        &mut running,
        &shutdown_rx,
        userns_remap,
    )
    .await?;
    let end = serve_until_exit(&args.state_dir, &mut id, &managers, &running, role_rx).await;
    // Containers keep running: nothing below stops them, and the next start re-adopts them.
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    let graceful = async {
        if let Some(m) = running.manager {
            m.shutdown().await;
        }
        for t in running.tasks {
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
    match end {
        End::Signal => Ok(()),
        End::RaftStopped(e) => bail!("raft stopped: {e}"),
        End::NewRole => {
            drop(_lock);
            use std::os::unix::process::CommandExt;
            tracing::info!(role = id.role.as_str(), "restarting in the new role");
            let err = std::process::Command::new("/proc/self/exe")
                .args(std::env::args_os().skip(1))
                .exec();
            bail!("could not restart swarmd in its new role: {err}");
        }
    }
}

/// What the node serves and must wait for on shutdown.
struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    manager: Option<Manager>,
    router: AgentRouter,
}

/// This node's certificates: as issued, as rustls serves them, and the client config that
/// reaches managers.
struct NodeTls {
    certs: identity::Certs,
    node: swarm_api::tls::NodeCerts,
    client: std::sync::Arc<rustls::ClientConfig>,
}

impl NodeTls {
    fn load(state_dir: &Path) -> anyhow::Result<NodeTls> {
        let certs = identity::load_certs(state_dir)?;
        let node = swarm_api::tls::NodeCerts::new(&certs.ca_pem, &certs.cert_pem, &certs.key_pem)
            .context("load this node's certificate")?;
        let client = swarm_api::tls::client_config(&node)?;
        Ok(NodeTls {
            certs,
            node,
            client,
        })
    }
}

/// The identity in the state dir, or a new one: a new cluster, or a join.
async fn open_identity(args: &Args, description: &NodeDescription) -> anyhow::Result<Identity> {
    Ok(match identity::load(&args.state_dir)? {
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
            None => new_identity(args)?,
            Some(addr) => join(args, addr, description).await?,
        },
    })
}

/// The managers the agent talks to (heartbeats and task execution): a manager's own first,
/// on a worker the one its node id picks (so workers spread over the managers); a worker also
/// names them to agents that reach it instead of a manager.
fn manager_set(id: &Identity, tls: &NodeTls) -> anyhow::Result<swarm_agent::managers::Managers> {
    use swarm_agent::managers::ManagerSet;
    let mut addrs = id.managers.clone();
    if id.role == NodeRole::Manager && !addrs.contains(&id.advertise_addr) {
        addrs.insert(0, id.advertise_addr.clone());
    }
    let managers = ManagerSet::with_tls(addrs, Some(tls.client.clone()));
    managers.set_spread(ManagerSet::spread_of(id.node_id.as_str()));
    if id.role == NodeRole::Manager {
        managers.prefer_own(&id.advertise_addr);
    }
    managers.set_member_tls(swarm_api::tls::member_client_config(&tls.node)?);
    Ok(managers)
}

/// A manager: Raft and the store, the TCP server, the node monitor, bootstrap or promotion
/// when this start completes one, the control loop and the registry.
async fn start_manager(
    args: &Args,
    id: &mut Identity,
    description: &NodeDescription,
    tls: &NodeTls,
    running: &mut Running,
    shutdown_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen_addr)
        .await
        .with_context(|| {
            format!(
                "listen on {}; is the port already in use?",
                args.listen_addr
            )
        })?;
    let mut mcfg = manager_config(args, id);
    mcfg.cluster_id = id.cluster_id.clone();
    mcfg.tls = Some(tls.client.clone());
    let m = Manager::start(mcfg).await?;
    let nodes = NodeServiceImpl::new(m.clone());
    running.router = AgentRouter::new(id.node_id.to_string(), Some((m.clone(), tls.node.clone())));
    running.tasks.push(crate::server::serve_tcp(
        listener,
        swarm_api::tls::server_config(&tls.node)?,
        m.clone(),
        nodes.clone(),
        running.router.clone(),
        shutdown_rx.clone(),
    ));
    swarm_manager::supervise::spawn(
        "node monitor",
        move || nodes.clone().run_monitor(),
        shutdown_rx.clone(),
    );
    if !id.complete {
        if id.pending_token.is_empty() && !id.promoting {
            bootstrap(&m, id, description, &tls.certs, args).await?;
            identity::remove_bootstrap_ca_key(&args.state_dir);
        } else {
            promote(id, &tls.client, &m).await?;
            id.pending_token.clear();
            id.promoting = false;
        }
        id.complete = true;
        identity::save(&args.state_dir, id)?;
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
    running.tasks.push(
        crate::registry::start(
            args,
            id,
            &description.hostname,
            tls.client.clone(),
            m.clone(),
            shutdown_rx.clone(),
        )
        .await?,
    );
    tracing::info!(node = %id.node_id, addr = %id.advertise_addr, "manager running");
    running.manager = Some(m);
    Ok(())
}

/// Every node: certificate renewal, the agent (executor, images, volumes, networks), its
/// session with the managers, metrics, and the node-local API on the unix socket. Returns
/// where the session reports the role the cluster wants for this node.
#[allow(clippy::too_many_arguments)]
async fn start_agent(
    args: &Args,
    id: &Identity,
    tls: &NodeTls,
    managers: &swarm_agent::managers::Managers,
    description: NodeDescription,
    running: &mut Running,
    shutdown_rx: &watch::Receiver<bool>,
    userns_remap: Option<(swarm_runtime::userns::IdMap, bool)>,
) -> anyhow::Result<watch::Receiver<Option<(NodeRole, u64)>>> {
    tokio::spawn(renew_certificates(
        args.state_dir.clone(),
        tls.node.clone(),
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
    } = crate::agent::start(args, id, managers, shutdown_rx, userns_remap).await;
    let (role_tx, role_rx) = watch::channel(None);
    let session = swarm_agent::session::Session {
        node_id: id.node_id.clone(),
        managers: managers.clone(),
        description,
        desired_role: Some(role_tx),
        unavailable,
    };
    running
        .tasks
        .push(tokio::spawn(session.run(shutdown_rx.clone())));
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(
            addr.clone(),
            id.node_id.clone(),
            id.role,
            running.manager.clone(),
        )
        .await?;
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
    running.router.set_local(local);
    let sock = args
        .control_socket
        .clone()
        .unwrap_or_else(|| args.state_dir.join("swarmd.sock"));
    running.tasks.push(crate::server::serve_unix(
        &sock,
        running.manager.clone(),
        running.router.clone(),
        shutdown_rx.clone(),
    )?);
    Ok(role_rx)
}

/// Why the node stops serving.
enum End {
    Signal,
    /// This manager's Raft node died (its storage failed).
    RaftStopped(String),
    /// The cluster changed this node's role; its identity now holds the new one.
    NewRole,
}

/// Serves until a signal, until Raft stops on a fatal error, or until the cluster changes
/// this node's role (promote/demote): then the node takes a certificate for the new role and
/// restarts itself in it. Containers keep running across the restart.
async fn serve_until_exit(
    state_dir: &Path,
    id: &mut Identity,
    managers: &swarm_agent::managers::Managers,
    running: &Running,
    mut role_rx: watch::Receiver<Option<(NodeRole, u64)>>,
) -> End {
    let signal = Signals::install().first();
    tokio::pin!(signal);
    let raft_stopped = {
        let m = running.manager.clone();
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
            _ = &mut signal => return End::Signal,
            // Fail-stop: a manager whose Raft node died (its storage failed) would otherwise
            // linger, answering RPCs and never applying, even after the cause is gone.
            e = &mut raft_stopped => {
                tracing::error!(error = %e, "raft stopped on a fatal error; exiting so that a supervisor restarts this manager from its storage");
                return End::RaftStopped(e.to_string());
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
                match switch_role(state_dir, id, desired, raft_id, managers).await {
                    Ok(()) => return End::NewRole,
                    Err(e) => tracing::warn!(error = %e, "role change to {} failed; will retry", desired.as_str()),
                }
            }
        }
    }
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
    managers: &swarm_agent::managers::Managers,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    match tokio::net::TcpListener::bind(&args.listen_addr).await {
        Ok(listener) => tasks.push(crate::server::serve_worker_tcp(
            listener,
            swarm_api::tls::server_config(certs)?,
            id.cluster_id.clone(),
            router.clone(),
            crate::worker_nodes::WorkerNodeService::new(
                id.cluster_id.clone(),
                id.advertise_addr.clone(),
                managers.clone(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::time::Duration;

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

#[cfg(test)]
mod raft_timing_tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["swarmd", "--state-dir", "/nonexistent"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn election_timeout_sets_a_range_of_five_quarters() {
        let a = args(&[]);
        a.check_raft_timing().unwrap();
        let id = Identity {
            node_id: swarm_types::NodeId::new("n1"),
            cluster_id: String::new(),
            role: swarm_types::spec::NodeRole::Manager,
            raft_id: 1,
            advertise_addr: "127.0.0.1:4242".into(),
            managers: Vec::new(),
            complete: true,
            pending_token: String::new(),
            promoting: false,
        };
        let c = manager_config(&a, &id);
        assert_eq!(
            (c.election_timeout_min_ms, c.election_timeout_max_ms),
            (400, 500)
        );
        let c = manager_config(&args(&["--raft-election-timeout-ms", "250"]), &id);
        assert_eq!(
            (c.election_timeout_min_ms, c.election_timeout_max_ms),
            (250, 312)
        );
    }

    #[test]
    fn election_timeout_near_the_heartbeat_is_refused() {
        let e = args(&["--raft-election-timeout-ms", "150"])
            .check_raft_timing()
            .unwrap_err();
        assert!(
            e.contains(
                "--raft-election-timeout-ms 150 must be at least twice --raft-heartbeat-ms 100"
            ),
            "{e}"
        );
        let e = args(&["--raft-heartbeat-ms", "0"])
            .check_raft_timing()
            .unwrap_err();
        assert!(e.contains("--raft-heartbeat-ms must be at least 1"), "{e}");
        args(&[
            "--raft-heartbeat-ms",
            "50",
            "--raft-election-timeout-ms",
            "100",
        ])
        .check_raft_timing()
        .unwrap();
    }
}
