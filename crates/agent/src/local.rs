//! The node-local API on every node's control socket (workers included): what this node is
//! and which managers it knows, and its image store (import, list, remove, prune). It answers
//! for this node only: it writes no cluster state and forwards nothing to a manager.

use crate::images::{ImagesError, NodeImages, Removed};
use crate::managers::Managers;
use crate::volumes::{VolumeError, VolumeInfo, Volumes};
use std::io::Write;
use std::sync::Arc;
use swarm_api::agent::agent_server::Agent;
use swarm_api::agent::{
    GcReport, ImageInfo, ImportChunk, ImportResponse, InspectImagesRequest, InspectImagesResponse,
    InspectVolumesRequest, InspectVolumesResponse, ListImagesRequest, ListImagesResponse,
    ListVolumesRequest, ListVolumesResponse, NodeInfoRequest, NodeInfoResponse, PruneImagesRequest,
    PruneImagesResponse, PruneVolumesRequest, PruneVolumesResponse, RemoveImagesRequest,
    RemoveImagesResponse, RemoveVolumesRequest, RemoveVolumesResponse, TagImageRequest,
    TagImageResponse,
};
use swarm_runtime::image::normalize_name;
use swarm_runtime::{ImageConfig, ImageError};
use swarm_types::spec::NodeRole;
use swarm_types::NodeId;
use tonic::{Request, Response, Status, Streaming};

pub struct LocalService {
    node_id: NodeId,
    role: NodeRole,
    managers: Managers,
    /// The image store, or why this node has none (runtime unavailable, fake executor).
    images: Result<Arc<NodeImages>, String>,
    /// Registry client for `image pull|push` (None without an image store).
    puller: Option<Arc<crate::pull::Puller>>,
    /// The node's volumes (absent like the image store).
    volumes: Result<Arc<Volumes>, String>,
    /// Image builds (with the image store).
    builds: Option<Arc<crate::build::Builds>>,
}

impl LocalService {
    pub fn new(
        node_id: NodeId,
        role: NodeRole,
        managers: Managers,
        images: Result<Arc<NodeImages>, String>,
    ) -> Self {
        let builds = images.as_ref().ok().map(|i| {
            Arc::new(crate::build::Builds::new(
                i.clone(),
                node_id.short(),
                None,
                None,
            ))
        });
        LocalService {
            node_id,
            role,
            managers,
            images,
            builds,
            puller: None,
            volumes: Err("it has no volume store".into()),
        }
    }

    /// Serves `image pull|push` with this registry client, and image builds with it (the
    /// images FROM names) and with the node's data plane (RUN's network).
    pub fn with_puller(
        mut self,
        p: Option<Arc<crate::pull::Puller>>,
        net: Option<Arc<crate::network::DataPlane>>,
    ) -> Self {
        if let Ok(i) = &self.images {
            self.builds = Some(Arc::new(crate::build::Builds::new(
                i.clone(),
                self.node_id.short(),
                p.clone(),
                net,
            )));
        }
        self.puller = p;
        self
    }

    fn puller(&self) -> Result<&Arc<crate::pull::Puller>, Status> {
        self.images()?;
        self.puller.as_ref().ok_or_else(|| {
            Status::failed_precondition("this node has no registry client (see its log)")
        })
    }

    /// The node's volumes, served next to its images.
    pub fn with_volumes(mut self, volumes: Result<Arc<Volumes>, String>) -> Self {
        self.volumes = volumes;
        self
    }

    fn volumes(&self) -> Result<&Arc<Volumes>, Status> {
        self.volumes
            .as_ref()
            .map_err(|why| Status::failed_precondition(format!("this node has no volumes: {why}")))
    }

    fn images(&self) -> Result<&Arc<NodeImages>, Status> {
        self.images.as_ref().map_err(|why| {
            Status::failed_precondition(format!("this node has no image store: {why}"))
        })
    }
}

