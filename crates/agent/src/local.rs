//! The node-local API on every node's control socket: image import and listing.

use std::io::Write;
use std::sync::Arc;
use swarm_api::agent::agent_server::Agent;
use swarm_api::agent::{
    ImageInfo, ImportChunk, ImportResponse, ListImagesRequest, ListImagesResponse,
};
use swarm_runtime::image::normalize_name;
use swarm_runtime::{ImageConfig, ImageStore};
use tonic::{Request, Response, Status, Streaming};

pub struct LocalService {
    images: Arc<ImageStore>,
}

impl LocalService {
    pub fn new(images: Arc<ImageStore>) -> Self {
        LocalService { images }
    }
}

#[tonic::async_trait]
impl Agent for LocalService {
    async fn import_image(
        &self,
        req: Request<Streaming<ImportChunk>>,
    ) -> Result<Response<ImportResponse>, Status> {
        let mut stream = req.into_inner();
        let mut name = String::new();
        let mut tmp = tempfile_in(self.images.root())?;
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
        let images = self.images.clone();
        let n = name.clone();
        let digest = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(tmp.path())?;
            images
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
            .images
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
