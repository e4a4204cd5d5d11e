//! What the benchmarks ask a cluster while it works: progress of a service, tasks left, nodes
//! ready. Reads through the control API with stale reads (a benchmark must not add read
//! barriers); the only writes are creating and removing the measured service.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use swarm_api::control::{CreateServiceRequest, ListRequest, RemoveRequest, WatchRequest};
use swarm_cli::client::collect;
use swarm_testkit::Cluster;
use swarm_types::spec::ServiceSpec;
use swarm_types::Object;

/// A stale list request.
pub fn stale() -> ListRequest {
    ListRequest {
        stale: true,
        ..Default::default()
    }
}

/// Every task the manager `i` holds.
pub async fn list_tasks(c: &Cluster, i: usize) -> anyhow::Result<Vec<swarm_types::Task>> {
    let stream = c.client(i).await?.list_tasks(stale()).await?.into_inner();
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
pub async fn histogram(c: &Cluster, i: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut h = BTreeMap::new();
    for t in list_tasks(c, i).await? {
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
pub async fn service_progress(c: &Cluster, i: usize, name: &str) -> anyhow::Result<(u64, u64)> {
    let stream = c
        .client(i)
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

/// How many tasks are left, kept current by a watch stream; dropping it closes the stream.
pub struct Remaining {
    pub left: tokio::sync::watch::Receiver<Option<usize>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Remaining {
    fn drop(&mut self) {
        // A stream left open costs the manager a copy of every later change: the benchmarks
        // used to leave one per round, and each round removed its tasks slower than the last.
        self.watcher.abort();
    }
}

/// Ids of all tasks now, kept current from the watch stream (subscribed before listing, so
/// no deletion falls in between). Publishes how many are left; `None` if the stream broke.
pub async fn watch_remaining(c: &Cluster, i: usize) -> anyhow::Result<Remaining> {
    let mut stream = c
        .client(i)
        .await?
        .watch(WatchRequest {
            kinds: vec!["task".into()],
        })
        .await?
        .into_inner();
    let mut tasks: HashSet<String> = list_tasks(c, i)
        .await?
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    let (tx, rx) = tokio::sync::watch::channel(Some(tasks.len()));
    let mut lister = c.client(i).await?;
    let watcher = tokio::spawn(async move {
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
    Ok(Remaining { left: rx, watcher })
}

/// Creates a replicated service of `replicas` `sleep 1d` tasks through manager `i` and waits
/// until `ListServices` counts them all running. `timeline`: print (elapsed, running) every
/// 100 ms.
pub async fn create_and_wait_running(
    c: &Cluster,
    i: usize,
    name: &str,
    replicas: u64,
    timeline: bool,
) -> anyhow::Result<Duration> {
    let mut spec = ServiceSpec::replicated(name, "busybox", replicas);
    spec.task.container.args = vec!["sleep".into(), "1d".into()];
    let start = Instant::now();
    c.client(i)
        .await?
        .create_service(CreateServiceRequest {
            spec: swarm_api::wire::to_bytes(&spec),
            ..Default::default()
        })
        .await?;
    let limit = Duration::from_secs(300);
    let mut next_mark = Duration::ZERO;
    loop {
        let (running, _) = service_progress(c, i, name).await?;
        if timeline && start.elapsed() >= next_mark {
            eprintln!("{:>6.2} s {running}", start.elapsed().as_secs_f64());
            next_mark += Duration::from_millis(100);
        }
        if running >= replicas {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "only {running} of {name}'s tasks running after {limit:?}: {:?}",
                histogram(c, i).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes service `name` through manager `i` and waits until no task of any service is
/// left in the store.
pub async fn remove_and_wait_gone(c: &Cluster, i: usize, name: &str) -> anyhow::Result<Duration> {
    let remaining = watch_remaining(c, i).await?;
    let start = Instant::now();
    c.client(i)
        .await?
        .remove_service(RemoveRequest {
            reference: name.to_string(),
            force: false,
        })
        .await?;
    loop {
        let left = *remaining.left.borrow();
        let left = match left {
            Some(n) => n,
            None => histogram(c, i).await?.values().sum(),
        };
        if left == 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "{left} tasks left after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until manager `i` lists at least `n` nodes Ready (managers included).
pub async fn wait_nodes_ready(
    c: &Cluster,
    i: usize,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let out = c.ctl(i, &["node", "ls", "--format", "json", "--stale"])?;
        let ready = out
            .lines()
            .filter(|l| l.contains("\"Status\":\"Ready\""))
            .count();
        if ready >= n {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "only {ready} of {n} nodes ready after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
