//! How this node becomes part of a cluster: a new identity, bootstrapping a new cluster on the
//! first manager, joining with a token, promotion to manager.

use crate::args::Args;
use crate::host::*;
use crate::identity::{self, Identity};
use anyhow::{anyhow, bail};
use std::time::Duration;
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::ManagerPromoteRequest;
use swarm_manager::Manager;
use swarm_types::objects::{
    ClusterSpec, JoinTokens, ManagerStatus, NodeDescription, NodeState, NodeStatus,
};
use swarm_types::spec::{NodeRole, NodeSpec};
use swarm_types::store::{Op, WriteBatch};
use swarm_types::token::JoinToken;
use swarm_types::{Cluster, ClusterId, Node, NodeId, Object};

/// First start of the first manager: a fresh identity, persisted before anything else so an
/// interrupted bootstrap resumes.
pub(crate) fn new_identity(args: &Args) -> anyhow::Result<Identity> {
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
pub(crate) async fn bootstrap(
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
pub(crate) async fn join(
    args: &Args,
    addr: &str,
    description: &NodeDescription,
) -> anyhow::Result<Identity> {
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
///
/// Each round asks the leader and voters this node's own (learning) manager knows of first,
/// then the managers it knew when it joined: those may have been demoted meanwhile, and a
/// node that kept asking only them never became a voter (seen as a flaky t40 run: the
/// promotion of n3 went on retrying the demoted n1 while the cluster counted n3 a manager).
pub(crate) async fn promote(
    id: &Identity,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    local: &swarm_manager::manager::Manager,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last_err = String::new();
    loop {
        let mut addrs: Vec<String> = local.leader().map(|(_, a)| a).into_iter().collect();
        addrs.extend(
            local
                .members()
                .into_iter()
                .filter(|(_, _, voter)| *voter)
                .map(|(_, a, _)| a),
        );
        addrs.extend(id.managers.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(a.clone()));
        for addr in &addrs {
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