fn status_of(e: ImagesError) -> Status {
    match e {
        ImagesError::InUse { .. } => Status::failed_precondition(e.to_string()),
        ImagesError::Image(ImageError::ImageNotFound { .. }) => Status::not_found(e.to_string()),
        ImagesError::NoNames | ImagesError::TooMany(_) | ImagesError::NameTooLong(_) => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

fn volume_status(e: VolumeError) -> Status {
    match e {
        VolumeError::NotFound(_) => Status::not_found(e.to_string()),
        VolumeError::InUse { .. } => Status::failed_precondition(e.to_string()),
        VolumeError::Invalid(_) => Status::invalid_argument(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn volume_info(v: VolumeInfo) -> swarm_api::agent::VolumeInfo {
    swarm_api::agent::VolumeInfo {
        name: v.meta.name,
        driver: v.meta.driver,
        mountpoint: v.mountpoint.display().to_string(),
        created_at: v.meta.created_at,
        labels: v.meta.labels.into_iter().collect(),
        options: v.meta.options.into_iter().collect(),
        used_by: v.used_by,
    }
}

/// Most names one volume request may carry.
const MAX_VOLUME_NAMES: usize = 1000;

fn check_names(names: &[String]) -> Result<(), Status> {
    if names.len() > MAX_VOLUME_NAMES {
        return Err(Status::invalid_argument(format!(
            "too many volume names: {} (at most {MAX_VOLUME_NAMES})",
            names.len()
        )));
    }
    if let Some(n) = names.iter().find(|n| n.len() > 64) {
        return Err(Status::invalid_argument(format!(
            "volume name of {} bytes: names are at most 64 characters",
            n.len()
        )));
    }
    Ok(())
}

fn report(r: Removed) -> (Vec<ImageInfo>, Option<GcReport>) {
    (
        r.untagged
            .into_iter()
            .map(|(name, d)| ImageInfo {
                name,
                digest: d.to_string(),
            })
            .collect(),
        Some(GcReport {
            blobs_removed: r.gc.blobs_removed as u64,
            layers_removed: r.gc.layers_removed as u64,
            bytes_freed: r.gc.bytes_freed,
        }),
    )
}

#[tonic::async_trait]
impl Agent for LocalService {
    async fn pull_image(
        &self,
        req: Request<swarm_api::agent::PullImageRequest>,
    ) -> Result<Response<swarm_api::agent::PullImageResponse>, Status> {
        let name = req.into_inner().name;
        let puller = self.puller()?;
        // No collection removes what the pull has stored before it is tagged.
        let _shared = self.images()?.shared().await;
        let digest = puller
            .pull_now(&name)
            .await
            .map_err(|e| Status::failed_precondition(format!("pull {name}: {e}")))?;
        tracing::info!(image = %name, %digest, "image pulled (image pull)");
        Ok(Response::new(swarm_api::agent::PullImageResponse {
            digest,
        }))
    }

    async fn push_image(
        &self,
        req: Request<swarm_api::agent::PushImageRequest>,
    ) -> Result<Response<swarm_api::agent::PushImageResponse>, Status> {
        let r = req.into_inner();
        let target = if r.target.is_empty() {
            r.name.clone()
        } else {
            r.target.clone()
        };
        let puller = self.puller()?;
        let _shared = self.images()?.shared().await;
        let (digest, uploaded) = puller.push(&r.name, &target).await.map_err(|e| {
            Status::failed_precondition(format!("push {} as {target}: {e}", r.name))
        })?;
        tracing::info!(image = %r.name, %target, %digest, uploaded, "image pushed");
        Ok(Response::new(swarm_api::agent::PushImageResponse {
            digest,
            uploaded,
        }))
    }

    async fn list_volumes(
        &self,
        _req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let v = self.volumes()?.clone();
        let list = tokio::task::spawn_blocking(move || v.list())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(volume_status)?;
        Ok(Response::new(ListVolumesResponse {
            volumes: list.into_iter().map(volume_info).collect(),
        }))
    }

    async fn inspect_volumes(
        &self,
        req: Request<InspectVolumesRequest>,
    ) -> Result<Response<InspectVolumesResponse>, Status> {
        let names = req.into_inner().names;
        check_names(&names)?;
        let v = self.volumes()?.clone();
        let list = tokio::task::spawn_blocking(move || v.inspect(&names))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(volume_status)?;
        Ok(Response::new(InspectVolumesResponse {
            volumes: list.into_iter().map(volume_info).collect(),
        }))
    }

    async fn remove_volumes(
        &self,
        req: Request<RemoveVolumesRequest>,
    ) -> Result<Response<RemoveVolumesResponse>, Status> {
        let names = req.into_inner().names;
        check_names(&names)?;
        let removed = self.volumes()?.remove(names).await.map_err(volume_status)?;
        Ok(Response::new(RemoveVolumesResponse { removed }))
    }

    type BuildImageStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<swarm_api::agent::BuildEvent, Status>> + Send>,
    >;
    async fn build_image(
        &self,
        req: Request<Streaming<swarm_api::agent::BuildChunk>>,
    ) -> Result<Response<Self::BuildImageStream>, Status> {
        self.images()?;
        let builds = self
            .builds
            .clone()
            .ok_or_else(|| Status::failed_precondition("this node has no image store"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let stream = req.into_inner();
        tokio::spawn(async move {
            if let Err(e) = builds.run(stream, tx.clone()).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type ContainerLogsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<swarm_api::dispatcher::LogLine, Status>> + Send>,
    >;
    async fn container_logs(
        &self,
        req: Request<swarm_api::agent::ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let r = req.into_inner();
        let runtime = self
            .images()
            .map_err(|_| {
                Status::failed_precondition("this node runs no containers (no container runtime)")
            })?
            .runtime()
            .clone();
        if r.id.is_empty() {
            return Err(Status::invalid_argument(
                "name a container (a task id or a prefix of one)",
            ));
        }
        let rt = runtime.clone();
        let all = tokio::task::spawn_blocking(move || rt.list())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let ids: Vec<String> = all
            .into_iter()
            .map(|c| c.id)
            .filter(|id| id.starts_with(&r.id))
            .collect();
        let id = match ids.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Status::not_found(format!(
                    "no container {} on this node (containers are named after their task id: see `swarmctl node ps`)",
                    r.id
                )))
            }
            many => {
                return Err(Status::invalid_argument(format!(
                    "{} matches {} containers: {}; use more characters",
                    r.id,
                    many.len(),
                    many.join(", ")
                )))
            }
        };
        let rx = crate::logs::container_logs(runtime, id, r.options.unwrap_or_default());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn prune_volumes(
        &self,
        _req: Request<PruneVolumesRequest>,
    ) -> Result<Response<PruneVolumesResponse>, Status> {
        let (removed, bytes_freed) = self.volumes()?.prune().await.map_err(volume_status)?;
        Ok(Response::new(PruneVolumesResponse {
            removed,
            bytes_freed,
        }))
    }

    async fn import_image(
        &self,
        req: Request<Streaming<ImportChunk>>,
    ) -> Result<Response<ImportResponse>, Status> {
        let images = self.images()?.clone();
        let mut stream = req.into_inner();
        let mut name = String::new();
        let mut tmp = tempfile_in(images.store().root())?;
        while let Some(chunk) = stream.message().await? {
            if name.is_empty() {
                name = chunk.name;
            }
            tmp.write_all(&chunk.data)
                .map_err(|e| Status::internal(format!("buffer image: {e}")))?;
        }
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "image name missing: pass NAME:TAG",
            ));
        }
        let name = normalize_name(&name);
        // No garbage collection between writing the blobs and tagging them.
        let _shared = images.shared().await;
        let store = images.store().clone();
        let n = name.clone();
        let digest = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(tmp.path())?;
            store
                .import_rootfs_tar(f, &n, ImageConfig::default())
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::invalid_argument(format!("import {name}: {e}")))?;
        tracing::info!(image = %name, "image imported");
        Ok(Response::new(ImportResponse {
            name,
            digest: digest.to_string(),
        }))
    }

    async fn list_images(
        &self,
        _req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let list = self
            .images()?
            .store()
            .list()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ListImagesResponse {
            images: list
                .into_iter()
                .map(|(name, d)| ImageInfo {
                    name,
                    digest: d.to_string(),
                })
                .collect(),
        }))
    }

    async fn inspect_images(
        &self,
        req: Request<InspectImagesRequest>,
    ) -> Result<Response<InspectImagesResponse>, Status> {
        let names = req.into_inner().names;
        if names.is_empty() || names.len() > 1000 {
            return Err(Status::invalid_argument(
                "pass between 1 and 1000 image names",
            ));
        }
        let store = self.images()?.store().clone();
        let images = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|n| crate::images::inspect(&store, n))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(InspectImagesResponse { images }))
    }

    async fn tag_image(
        &self,
        req: Request<TagImageRequest>,
    ) -> Result<Response<TagImageResponse>, Status> {
        let r = req.into_inner();
        let target = normalize_name(&r.target);
        let parsed = swarm_types::registry::ImageRef::parse(&target)
            .map_err(|e| Status::invalid_argument(format!("target: {e}")))?;
        if parsed.is_digest() {
            return Err(Status::invalid_argument(format!(
                "target {:?} names a digest; a tag is NAME[:TAG]",
                r.target
            )));
        }
        let store = self.images()?.store().clone();
        let _g = self.images()?.shared().await;
        let digest = tokio::task::spawn_blocking(move || -> Result<String, Status> {
            let d = store.resolve(&r.source).map_err(|e| {
                Status::not_found(format!("{e}; swarmctl image ls lists this node's images"))
            })?;
            store
                .tag(&target, &d)
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(d.to_string())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(TagImageResponse { digest }))
    }

    async fn node_info(
        &self,
        _req: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        Ok(Response::new(NodeInfoResponse {
            node_id: self.node_id.to_string(),
            role: self.role.as_str().into(),
            managers: self.managers.addrs(),
        }))
    }

    async fn remove_images(
        &self,
        req: Request<RemoveImagesRequest>,
    ) -> Result<Response<RemoveImagesResponse>, Status> {
        let r = self
            .images()?
            .remove(req.into_inner().names)
            .await
            .map_err(status_of)?;
        for (name, _) in &r.untagged {
            tracing::info!(image = %name, "image removed");
        }
        let (untagged, gc) = report(r);
        Ok(Response::new(RemoveImagesResponse { untagged, gc }))
    }

    async fn prune_images(
        &self,
        req: Request<PruneImagesRequest>,
    ) -> Result<Response<PruneImagesResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .images()?
            .prune(req.all, req.build_cache)
            .await
            .map_err(status_of)?;
        let build_cache_entries = r.build_cache as u32;
        let (untagged, gc) = report(r);
        Ok(Response::new(PruneImagesResponse {
            untagged,
            gc,
            build_cache_entries,
        }))
    }
}

/// A temporary file next to the image store (same filesystem), removed when dropped.
fn tempfile_in(dir: &std::path::Path) -> Result<TempFile, Status> {
    let p = dir.join(format!(
        ".import-{}",
        std::process::id() as u64 * 1_000_003 + rand_suffix()
    ));
    let f = std::fs::File::create(&p)
        .map_err(|e| Status::internal(format!("create {}: {e}", p.display())))?;
    Ok(TempFile { path: p, file: f })
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

struct TempFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl TempFile {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Write for TempFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.file.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
