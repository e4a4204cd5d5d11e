//! A fleet of fake agents: real agent code (join with a token, dispatcher session, controllers,
//! batched status reports) over the fake executor, many to one process. Owns joining and
//! running them; never talks to the managers' control API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_agent::executor::FakeExecutor;
use swarm_agent::managers::ManagerSet;
use swarm_types::objects::{NodeDescription, Platform};
use swarm_types::NodeId;

/// Which agents to start and where they join.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Managers' addresses; agent `i` joins through `addrs[i % len]` and prefers it.
    pub addrs: Vec<String>,
    /// A worker join token.
    pub token: String,
    /// How many agents.
    pub count: usize,
    /// Hostnames are `<prefix><i>`, so fleets in several processes do not collide.
    pub hostname_prefix: String,
    /// Each agent's local task database goes in `<state_dir>/a<i>`. A real agent has its
    /// host's disk to itself; thousands creating and deleting files on one ext4 file system
    /// measure ext4's inode allocator, not the control plane: tmpfs unless told otherwise.
    pub state_dir: PathBuf,
    /// Joins in flight at once.
    pub concurrent_joins: usize,
}

/// What a fake agent says about its host: 4 CPUs, 8 GiB, linux/x86_64.
pub fn description(hostname: String) -> NodeDescription {
    NodeDescription {
        hostname,
        platform: Platform {
            os: "linux".into(),
            arch: "x86_64".into(),
        },
        nano_cpus: 4_000_000_000,
        memory_bytes: 8 << 30,
        ..Default::default()
    }
}

impl Fleet {
    /// Joins every agent and starts its session and worker on the current tokio runtime; they
    /// run until `stop` turns true. Returns how long joining took.
    pub async fn start(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(self.concurrent_joins.max(1)));
        let mut joins = tokio::task::JoinSet::new();
        for i in 0..self.count {
            let permit = gate.clone().acquire_owned().await?;
            let me = self.clone();
            let stop = stop.clone();
            joins.spawn(async move {
                let r = me.start_one(i, stop).await;
                drop(permit);
                r
            });
        }
        while let Some(r) = joins.join_next().await {
            r??;
        }
        Ok(t0.elapsed())
    }

    async fn start_one(
        &self,
        i: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let n = self.addrs.len();
        let desc = description(format!("{}{i:05}", self.hostname_prefix));
        let joined = swarm_agent::join::join(&self.addrs[i % n], &self.token, "", &desc).await?;
        let resp = joined.resp;
        let certs =
            swarm_api::tls::NodeCerts::new(&resp.ca_cert_pem, &resp.cert_pem, &joined.key_pem)?;
        let tls = swarm_api::tls::client_config(&certs)?;
        let node = NodeId::new(resp.node_id);
        // Agent i's home is the manager it joined through, in the order the managers list
        // themselves too when that order matches `addrs` (the grid starts them in it).
        let managers = ManagerSet::with_tls(self.addrs.clone(), Some(tls));
        managers.set_spread(i);
        let session = swarm_agent::session::Session {
            node_id: node.clone(),
            managers: managers.clone(),
            description: desc,
            desired_role: None,
            unavailable: String::new(),
        };
        tokio::spawn(session.run(stop.clone()));
        tokio::spawn(swarm_agent::worker::run(
            node,
            self.state_dir.join(format!("a{i}")),
            Arc::new(FakeExecutor::default()),
            managers,
            stop,
        ));
        Ok(())
    }
}
