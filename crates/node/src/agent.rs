//! The agent side of a node: the executor (real containers with their image store, puller,
//! volumes and data plane, or the fake one), the task worker and the streams it follows. It
//! must not touch the manager side; `node.rs` wires both.

use crate::args::Args;
use crate::identity::Identity;
use std::sync::Arc;
use swarm_agent::images::NodeImages;
use swarm_agent::managers::Managers;
use swarm_agent::pull::Puller;
use swarm_agent::volumes::Volumes;
use tokio::sync::watch;

/// What the node-local API and the heartbeats need from the agent.
pub(crate) struct Parts {
    /// The image store, or why this node has none.
    pub images: Result<Arc<NodeImages>, String>,
    pub volumes: Result<Arc<Volumes>, String>,
    pub puller: Option<Arc<Puller>>,
    /// Why this node cannot run tasks (sent with every heartbeat), or empty.
    pub unavailable: String,
    /// The data plane (image builds put RUN containers on its default bridge).
    pub net: Option<std::sync::Arc<swarm_agent::network::DataPlane>>,
}

/// Starts the executor and the agent's loops (worker, logs, overlay peers, discovery).
pub(crate) async fn start(
    args: &Args,
    id: &Identity,
    managers: &Managers,
    shutdown: &watch::Receiver<bool>,
    userns_remap: Option<(swarm_runtime::userns::IdMap, bool)>,
) -> Parts {
    let db_dir = args.state_dir.join("agent").join("tasks");
    let mut images: Result<_, String> =
        Err("it runs the fake executor (no containers, no images)".into());
    // A node whose runtime cannot open says so in every heartbeat: the managers keep it down
    // with this reason, and its tasks go elsewhere.
    let mut unavailable = String::new();
    let mut puller = None;
    let mut data_plane = None;
    let mut volumes: Result<_, String> =
        Err("it runs the fake executor (no containers, no volumes)".into());
    if args.executor == "fake" {
        let exec = std::sync::Arc::new(swarm_agent::executor::FakeExecutor::default());
        tokio::spawn(swarm_agent::worker::run(
            id.node_id.clone(),
            db_dir,
            exec,
            managers.clone(),
            shutdown.clone(),
        ));
    } else {
        // Each swarmd gets its own cgroup parent, so several can share a host.
        let cgroup_parent = format!("swarm-{}", id.node_id.short());
        match swarm_agent::runtime_exec::RuntimeExecutor::open(&args.state_dir, &cgroup_parent) {
            Ok(exec) => {
                let mut exec = match userns_remap {
                    Some((map, copies)) => exec.with_userns_remap(map, copies),
                    None => exec,
                };
                volumes = Ok(exec.volumes());
                match swarm_agent::pull::Puller::new(
                    exec.images().store().clone(),
                    managers.clone(),
                    args.insecure_registries.clone(),
                ) {
                    Ok(p) => {
                        exec.set_puller(p.clone());
                        puller = Some(p);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "image puller unavailable: tasks need imported images")
                    }
                }
                let net = std::sync::Arc::new(
                    swarm_agent::network::DataPlane::new(
                        id.node_id.as_str(),
                        swarm_manager::dispatcher::host_ip(&id.advertise_addr),
                    )
                    .with_default_bridge(),
                );
                // Bridges of containers removed while swarmd was down; the ruleset of the
                // networks still in use.
                let n = net.clone();
                match tokio::task::spawn_blocking(move || n.collect()).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "network cleanup at start failed"),
                    Err(e) => tracing::warn!(error = %e, "network cleanup at start panicked"),
                    Ok(Ok(())) => {}
                }
                let node_images = exec.images();
                // Leftovers of an earlier run (containers removed while swarmd was down).
                node_images.collect_soon();
                tokio::spawn(
                    node_images
                        .clone()
                        .expire_periodically(args.image_keep_unused, shutdown.clone()),
                );
                images = Ok(node_images);
                data_plane = Some(net.clone());
                let exec = std::sync::Arc::new(exec.with_network(net.clone()));
                tokio::spawn(swarm_agent::network::peers::run(
                    id.node_id.clone(),
                    net.clone(),
                    managers.clone(),
                    shutdown.clone(),
                ));
                tokio::spawn(swarm_agent::network::discovery::run(
                    id.node_id.clone(),
                    net,
                    managers.clone(),
                    shutdown.clone(),
                ));
                tokio::spawn(swarm_agent::logs::run(
                    id.node_id.clone(),
                    db_dir.clone(),
                    exec.clone(),
                    managers.clone(),
                    shutdown.clone(),
                ));
                tokio::spawn(swarm_agent::worker::run(
                    id.node_id.clone(),
                    db_dir,
                    exec,
                    managers.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "container runtime unavailable: this node cannot run tasks");
                unavailable = format!("container runtime unavailable: {e}");
                images = Err(format!("its container runtime is unavailable: {e}"));
                volumes = Err(format!("its container runtime is unavailable: {e}"));
            }
        }
    }
    Parts {
        images,
        volumes,
        puller,
        unavailable,
        net: data_plane,
    }
}
