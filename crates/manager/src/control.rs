//! The control API (what `swarmctl` calls), served by every manager over TCP and on the local
//! unix socket. Writes go through `Manager::write` (forwarded to the leader when needed); reads
//! are linearizable unless the request says `stale`.

use crate::manager::Manager;
use crate::store::StoreEvent;
use std::pin::Pin;
use swarm_api::control::control_server::Control;
use swarm_api::control::*;
use swarm_api::wire;
use swarm_types::objects::{Cluster, NodeState};
use swarm_types::spec::{NodeSpec, ServiceMode, ServiceSpec};
use swarm_types::store::{Op, StoreState, WriteBatch};
use swarm_types::token::JoinToken;
use swarm_types::{Node, Object, ObjectKind, Service, ServiceId};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::pages::PageStream;
mod events;
mod logs;
mod lookup;
mod networks;
mod registry;
mod services;
pub use lookup::redact_cluster;
use lookup::*;
use services::*;
type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[derive(Clone)]
pub struct ControlService {
    manager: Manager,
}

impl ControlService {
    pub fn new(manager: Manager) -> Self {
        ControlService { manager }
    }

    async fn write(&self, ops: Vec<Op>) -> Result<Vec<Object>, Status> {
        Ok(self.manager.write(WriteBatch { ops, now_ms: 0 }).await?)
    }

    fn read<R>(&self, f: impl FnOnce(&StoreState) -> R) -> R {
        self.manager.store().read(f)
    }
}

