//! Writing services: the image pinned to a digest, host ports derived, the endpoint
//! allocated (retried when the control loop took the same address first), the spec validated;
//! and this manager's view of the cluster for `status`.

use super::*;

/// Pins the service's image tag to the manifest digest the cluster registry holds for it
/// (Docker's `--resolve-image`), so every node runs the same bytes even if the tag moves
/// later. `current` is the image before an update (for `changed`). An image that cannot be
/// pinned keeps its tag, with a warning the client prints.
pub(super) fn pin_image(
    s: &StoreState,
    spec: &mut ServiceSpec,
    mode: &str,
    current: Option<&str>,
) -> Result<Vec<String>, Status> {
    use swarm_types::registry::{pin_image, ResolveImage};
    let mode = ResolveImage::parse(mode).map_err(Status::invalid_argument)?;
    let image = &mut spec.task.container.image;
    let skip = match mode {
        ResolveImage::Never => true,
        ResolveImage::Changed => current == Some(image.as_str()),
        ResolveImage::Always => false,
    };
    if skip {
        return Ok(Vec::new());
    }
    match pin_image(|name| s.repositories.get(name), image) {
        Ok(Some(pinned)) => {
            *image = pinned;
            Ok(Vec::new())
        }
        Ok(None) => Ok(Vec::new()),
        Err(why) => Ok(vec![format!(
            "image {image} could not be pinned to a digest ({why}); each node uses the tag {image} as it finds it, so nodes may run different versions of the image"
        )]),
    }
}

/// The host-mode ports a task holds on its node, from the service's endpoint spec (so the
/// scheduler sees them and a change to them replaces the tasks).
pub(super) fn derive_host_ports(spec: &mut ServiceSpec) {
    spec.task.host_ports = spec
        .endpoint
        .ports
        .iter()
        .filter(|p| p.mode == swarm_types::endpoint::PublishMode::Host)
        .cloned()
        .collect();
}

impl ControlService {
    /// Writes a service created or changed by the operator with its endpoint allocated. The
    /// control loop may hand a task the address just chosen for a VIP (or another client a
    /// port) before this write lands: the store refuses the write, and the choice is made
    /// again on the new state.
    pub(super) async fn write_service(
        &self,
        mut svc: Service,
        op: fn(Object) -> Op,
    ) -> Result<Vec<Object>, Status> {
        let mut attempt = 0;
        loop {
            self.read(|s| allocate_endpoint(s, &mut svc))?;
            match self
                .write(vec![op(Object::Service(Box::new(svc.clone())))])
                .await
            {
                Err(e)
                    if attempt < 5
                        && e.code() == tonic::Code::FailedPrecondition
                        && (e.message().contains(" is held by task ")
                            || e.message().contains(" is the virtual IP of service ")) =>
                {
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

/// Virtual IPs and picked ports for the service's (new) spec, keeping what it holds.
pub(super) fn allocate_endpoint(s: &StoreState, svc: &mut Service) -> Result<(), Status> {
    svc.endpoint = swarm_engine::endpoint::allocate(s, &svc.id, &svc.spec, &svc.endpoint)
        .map_err(Status::failed_precondition)?
        .into();
    Ok(())
}

pub(super) fn validate(spec: &ServiceSpec) -> Result<(), Status> {
    spec.validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

impl ControlService {
    pub(super) fn local_status(&self) -> StatusResponse {
        // Copy what is needed: the metrics borrow must not be held while other calls borrow.
        let (leader, term, commit_index, applied_index, snapshot_index, purged_index) = {
            let rx = self.manager.raft().metrics();
            let m = rx.borrow();
            (
                m.current_leader,
                m.current_term,
                m.last_log_index.unwrap_or(0),
                m.last_applied.map(|l| l.index).unwrap_or(0),
                m.snapshot.map(|l| l.index).unwrap_or(0),
                m.purged.map(|l| l.index).unwrap_or(0),
            )
        };
        let by_raft: std::collections::HashMap<u64, String> = self.read(|s| {
            s.nodes
                .values()
                .filter_map(|n| {
                    n.manager_status
                        .as_ref()
                        .map(|ms| (ms.raft_id, n.id.to_string()))
                })
                .collect()
        });
        let managers = self
            .manager
            .members()
            .into_iter()
            .map(|(id, addr, voter)| ManagerInfo {
                node_id: by_raft.get(&id).cloned().unwrap_or_default(),
                raft_id: id,
                addr,
                status: if Some(id) == leader {
                    "leader"
                } else if self.manager.is_reachable(id) {
                    "reachable"
                } else {
                    "unreachable"
                }
                .into(),
                voter,
            })
            .collect();
        StatusResponse {
            node_id: self.manager.config().node_id.to_string(),
            cluster_id: self.read(|s| s.cluster().map(|c| c.id.to_string()).unwrap_or_default()),
            leader_node_id: leader
                .and_then(|l| by_raft.get(&l).cloned())
                .unwrap_or_default(),
            term,
            commit_index,
            applied_index,
            managers,
            version: swarm_api::VERSION.into(),
            snapshot_index,
            purged_index,
        }
    }
}
