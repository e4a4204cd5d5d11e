//! End-to-end orchestration throughput through Raft with many fake agents.
//!
//! Starts real `swarmd` managers (separate processes, durable Raft on disk), joins N in-process
//! agents that run the real agent code (dispatcher session, controllers, batched status
//! reports) over a fake executor, then measures how fast `service create --replicas R` reaches
//! R running tasks, and how fast the tasks are removed again.

use clap::Parser;
use std::time::{Duration, Instant};
use swarm_agent::executor::FakeExecutor;
use swarm_agent::worker::ManagerSet;
use swarm_api::control::{CreateServiceRequest, ListRequest, RemoveRequest};
use swarm_testkit::Cluster;
use swarm_types::objects::{NodeDescription, Platform};
use swarm_types::spec::ServiceSpec;
use swarm_types::task::TaskState;
use swarm_types::{NodeId, Object};

#[derive(Parser, Debug)]
struct Args {
    /// Managers (1, 3, 5).
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Fake agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Replicas of the service.
    #[arg(long, default_value_t = 10_000)]
    replicas: u64,
    /// Rounds (each: create, wait running, remove, wait gone).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Task counts by (desired, observed) state, for explaining a timeout.
async fn histogram(c: &Cluster) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let mut cl = c.client(0).await?;
    let mut s = cl
        .list_tasks(ListRequest {
            stale: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut h = std::collections::BTreeMap::new();
    while let Some(p) = s.message().await? {
        for o in p.objects {
            if let Object::Task(t) = serde_json::from_slice(&o)? {
                *h.entry(format!(
                    "{}/{} {}",
                    t.desired_state.as_str(),
                    t.status.state.as_str(),
                    t.status.err
                ))
                .or_default() += 1;
            }
        }
    }
    Ok(h)
}

/// Follows task changes on the watch stream and publishes (running, total) — far cheaper for
/// the manager than listing every task on each poll.
async fn watch_counts(
    c: &Cluster,
) -> anyhow::Result<tokio::sync::watch::Receiver<Option<(usize, usize)>>> {
    let mut stream = c
        .client(0)
        .await?
        .watch(swarm_api::control::WatchRequest {
            kinds: vec!["task".into()],
        })
        .await?
        .into_inner();
    let (tx, rx) = tokio::sync::watch::channel(Some((0, 0)));
    tokio::spawn(async move {
        let mut tasks: std::collections::HashMap<String, bool> = Default::default();
        loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    let Ok(ch) = serde_json::from_slice::<swarm_types::store::Change>(&ev.change)
                    else {
                        continue;
                    };
                    if let Object::Task(t) = ch.object {
                        if ch.action == swarm_types::store::Action::Deleted {
                            tasks.remove(t.id.as_str());
                        } else {
                            let running = t.status.state == TaskState::Running
                                && t.desired_state == TaskState::Running;
                            tasks.insert(t.id.to_string(), running);
                        }
                        let running = tasks.values().filter(|r| **r).count();
                        tx.send_replace(Some((running, tasks.len())));
                    }
                }
                _ => {
                    // Lost the stream: tell the reader to fall back to listing.
                    tx.send_replace(None);
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// (running, total) from the watch when it is healthy, else from a full list.
async fn progress(
    c: &Cluster,
    w: &tokio::sync::watch::Receiver<Option<(usize, usize)>>,
) -> anyhow::Result<(usize, usize)> {
    match *w.borrow() {
        Some(v) => Ok(v),
        None => count_running(c).await,
    }
}

async fn count_running(c: &Cluster) -> anyhow::Result<(usize, usize)> {
    let mut cl = c.client(0).await?;
    let mut s = cl
        .list_tasks(ListRequest {
            stale: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut running, mut total) = (0, 0);
    while let Some(p) = s.message().await? {
        for o in p.objects {
            if let Object::Task(t) = serde_json::from_slice(&o)? {
                total += 1;
                if t.status.state == TaskState::Running && t.desired_state == TaskState::Running {
                    running += 1;
                }
            }
        }
    }
    Ok((running, total))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    eprintln!("starting {} managers", args.managers);
    let mut c = Cluster::new();
    c.extra_args = vec![
        "--executor".into(),
        "fake".into(),
        "--log-level".into(),
        "warn".into(),
    ];
    c.init()?;
    for _ in 1..args.managers {
        c.join_manager(0)?;
    }
    let token = c.token(0, "worker")?;
    let addrs: Vec<String> = c.nodes.iter().map(|d| d.addr.clone()).collect();
    let dir = tempfile::tempdir()?;

    rt.block_on(async {
        eprintln!("joining {} fake agents", args.agents);
        let t0 = Instant::now();
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        for i in 0..args.agents {
            let addr = addrs[i % addrs.len()].clone();
            let desc = NodeDescription {
                hostname: format!("fake{i:04}"),
                platform: Platform {
                    os: "linux".into(),
                    arch: "x86_64".into(),
                },
                nano_cpus: 4_000_000_000,
                memory_bytes: 8 << 30,
                ..Default::default()
            };
            let joined = swarm_agent::join::join(&addr, &token, "", &desc).await?;
            let resp = joined.resp;
            let certs =
                swarm_api::tls::NodeCerts::new(&resp.ca_cert_pem, &resp.cert_pem, &joined.key_pem)?;
            let tls = swarm_api::tls::client_config(&certs)?;
            let node = NodeId::new(resp.node_id);
            let mut order = addrs.clone();
            order.rotate_left(i % addrs.len());
            let managers = ManagerSet::with_tls(order, Some(tls));
            let session = swarm_agent::session::Session {
                node_id: node.clone(),
                managers: managers.clone(),
                description: desc,
                desired_role: None,
            };
            tokio::spawn(session.run(stop_rx.clone()));
            tokio::spawn(swarm_agent::worker::run(
                node,
                dir.path().join(format!("a{i}")),
                std::sync::Arc::new(FakeExecutor::default()),
                managers,
                stop_rx.clone(),
            ));
        }
        eprintln!("joined in {:?}; waiting for all nodes ready", t0.elapsed());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = c.ctl(0, &["node", "ls", "--format", "json", "--stale"])?;
            let ready = out
                .lines()
                .filter(|l| l.contains("\"Status\":\"Ready\""))
                .count();
            if ready >= args.agents + args.managers {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {ready} nodes ready after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        println!("| round | replicas | create → all running | tasks/s | remove → all gone |");
        println!("|---:|---:|---:|---:|---:|");
        for round in 0..args.rounds {
            let name = format!("bench{round}");
            let mut spec = ServiceSpec::replicated(&name, "busybox", args.replicas);
            spec.task.container.args = vec!["sleep".into(), "1d".into()];
            let counts = watch_counts(&c).await?;
            let start = Instant::now();
            c.client(0)
                .await?
                .create_service(CreateServiceRequest {
                    spec: swarm_api::wire::to_bytes(&spec),
                })
                .await?;
            let deadline = start + Duration::from_secs(300);
            loop {
                let (running, _) = progress(&c, &counts).await?;
                if running as u64 >= args.replicas {
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "only {running} running after 300 s: {:?}",
                        histogram(&c).await?
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let up = start.elapsed();
            let start = Instant::now();
            c.client(0)
                .await?
                .remove_service(RemoveRequest {
                    reference: name.clone(),
                    force: false,
                })
                .await?;
            loop {
                let (_, total) = progress(&c, &counts).await?;
                if total == 0 {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(300),
                    "{total} tasks left after 300 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let down = start.elapsed();
            println!(
                "| {} | {} | {:.2} s | {:.0} | {:.2} s |",
                round + 1,
                args.replicas,
                up.as_secs_f64(),
                args.replicas as f64 / up.as_secs_f64(),
                down.as_secs_f64()
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