use crate::pages::pages;

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut local = self.local_status();
        // Only the leader talks to every manager, so it is the one that knows who is reachable.
        if let Some((id, addr)) = self.manager.leader() {
            if id != self.manager.raft_id() {
                if let Some(ch) = self.manager.network().channel(&addr) {
                    let mut client = swarm_api::control::control_client::ControlClient::new(ch);
                    let mut r = Request::new(req.into_inner());
                    r.set_timeout(std::time::Duration::from_millis(500));
                    let call = client.status(r);
                    if let Ok(Ok(resp)) =
                        tokio::time::timeout(std::time::Duration::from_millis(600), call).await
                    {
                        local.managers = resp.into_inner().managers;
                    }
                }
            }
        }
        Ok(Response::new(local))
    }

    async fn create_service(
        &self,
        req: Request<CreateServiceRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let mut spec: ServiceSpec = wire::from_bytes("service spec", &req.get_ref().spec)?;
        validate(&spec)?;
        spec.task.fold_predefined_networks();
        derive_host_ports(&mut spec);
        if !spec.task.networks.is_empty() || !spec.endpoint.ports.is_empty() {
            self.manager.read_barrier(false).await?;
            self.attach_ingress(&mut spec).await?;
            self.read(|s| networks::resolve_attachments(s, &mut spec))?;
        }
        // Without a read barrier (creates are the hot path): a push acknowledged moments ago
        // by another manager may not be applied here yet, and then the tag is used unpinned,
        // with the warning saying so.
        let warnings =
            self.read(|s| pin_image(s, &mut spec, &req.get_ref().resolve_image, None))?;
        self.read(|s| seal_auth(s, &mut spec, None))?;
        let svc = Service::new(ServiceId::generate(), spec);
        let mut out = self.write_service(svc, Op::Create).await?;
        tracing::info!(service = %out[0].id(), "service created");
        let mut resp = object_response(out.remove(0));
        resp.get_mut().warnings = warnings;
        Ok(resp)
    }

    async fn get_service(
        &self,
        req: Request<GetRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(r.stale).await?;
        // With its task counts, as in lists (what `--detach=false` follows).
        let s = self.read(|s| {
            find_service(s, &r.reference).map(|mut svc| {
                svc.status = s.service_status(&svc.id).map(Box::new);
                svc
            })
        })?;
        Ok(object_response(Object::Service(Box::new(s))))
    }

    type ListServicesStream = PageStream;
    async fn list_services(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<PageStream>, Status> {
        self.manager.read_barrier(req.get_ref().stale).await?;
        let objs: Vec<Object> = self.read(|s| {
            let mut status = s.service_statuses();
            s.services
                .values()
                .map(|svc| {
                    let mut svc = svc.clone();
                    svc.status = status.remove(&svc.id).map(Box::new);
                    Object::Service(svc)
                })
                .collect()
        });
        Ok(pages(objs.into_iter().map(redact)))
    }

    async fn update_service(
        &self,
        req: Request<UpdateServiceRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        let mut spec: ServiceSpec = wire::from_bytes("service spec", &r.spec)?;
        validate(&spec)?;
        spec.task.fold_predefined_networks();
        derive_host_ports(&mut spec);
        self.manager.read_barrier(false).await?;
        self.attach_ingress(&mut spec).await?;
        self.read(|s| networks::resolve_attachments(s, &mut spec))?;
        let mut svc = self.read(|s| find_service(s, &r.reference))?;
        let current = svc.spec.task.container.image.clone();
        let warnings = self.read(|s| pin_image(s, &mut spec, &r.resolve_image, Some(&current)))?;
        self.read(|s| seal_auth(s, &mut spec, Some(&svc.spec)))?;
        if r.version != 0 {
            svc.meta.version = r.version;
        }
        if svc.spec.mode.name() != spec.mode.name() {
            return Err(Status::invalid_argument(format!(
                "cannot change the mode of service {} from {} to {}; remove and create it again",
                svc.spec.name,
                svc.spec.mode.name(),
                spec.mode.name()
            )));
        }
        if !svc.replace_spec(spec, swarm_api::now_ms(), false) {
            // Nothing changed: docker answers with the service as it is.
            let mut resp = object_response(Object::Service(Box::new(svc)));
            resp.get_mut().warnings = warnings;
            return Ok(resp);
        }
        let mut out = self.write_service(svc, Op::Update).await?;
        let mut resp = object_response(out.remove(0));
        resp.get_mut().warnings = warnings;
        Ok(resp)
    }

    async fn rollback_service(
        &self,
        req: Request<RollbackServiceRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(false).await?;
        let mut svc = self.read(|s| find_service(s, &r.reference))?;
        let target = if r.to_version == 0 {
            svc.previous_spec.as_deref().cloned().ok_or_else(|| {
                Status::failed_precondition(format!(
                    "service {} has no previous spec to roll back to",
                    svc.spec.name
                ))
            })?
        } else {
            match svc.spec_history.iter().find(|h| h.version == r.to_version) {
                Some(h) => h.spec.clone(),
                None => {
                    let known: Vec<String> = svc
                        .spec_history
                        .iter()
                        .map(|h| h.version.to_string())
                        .collect();
                    return Err(Status::not_found(format!(
                        "service {} has no spec version {} (current: {}, kept: {})",
                        svc.spec.name,
                        r.to_version,
                        svc.spec_version.max(1),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            }
        };
        if target.name != svc.spec.name {
            // Names are not rolled back (another service may have taken the old one).
            return Err(Status::failed_precondition(
                "rolling back across a rename is not supported; rename the service back first",
            ));
        }
        svc.replace_spec(target, swarm_api::now_ms(), true);
        let mut out = self.write_service(svc, Op::Update).await?;
        Ok(object_response(out.remove(0)))
    }

    async fn scale_service(
        &self,
        req: Request<ScaleServiceRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        if r.replicas > swarm_types::spec::MAX_REPLICAS {
            return Err(Status::invalid_argument(format!(
                "invalid replica count {}: it must be between 0 and {}",
                r.replicas,
                swarm_types::spec::MAX_REPLICAS
            )));
        }
        // Optimistic concurrency: retry a few times if someone else updated the service.
        for _ in 0..5 {
            self.manager.read_barrier(false).await?;
            let mut svc = self.read(|s| find_service(s, &r.reference))?;
            match svc.spec.mode {
                ServiceMode::Replicated { .. } => {}
                ref m => {
                    return Err(Status::failed_precondition(format!(
                        "scale can only be used with replicated services; {} is {}",
                        svc.spec.name,
                        m.name()
                    )))
                }
            }
            let mut spec = svc.spec.clone();
            spec.mode = ServiceMode::Replicated {
                replicas: r.replicas,
            };
            if !svc.replace_spec(spec, swarm_api::now_ms(), false) {
                return Ok(object_response(Object::Service(Box::new(svc))));
            }
            match self
                .write(vec![Op::Update(Object::Service(Box::new(svc)))])
                .await
            {
                Ok(mut out) => return Ok(object_response(out.remove(0))),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => continue,
                Err(s) => return Err(s),
            }
        }
        Err(Status::aborted(
            "service is being updated concurrently; retry",
        ))
    }

    async fn remove_service(&self, req: Request<RemoveRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(false).await?;
        let svc = self.read(|s| find_service(s, &r.reference))?;
        self.write(vec![Op::Delete {
            kind: ObjectKind::Service,
            id: svc.id.to_string(),
            version: None,
        }])
        .await?;
        tracing::info!(service = %svc.id, "service removed");
        Ok(Response::new(Empty {}))
    }

    type ListTasksStream = PageStream;
    async fn list_tasks(&self, req: Request<ListRequest>) -> Result<Response<PageStream>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(r.stale).await?;
        // Tasks, not `Object`s: the enum is as large as its largest variant (a `Service`).
        let tasks: Vec<swarm_types::Task> = self.read(|s| -> Result<_, Status> {
            let svc = if r.service.is_empty() {
                None
            } else {
                Some(find_service(s, &r.service)?.id)
            };
            let node = if r.node.is_empty() {
                None
            } else {
                Some(find_node(s, &r.node)?.id)
            };
            let tasks: Box<dyn Iterator<Item = &swarm_types::Task>> = match &node {
                Some(id) => Box::new(s.tasks_on(id)),
                None => Box::new(s.tasks.values().map(|t| &**t)),
            };
            Ok(tasks
                .filter(|t| svc.as_ref().is_none_or(|id| t.service_id == *id))
                .cloned()
                .collect())
        })?;
        Ok(pages(tasks.into_iter().map(|t| redact(Object::Task(t)))))
    }

    async fn get_node(&self, req: Request<GetRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(r.stale).await?;
        let n = self.read(|s| find_node(s, &r.reference))?;
        Ok(object_response(Object::Node(n)))
    }

    type ListNodesStream = PageStream;
    async fn list_nodes(&self, req: Request<ListRequest>) -> Result<Response<PageStream>, Status> {
        self.manager.read_barrier(req.get_ref().stale).await?;
        let objs: Vec<Object> =
            self.read(|s| s.nodes.values().cloned().map(Object::Node).collect());
        Ok(pages(objs.into_iter().map(redact)))
    }

    async fn update_node(
        &self,
        req: Request<UpdateNodeRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        let spec: NodeSpec = wire::from_bytes("node spec", &r.spec)?;
        swarm_types::spec::validate_labels(&spec.labels)
            .and_then(|()| swarm_types::limits::check_labels("node", &spec.labels))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.manager.read_barrier(false).await?;
        let mut node = self.read(|s| find_node(s, &r.reference))?;
        if spec.role != node.spec.role {
            return Ok(object_response(
                crate::membership::change_role(&self.manager, node, spec).await?,
            ));
        }
        if r.version != 0 {
            node.meta.version = r.version;
        }
        node.spec = spec;
        let mut out = self.write(vec![Op::Update(Object::Node(node))]).await?;
        Ok(object_response(out.remove(0)))
    }

    async fn get_cluster(
        &self,
        req: Request<GetRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        self.manager.read_barrier(req.get_ref().stale).await?;
        let c = self
            .read(|s| s.cluster().cloned())
            .ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        Ok(object_response(Object::Cluster(c)))
    }

    async fn rotate_join_token(
        &self,
        req: Request<RotateJoinTokenRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let r = req.into_inner();
        if !r.worker && !r.manager {
            return Err(Status::invalid_argument(
                "say which token to rotate: worker or manager",
            ));
        }
        self.manager.read_barrier(false).await?;
        let mut c = self
            .read(|s| s.cluster().cloned())
            .ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        if r.worker {
            c.join_tokens.worker = JoinToken::generate(&c.root_ca.digest).to_string();
        }
        if r.manager {
            c.join_tokens.manager = JoinToken::generate(&c.root_ca.digest).to_string();
        }
        let mut out = self.write(vec![Op::Update(Object::Cluster(c))]).await?;
        tracing::info!(worker = r.worker, manager = r.manager, "join token rotated");
        Ok(object_response(out.remove(0)))
    }

    async fn issue_client_cert(
        &self,
        req: Request<IssueClientCertRequest>,
    ) -> Result<Response<IssueClientCertResponse>, Status> {
        self.manager.read_barrier(false).await?;
        let c = self
            .read(|s| s.cluster().cloned())
            .ok_or_else(|| Status::unavailable("cluster is not initialized yet"))?;
        let cn = format!("admin-{}", swarm_types::util::random_base36(12));
        let cert_pem = crate::ca::issue(
            &c.root_ca,
            &req.get_ref().csr,
            &cn,
            "admin",
            c.id.as_str(),
            crate::nodes::cert_expiry(&c),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(client = %cn, "admin client certificate issued");
        Ok(Response::new(IssueClientCertResponse {
            cert_pem,
            ca_cert_pem: c.root_ca.cert_pem,
        }))
    }

    async fn registry_login_token(
        &self,
        req: Request<swarm_api::control::RegistryLoginTokenRequest>,
    ) -> Result<Response<swarm_api::control::RegistryLoginTokenResponse>, Status> {
        self.manager.read_barrier(false).await?;
        let r = req.into_inner();
        let scope = match r.scope.as_str() {
            "pull" => crate::registry::access::Scope::Pull,
            "push" => crate::registry::access::Scope::Push,
            other => {
                return Err(Status::invalid_argument(format!(
                    "invalid scope {other:?}: use pull or push"
                )))
            }
        };
        if r.expires_secs == 0 || r.expires_secs > 366 * 24 * 3600 {
            return Err(Status::invalid_argument(
                "the token lifetime must be between 1 second and 366 days",
            ));
        }
        let ttl = std::time::Duration::from_secs(r.expires_secs);
        let token = crate::registry::login_token(&self.manager, scope, ttl)?;
        tracing::info!(
            scope = scope.as_str(),
            secs = r.expires_secs,
            "registry login token issued"
        );
        Ok(Response::new(
            swarm_api::control::RegistryLoginTokenResponse {
                token,
                expires_at: swarm_api::now_ms() / 1000 + r.expires_secs,
            },
        ))
    }

    async fn remove_node(&self, req: Request<RemoveRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        self.manager.read_barrier(false).await?;
        let node = self.read(|s| find_node(s, &r.reference))?;
        if node
            .manager_status
            .as_ref()
            .is_some_and(|m| self.manager.voters().contains(&m.raft_id))
        {
            return Err(Status::failed_precondition(format!(
                "node {} is a manager; demote it first (`swarmctl node demote {}`)",
                node.description.hostname, node.description.hostname
            )));
        }
        if node.status.state == NodeState::Ready && !r.force {
            return Err(Status::failed_precondition(format!(
                "node {} is up; stop it first or remove it with --force",
                node.description.hostname
            )));
        }
        self.write(vec![Op::Delete {
            kind: ObjectKind::Node,
            id: node.id.to_string(),
            version: None,
        }])
        .await?;
        tracing::info!(node = %node.id, "node removed");
        Ok(Response::new(Empty {}))
    }

    async fn create_network(
        &self,
        req: Request<CreateNetworkRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        self.do_create_network(req.into_inner()).await
    }

    async fn get_network(
        &self,
        req: Request<GetRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        self.do_get_network(req.into_inner()).await
    }

    type ListNetworksStream = PageStream;
    async fn list_networks(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<PageStream>, Status> {
        self.do_list_networks(req.into_inner()).await
    }

    async fn remove_network(&self, req: Request<RemoveRequest>) -> Result<Response<Empty>, Status> {
        self.do_remove_network(req.into_inner()).await
    }

    type ListRepositoriesStream = PageStream;
    async fn list_repositories(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<PageStream>, Status> {
        self.do_list_repositories(req.into_inner()).await
    }

    async fn remove_image_reference(
        &self,
        req: Request<RemoveRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.do_remove_image_reference(req.into_inner()).await
    }

    type EventsStream = events::EventsStream;
    async fn events(
        &self,
        req: Request<EventsRequest>,
    ) -> Result<Response<events::EventsStream>, Status> {
        self.do_events(req.into_inner()).await
    }

    type ServiceLogsStream = logs::LogsStream;
    async fn service_logs(
        &self,
        req: Request<ServiceLogsRequest>,
    ) -> Result<Response<logs::LogsStream>, Status> {
        self.do_service_logs(req.into_inner()).await
    }

    type WatchStream = WatchStream;
    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let kinds: Vec<String> = req.into_inner().kinds;
        let mut rx = self.manager.store().subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(StoreEvent::Change(c)) => c,
                    Ok(StoreEvent::Reset) => {
                        // A snapshot replaced the store: the client must re-list.
                        let reset = WatchEvent {
                            change: Vec::new(),
                            reset: true,
                        };
                        if tx.send(Ok(reset)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "watcher fell behind by {n} changes; watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if !kinds.is_empty() && !kinds.iter().any(|k| k == ev.object.kind().as_str()) {
                    continue;
                }
                let mut c = (*ev).clone();
                c.object = redact(c.object);
                if tx
                    .send(Ok(WatchEvent {
                        change: wire::to_bytes(&c),
                        reset: false,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}

/// Used by `node ls`: whether a node counts as ready.
pub fn node_ready(n: &Node) -> bool {
    n.status.state == NodeState::Ready
}

#[cfg(test)]
mod tests;
