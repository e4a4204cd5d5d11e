//! The control API's network calls: create (subnet, gateway and VXLAN id decided by the pure
//! IPAM of `swarm_engine::ipam` and checked again by the store when applied), get, list and
//! remove (refused while a service or task uses the network), and the resolution of the
//! network names a service spec attaches to into network ids.

use super::{object_response, pages, resolve, ControlService};
use crate::pages::PageStream;
use swarm_api::control::{
    CreateNetworkRequest, Empty, GetRequest, ListRequest, ObjectResponse, RemoveRequest,
};
use swarm_api::wire;
use swarm_engine::ipam;
use swarm_types::network::NetworkSpec;
use swarm_types::spec::ServiceSpec;
use swarm_types::store::{Op, StoreState};
use swarm_types::Network;
use swarm_types::{NetworkId, Object, ObjectKind};
use tonic::{Response, Status};

pub(super) fn find_network(s: &StoreState, r: &str) -> Result<Network, Status> {
    resolve(
        "network",
        r,
        s.networks
            .values()
            .map(|v| (v.id.as_str(), v.spec.name.as_str(), v)),
    )
    .cloned()
}

/// Replaces each attachment's target (a network name, id or id prefix) by the network's id.
pub(super) fn resolve_attachments(s: &StoreState, spec: &mut ServiceSpec) -> Result<(), Status> {
    for a in &mut spec.task.networks {
        let net = find_network(s, &a.target).map_err(|e| {
            if e.code() == tonic::Code::NotFound {
                Status::not_found(format!(
                    "network {} not found; create it with `swarmctl network create {}`",
                    a.target, a.target
                ))
            } else {
                e
            }
        })?;
        a.target = net.id.to_string();
    }
    let mut ids: Vec<&str> = spec
        .task
        .networks
        .iter()
        .map(|a| a.target.as_str())
        .collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(Status::invalid_argument(
            "the same network is attached twice (by name and by id); give it once",
        ));
    }
    Ok(())
}

/// The network a service that publishes ports without choosing a network is attached to
/// (Docker's `ingress`), created on first use.
pub const INGRESS: &str = "ingress";

impl ControlService {
    /// Attaches a service that publishes ports but names no network to [`INGRESS`], creating
    /// that overlay network if the cluster has none yet: its tasks need an address the
    /// routing mesh can reach.
    pub(super) async fn attach_ingress(&self, spec: &mut ServiceSpec) -> Result<(), Status> {
        if spec.endpoint.ports.is_empty() || !spec.task.networks.is_empty() {
            return Ok(());
        }
        if self.read(|s| s.network_by_name(INGRESS).is_none()) {
            let net = NetworkSpec {
                name: INGRESS.into(),
                labels: Default::default(),
                driver: swarm_types::network::NetworkDriver::Overlay,
                ipam: Default::default(),
                attachable: false,
                internal: false,
            };
            let req = CreateNetworkRequest {
                spec: wire::to_bytes(&net),
            };
            match self.do_create_network(req).await {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::AlreadyExists => {}
                Err(e) => {
                    return Err(Status::new(
                        e.code(),
                        format!(
                            "creating the ingress network for the published ports: {}",
                            e.message()
                        ),
                    ))
                }
            }
        }
        spec.task
            .networks
            .push(swarm_types::spec::NetworkAttachmentConfig {
                target: INGRESS.into(),
                aliases: vec![],
            });
        Ok(())
    }

    pub(super) async fn do_create_network(
        &self,
        req: CreateNetworkRequest,
    ) -> Result<Response<ObjectResponse>, Status> {
        let spec: NetworkSpec = wire::from_bytes("network spec", &req.spec)?;
        spec.validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // A concurrent create may take the subnet or VXLAN id this one chose: the store
        // refuses the second write, and the choice is made again on the new state.
        for _ in 0..5 {
            self.manager.read_barrier(false).await?;
            let net = self.read(|s| -> Result<Network, Status> {
                if let Some(o) = s.network_by_name(&spec.name) {
                    return Err(Status::already_exists(format!(
                        "network name {:?} is already in use by {}",
                        spec.name, o.id
                    )));
                }
                ipam::new_network(s, NetworkId::generate(), spec.clone()).map_err(|e| match e {
                    ipam::IpamError::Overlap { .. } => Status::invalid_argument(e.to_string()),
                    _ => Status::resource_exhausted(e.to_string()),
                })
            })?;
            match self.write(vec![Op::Create(Object::Network(net))]).await {
                Ok(mut out) => {
                    tracing::info!(network = %out[0].id(), "network created");
                    return Ok(object_response(out.remove(0)));
                }
                Err(s)
                    if s.code() == tonic::Code::FailedPrecondition
                        && spec.ipam.subnet.is_none() =>
                {
                    continue
                }
                Err(s) => return Err(s),
            }
        }
        Err(Status::aborted(
            "networks are being created concurrently; retry",
        ))
    }

    pub(super) async fn do_get_network(
        &self,
        r: GetRequest,
    ) -> Result<Response<ObjectResponse>, Status> {
        self.manager.read_barrier(r.stale).await?;
        let n = self.read(|s| find_network(s, &r.reference))?;
        Ok(object_response(Object::Network(n)))
    }

    pub(super) async fn do_list_networks(
        &self,
        r: ListRequest,
    ) -> Result<Response<PageStream>, Status> {
        self.manager.read_barrier(r.stale).await?;
        let objs: Vec<Object> =
            self.read(|s| s.networks.values().cloned().map(Object::Network).collect());
        Ok(pages(objs))
    }

    pub(super) async fn do_remove_network(
        &self,
        r: RemoveRequest,
    ) -> Result<Response<Empty>, Status> {
        self.manager.read_barrier(false).await?;
        let net = self.read(|s| -> Result<Network, Status> {
            let net = find_network(s, &r.reference)?;
            let users = s.services_using(&net.id);
            if !users.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "network {} is in use by service{} {}; remove {} or detach {} first",
                    net.spec.name,
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" },
                    if users.len() == 1 { "it" } else { "them" },
                )));
            }
            Ok(net)
        })?;
        // The store also refuses while tasks (of a service being removed) still hold addresses.
        self.write(vec![Op::Delete {
            kind: ObjectKind::Network,
            id: net.id.to_string(),
            version: None,
        }])
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::FailedPrecondition {
                Status::failed_precondition(format!(
                    "{}; wait until their containers are stopped and try again",
                    s.message()
                ))
            } else {
                s
            }
        })?;
        tracing::info!(network = %net.id, "network removed");
        Ok(Response::new(Empty {}))
    }
}
