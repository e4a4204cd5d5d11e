//! End-to-end orchestration throughput through Raft with many fake agents.
//!
//! Starts real `swarmd` managers (separate processes, durable Raft on disk), joins N in-process
//! agents that run the real agent code (dispatcher session, controllers, batched status
//! reports) over a fake executor, then measures how fast `service create --replicas R` reaches
//! R running tasks (as `ListServices` counts them, the numbers `service ls` shows), and how
//! fast the tasks are removed again.

use clap::Parser;
use std::time::{Duration, Instant};
use swarm_agent::executor::FakeExecutor;
use swarm_agent::managers::ManagerSet;
use swarm_api::control::{CreateServiceRequest, ListRequest, RemoveRequest};
use swarm_cli::client::collect;
use swarm_testkit::Cluster;
use swarm_types::objects::{NodeDescription, Platform};
use swarm_types::spec::ServiceSpec;
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
    /// Managers' `--log-level` (a level or tracing directives).
    #[arg(long, default_value = "warn")]
    manager_log: String,
    /// Print (elapsed, running) every 100 ms while a service converges.
    #[arg(long)]
    timeline: bool,
    /// Where the fake agents keep their local task databases.
    #[arg(long, default_value = "/dev/shm")]
    agent_state_dir: std::path::PathBuf,
    /// Rounds (each: create, wait running, remove, wait gone).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A stale list request (the bench must not add read barriers).
fn stale() -> ListRequest {
    ListRequest {
        stale: true,
        ..Default::default()
    }
}

async fn list_tasks(c: &Cluster) -> anyhow::Result<Vec<swarm_types::Task>> {
    let stream = c.client(0).await?.list_tasks(stale()).await?.into_inner();
    Ok(collect(stream)
        .await?
        .into_iter()
        .filter_map(|o| match o {
            Object::Task(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// Task counts by (desired, observed) state, for explaining a timeout.
async fn histogram(c: &Cluster) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let mut h = std::collections::BTreeMap::new();
    for t in list_tasks(c).await? {
        let key = format!(
            "{}/{} {}",
            t.desired_state.as_str(),
            t.status.state.as_str(),
            t.status.err
        );
        *h.entry(key).or_default() += 1;
    }
    Ok(h)
}

/// (running, desired) of one service from `ListServices`, whose status the manager counts
/// itself: what `swarmctl service ls` shows, at the cost of one small response per poll.
async fn service_progress(c: &Cluster, name: &str) -> anyhow::Result<(u64, u64)> {
    let stream = c
        .client(0)
        .await?
        .list_services(stale())
        .await?
        .into_inner();
    for o in collect(stream).await? {
        if let Object::Service(svc) = o {
            if svc.spec.name == name {
                let st = svc.status.unwrap_or_default();
                return Ok((st.running_tasks, st.desired_tasks));
            }
        }
    }
    anyhow::bail!("service {name} not listed")
}

/// Ids of all tasks now, kept current from the watch stream (subscribed before listing, so
/// no deletion falls in between). Publishes how many are left; `None` if the stream broke.
async fn watch_remaining(
    c: &Cluster,
) -> anyhow::Result<tokio::sync::watch::Receiver<Option<usize>>> {
    let mut stream = c
        .client(0)
        .await?
        .watch(swarm_api::control::WatchRequest {
            kinds: vec!["task".into()],
        })
        .await?
        .into_inner();
    let mut tasks: std::collections::HashSet<String> = list_tasks(c)
        .await?
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    let (tx, rx) = tokio::sync::watch::channel(Some(tasks.len()));
    let mut lister = c.client(0).await?;
    tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(ev)) if ev.reset => {
                    // The manager installed a snapshot: list again instead of guessing.
                    let listed = match lister.list_tasks(stale()).await {
                        Ok(s) => collect(s.into_inner()).await.ok(),
                        Err(_) => None,
                    };
                    let Some(listed) = listed else {
                        tx.send_replace(None);
                        return;
                    };
                    tasks = listed
                        .into_iter()
                        .filter_map(|o| match o {
                            Object::Task(t) => Some(t.id.to_string()),
                            _ => None,
                        })
                        .collect();
                    tx.send_replace(Some(tasks.len()));
                }
                Ok(Some(ev)) => {
                    let Ok(ch) = serde_json::from_slice::<swarm_types::store::Change>(&ev.change)
                    else {
                        continue;
                    };
                    if let Object::Task(t) = ch.object {
                        if ch.action == swarm_types::store::Action::Deleted {
                            tasks.remove(t.id.as_str());
                        } else {
                            tasks.insert(t.id.to_string());
                        }
                        tx.send_replace(Some(tasks.len()));
                    }
                }
                _ => {
                    tx.send_replace(None);
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Resident memory of a process in MiB (from /proc).
fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
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
        args.manager_log.clone(),
    ];
    c.init()?;
    for _ in 1..args.managers {
        c.join_manager(0)?;
    }
    let token = c.token(0, "worker")?;
    let addrs: Vec<String> = c.nodes.iter().map(|d| d.addr.clone()).collect();
    // Each agent keeps its local task database in its own directory. A real agent has its
    // host's disk to itself; 1,000 of them creating, renaming and deleting files on one ext4
    // file system measure ext4's inode allocator (`recently_deleted` scans grow with the
    // deletions of all agents together), not the control plane. tmpfs unless told otherwise.
    let dir = tempfile::tempdir_in(&args.agent_state_dir)?;

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
                unavailable: String::new(),
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

        println!("| round | replicas | create → all running | tasks/s | remove → all gone | managers' RSS at all running |");
        println!("|---:|---:|---:|---:|---:|---|");
        for round in 0..args.rounds {
            let name = format!("bench{round}");
            let mut spec = ServiceSpec::replicated(&name, "busybox", args.replicas);
            spec.task.container.args = vec!["sleep".into(), "1d".into()];
            let start = Instant::now();
            c.client(0)
                .await?
                .create_service(CreateServiceRequest {
                    spec: swarm_api::wire::to_bytes(&spec),
                    ..Default::default()
                })
                .await?;
            let deadline = start + Duration::from_secs(300);
            let mut next_mark = Duration::ZERO;
            loop {
                let (running, _) = service_progress(&c, &name).await?;
                if args.timeline && start.elapsed() >= next_mark {
                    eprintln!("{:>6.2} s {running}", start.elapsed().as_secs_f64());
                    next_mark += Duration::from_millis(100);
                }
                if running >= args.replicas {
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
            let rss: Vec<String> = c
                .nodes
                .iter()
                .map(|n| match n.pid().and_then(rss_mib) {
                    Some(m) => format!("{m} MiB"),
                    None => "?".into(),
                })
                .collect();
            let remaining = watch_remaining(&c).await?;
            let start = Instant::now();
            c.client(0)
                .await?
                .remove_service(RemoveRequest {
                    reference: name.clone(),
                    force: false,
                })
                .await?;
            loop {
                let left = *remaining.borrow();
                let left = match left {
                    Some(n) => n,
                    None => histogram(&c).await?.values().sum(),
                };
                if left == 0 {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(300),
                    "{left} tasks left after 300 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let down = start.elapsed();
            println!(
                "| {} | {} | {:.2} s | {:.0} | {:.2} s | {} |",
                round + 1,
                args.replicas,
                up.as_secs_f64(),
                args.replicas as f64 / up.as_secs_f64(),
                down.as_secs_f64(),
                rss.join(", ")
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
