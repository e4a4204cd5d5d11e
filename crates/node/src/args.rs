//! Command-line contract of `swarmd` (DESIGN.md section 7).

use std::path::PathBuf;

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "swarmd",
    version,
    about = "swarm node daemon: runs the agent and, on managers, the manager"
)]
pub struct Args {
    /// Where this node keeps its identity, Raft state and images.
    #[arg(long, default_value = "/var/lib/swarmd")]
    pub state_dir: PathBuf,
    /// Address the gRPC server listens on (managers).
    #[arg(long, default_value = "0.0.0.0:4242")]
    pub listen_addr: String,
    /// Address other nodes use to reach this one (default: the listen address, or the local
    /// address that routes to the join address).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Node hostname (default: the host's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Join the cluster of the manager at this address.
    #[arg(long, value_name = "MANAGER_IP:PORT", requires = "token")]
    pub join: Option<String>,
    /// Join token (`swarmctl cluster join-token worker|manager` prints one).
    #[arg(long)]
    pub token: Option<String>,
    /// Engine label `key=value` (repeatable); constraints match it as engine.labels.KEY.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Control socket path (default: <state-dir>/swarmd.sock).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub raft_heartbeat_ms: u64,
    /// Minimum Raft election timeout in milliseconds (the maximum is 5/4 of this). A follower
    /// campaigns after hearing nothing from its leader for the maximum (the leader's lease)
    /// plus its own timeout: with the default 400, 900–1,000 ms. At least twice the heartbeat.
    #[arg(long, default_value_t = swarm_manager::DEFAULT_ELECTION_TIMEOUT_MS)]
    pub raft_election_timeout_ms: u64,
    /// Take a Raft snapshot (and compact the log) after this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub raft_snapshot_interval: u64,
    /// How long a node must be down before its tasks are rescheduled elsewhere.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub node_down_grace: std::time::Duration,
    /// Task executor: `runtime` (real containers) or `fake` (no containers; benchmarks).
    #[arg(long, default_value = "runtime", value_parser = ["runtime", "fake"])]
    pub executor: String,
    /// Lifetime of node certificates (new cluster only; at least 1h). Nodes renew at a random
    /// point between 50% and 80% of it.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub cert_expiry: std::time::Duration,
    /// Test hook: renew this node's certificate after this long instead of at 50-80% of its
    /// lifetime.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub cert_renew_after: Option<std::time::Duration>,
    /// Log entries kept behind the last snapshot.
    #[arg(long, default_value_t = 1_000)]
    pub raft_logs_to_keep: u64,
    /// Address the cluster registry (OCI Distribution API over HTTPS) listens on (managers).
    #[arg(long, default_value = "0.0.0.0:4243")]
    pub registry_addr: String,
    /// Serve registry pulls to clients without a certificate or token.
    #[arg(long)]
    pub registry_anonymous_pull: bool,
    /// Remove images no container uses and none was created from for this long (their data
    /// too); 0s keeps every image until `swarmctl image rm` or `image prune`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub image_keep_unused: std::time::Duration,
    /// How often a manager deletes registry blobs no manifest references (0s: never).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub registry_gc_interval: std::time::Duration,
    /// Unreferenced blobs written or used more recently than this are kept (uploads in
    /// flight: blobs are pushed before the manifest that references them).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub registry_gc_grace: std::time::Duration,
    /// A registry `HOST:PORT` the agent may pull from over plain HTTP (repeatable); other
    /// registries are reached over HTTPS only (loopback registries may use HTTP).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Run task containers in a user namespace: container root is an unprivileged host id from
    /// /etc/subuid and /etc/subgid. `default` uses the user `swarmremap` (given 65,536 ids when
    /// it has none); `USER` or `USER:GROUP` use theirs. Image layers are mounted idmapped
    /// (chowned copies where the kernel or filesystem cannot), new volumes belong to the mapped
    /// root; privileged tasks stay in the host's namespace.
    #[arg(long, value_name = "default|USER[:GROUP]")]
    pub userns_remap: Option<String>,
    /// Test hook: run remapped tasks on chowned copies of their layers even where idmapped
    /// mounts work (the fallback for kernels and filesystems without them).
    #[arg(long, hide = true, requires = "userns_remap")]
    pub userns_remap_copy: bool,
    /// Address pool that network subnets are taken from (new cluster only; repeatable;
    /// default 10.0.0.0/8).
    #[arg(long = "default-addr-pool", value_name = "CIDR", value_parser = parse_pool)]
    pub default_addr_pool: Vec<swarm_types::network::Ipv4Net>,
    /// Prefix length of the subnets taken from the address pools (new cluster only); a
    /// network created with --subnet may be larger.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub default_addr_pool_mask_len: u8,
}

fn parse_pool(s: &str) -> Result<swarm_types::network::Ipv4Net, String> {
    let n: swarm_types::network::Ipv4Net = s.parse()?;
    if n.addr != n.network() {
        return Err(format!(
            "{n} has host bits set; did you mean {}?",
            n.trunc()
        ));
    }
    if n.prefix < 8 {
        return Err(format!("{n} is larger than a /8"));
    }
    Ok(n)
}

impl Args {
    /// Raft timings that cannot work: a follower must hear several heartbeats per election
    /// timeout, or it campaigns against a healthy leader.
    pub fn check_raft_timing(&self) -> Result<(), String> {
        if self.raft_heartbeat_ms == 0 {
            return Err("--raft-heartbeat-ms must be at least 1".into());
        }
        if self.raft_election_timeout_ms < 2 * self.raft_heartbeat_ms {
            return Err(format!(
                "--raft-election-timeout-ms {} must be at least twice --raft-heartbeat-ms {} (the defaults are 400 and 100)",
                self.raft_election_timeout_ms, self.raft_heartbeat_ms
            ));
        }
        Ok(())
    }

    /// Address pool settings that contradict each other or the way the node starts.
    pub fn check_addr_pools(&self) -> Result<(), String> {
        if self.join.is_some()
            && (!self.default_addr_pool.is_empty() || self.default_addr_pool_mask_len != 24)
        {
            return Err("--default-addr-pool and --default-addr-pool-mask-len apply when a new cluster is created; a joining node uses its cluster's pools".into());
        }
        for (i, p) in self.default_addr_pool.iter().enumerate() {
            if self.default_addr_pool_mask_len < p.prefix {
                return Err(format!(
                    "--default-addr-pool-mask-len {} is larger than the pool {p}: subnets must fit in their pool",
                    self.default_addr_pool_mask_len
                ));
            }
            if let Some(q) = self.default_addr_pool[..i].iter().find(|q| q.overlaps(p)) {
                return Err(format!("address pools {q} and {p} overlap"));
            }
        }
        Ok(())
    }
}
