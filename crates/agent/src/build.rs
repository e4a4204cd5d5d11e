//! `swarmctl image build` on this node: the context tar from the CLI is unpacked into a
//! scratch directory and built by `swarm_build::builder` with a runtime of its own (build
//! containers live under `<state>/build/containers` with cgroup parent `swarm-<node>-build`,
//! apart from task containers, so the agent never mistakes one for a task's); progress
//! streams back as it happens.

use crate::images::NodeImages;
use crate::network::DataPlane;
use crate::pull::Puller;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use swarm_api::agent::{BuildChunk, BuildEvent, BuildOptions};
use swarm_build::builder::RunNetwork;
use swarm_build::builder::{Builder, Event, Fetch, Request};
use swarm_runtime::{Runtime, RuntimeConfig};
use swarm_types::network::NetworkAttachment;
use tonic::{Status, Streaming};

/// The node's builder: a runtime for build containers, created on first use.
pub struct Builds {
    images: Arc<NodeImages>,
    /// Pulls the images a build starts from when the node lacks them (None: only local
    /// images can be used).
    puller: Option<Arc<Puller>>,
    /// RUN containers join the node's default bridge through it (None: loopback only).
    network: Option<Arc<BuildNetwork>>,
    dir: PathBuf,
    cgroup_parent: String,
    runtime: Mutex<Option<Arc<Runtime>>>,
}

impl Builds {
    pub fn new(
        images: Arc<NodeImages>,
        node_short: &str,
        puller: Option<Arc<Puller>>,
        net: Option<Arc<DataPlane>>,
    ) -> Builds {
        let dir = images
            .store()
            .root()
            .parent()
            .unwrap_or(Path::new("/"))
            .join("build");
        Builds {
            images,
            puller,
            network: net.map(|dp| {
                Arc::new(BuildNetwork {
                    dp,
                    held: Mutex::new(HashMap::new()),
                })
            }),
            dir,
            cgroup_parent: format!("swarm-{node_short}-build"),
            runtime: Mutex::new(None),
        }
    }

    fn runtime(&self) -> Result<Arc<Runtime>, Status> {
        let mut rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rt.as_ref() {
            return Ok(r.clone());
        }
        let cfg = RuntimeConfig::new(self.dir.join("containers"), self.cgroup_parent.clone());
        let r = Arc::new(Runtime::new(cfg).map_err(|e| {
            Status::failed_precondition(format!("this node cannot run build containers: {e}"))
        })?);
        // Containers and `COPY --from` views of a build interrupted by a restart.
        for c in r.list().unwrap_or_default() {
            let _ = r.remove(&c.id, true);
        }
        swarm_build::builder::RootView::clean_stale(&self.dir);
        // Contexts and layer files of builds a crash or kill interrupted.
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("ctx-") {
                    let _ = std::fs::remove_dir_all(e.path());
                } else if n.ends_with(".tar") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        *rt = Some(r.clone());
        Ok(r)
    }

    /// Receives the context, then builds it; events go to `tx` as they happen.
    pub async fn run(
        self: Arc<Self>,
        mut stream: Streaming<BuildChunk>,
        tx: tokio::sync::mpsc::Sender<Result<BuildEvent, Status>>,
    ) -> Result<(), Status> {
        let runtime = self.runtime()?;
        let scratch = tempfile::Builder::new()
            .prefix("ctx-")
            .tempdir_in(&self.dir)
            .map_err(internal)?;
        let tar = scratch.path().join("context.tar");
        let mut opts: Option<BuildOptions> = None;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tar).map_err(internal)?;
            let mut received: u64 = 0;
            while let Some(chunk) = stream.message().await? {
                if opts.is_none() {
                    opts = chunk.options;
                }
                received += chunk.data.len() as u64;
                if received > swarm_build::MAX_CONTEXT_BYTES {
                    return Err(Status::resource_exhausted(format!(
                        "the build context is larger than {} bytes, the most a node accepts: leave out what the build does not need with a .dockerignore",
                        swarm_build::MAX_CONTEXT_BYTES
                    )));
                }
                f.write_all(&chunk.data).map_err(internal)?;
            }
        }
        let opts = opts.ok_or_else(|| Status::invalid_argument("build options missing"))?;
        let context = scratch.path().join("context");
        let req = request(&context, &opts)?;
        let req = {
            let (tar, context) = (tar.clone(), context.clone());
            tokio::task::spawn_blocking(move || {
                unpack_context(&tar, &context)?;
                read_dockerfile(req)
            })
            .await
            .map_err(|e| Status::internal(format!("unpacking the context panicked: {e}")))??
        };
        let images = self.images.clone();
        // No image garbage collection while a build pulls, commits and tags.
        let _shared = self.images.shared().await;
        self.pull_bases(&req, opts.pull, &tx).await?;
        let req = self.cache_sources(req, &tx).await;
        let dir = self.dir.clone();
        let network = self.network.clone();
        let fetch = self.puller.as_ref().map(|p| HttpFetch {
            client: p.http_client(),
            handle: tokio::runtime::Handle::current(),
        });
        let (etx, erx) = std::sync::mpsc::channel::<BuildEvent>();
        let forward = {
            let tx = tx.clone();
            tokio::task::spawn_blocking(move || {
                while let Ok(e) = erx.recv() {
                    if tx.blocking_send(Ok(e)).is_err() {
                        break;
                    }
                }
            })
        };
        let result = tokio::task::spawn_blocking(move || -> Result<String, Status> {
            let b = Builder {
                network: network.as_deref().map(|n| n as &dyn RunNetwork),
                fetch: fetch.as_ref().map(|f| f as &dyn Fetch),
                rt: &runtime,
                store: images.store(),
                dir,
            };
            let d = b
                .build(&req, &mut |e| {
                    let _ = etx.send(event(e));
                })
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            Ok(d.to_string())
        })
        .await
        .map_err(|e| Status::internal(format!("build panicked: {e}")))?;
        let _ = forward.await;
        drop(scratch);
        match result {
            Ok(d) => {
                tracing::info!(image = %d, tags = ?opts.tags, "image built");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Builds {
    /// Keeps the `--cache-from` images that are on this node or can be pulled; the others
    /// are reported and left out (as Docker does: a missing cache source only costs time).
    async fn cache_sources(
        &self,
        mut req: Request,
        tx: &tokio::sync::mpsc::Sender<Result<BuildEvent, Status>>,
    ) -> Request {
        let mut kept = Vec::new();
        for name in std::mem::take(&mut req.cache_from) {
            let n = swarm_runtime::image::normalize_name(&name);
            let got = match &self.puller {
                Some(p) => p.ensure(&n, None).await,
                None if self.images.store().resolve(&n).is_ok() => Ok(()),
                None => Err("not on this node".to_string()),
            };
            match got {
                Ok(()) => kept.push(n),
                Err(e) => {
                    let _ = tx
                        .send(Ok(BuildEvent {
                            output: format!("--cache-from {n}: not used ({e})\n"),
                            ..Default::default()
                        }))
                        .await;
                }
            }
        }
        req.cache_from = kept;
        req
    }

    /// Pulls the images the build starts from (FROM and `COPY --from` of an image) that this
    /// node lacks, or all of them with `--pull`, through the node's registry client.
    async fn pull_bases(
        &self,
        req: &Request,
        always: bool,
        tx: &tokio::sync::mpsc::Sender<Result<BuildEvent, Status>>,
    ) -> Result<(), Status> {
        // A Dockerfile that does not parse is reported by the build itself, with its line.
        let Ok(images) = swarm_build::builder::base_images(req) else {
            return Ok(());
        };
        for name in images {
            let name = swarm_runtime::image::normalize_name(&name);
            let present = self.images.store().resolve(&name).is_ok();
            if present && !always {
                continue;
            }
            let Some(p) = &self.puller else {
                if present {
                    continue;
                }
                return Err(Status::failed_precondition(format!(
                    "image {name} is not on this node and this node has no registry client: import it (swarmctl image import)"
                )));
            };
            let _ = tx
                .send(Ok(BuildEvent {
                    output: format!("Pulling {name}\n"),
                    ..Default::default()
                }))
                .await;
            let d = p
                .pull_now(&name)
                .await
                .map_err(|e| Status::failed_precondition(format!("pull {name}: {e}")))?;
            tracing::info!(image = %name, digest = %d, "image pulled for a build");
        }
        Ok(())
    }
}

/// RUN containers on the node's default bridge, like tasks started without `--network`: an
/// address held from `reserve` to `release`, the node's DNS server as their resolver.
/// `ADD https://...` on the node: the puller's client for public servers, driven from the
/// builder's threads on the agent's runtime.
struct HttpFetch {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl Fetch for HttpFetch {
    fn fetch(&self, url: &str, dest: &std::path::Path, limit: u64) -> Result<Option<u64>, String> {
        use std::io::Write;
        self.handle.block_on(async {
            let mut resp = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| format!("{url}: {}", swarm_api::error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(format!("{url}: the server answered {}", resp.status()));
            }
            let modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let mut f =
                std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
            let mut n: u64 = 0;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| format!("{url}: {}", swarm_api::error_chain(&e)))?
            {
                n += chunk.len() as u64;
                if n > limit {
                    return Err(format!(
                        "{url}: larger than {limit} bytes, the most ADD downloads"
                    ));
                }
                f.write_all(&chunk)
                    .map_err(|e| format!("{}: {e}", dest.display()))?;
            }
            Ok(modified)
        })
    }
}

pub struct BuildNetwork {
    dp: Arc<DataPlane>,
    held: Mutex<HashMap<String, NetworkAttachment>>,
}

impl RunNetwork for BuildNetwork {
    fn reserve(&self, id: &str) -> Result<String, String> {
        let att = self
            .dp
            .default_attachment(id)
            .map_err(|e| format!("the default bridge: {e}"))?
            .ok_or("this node gives no default bridge")?;
        let conf = crate::container_config::resolv_conf_via(Some(att.gateway));
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), att);
        Ok(conf)
    }

    fn attach(&self, id: &str, pid: i32) -> Result<(), String> {
        let att = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or("no address was reserved")?;
        self.dp
            .attach_networks(id, &[att], pid)
            .map_err(|e| e.to_string())
    }

    fn release(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.dp.forget(id);
    }
}

fn event(e: Event) -> BuildEvent {
    match e {
        Event::Step { n, total, text } => BuildEvent {
            step: format!("Step {n}/{total} : {text}"),
            ..Default::default()
        },
        Event::Cached => BuildEvent {
            cached: true,
            ..Default::default()
        },
        Event::Output(o) => BuildEvent {
            output: o,
            ..Default::default()
        },
        Event::Done { digest } => BuildEvent {
            digest,
            ..Default::default()
        },
    }
}

fn request(context: &Path, o: &BuildOptions) -> Result<Request, Status> {
    let file = if o.dockerfile.is_empty() {
        "Dockerfile".to_string()
    } else {
        o.dockerfile.clone()
    };
    if file.starts_with('/') || file.split('/').any(|c| c == "..") {
        return Err(Status::invalid_argument(format!(
            "the Dockerfile {file} must be inside the build context (a relative path without ..)"
        )));
    }
    // Every tag must be a valid reference before anything runs (not after a long build).
    for t in &o.tags {
        let n = swarm_runtime::image::normalize_name(t);
        if let Err(e) = swarm_types::registry::ImageRef::parse(&n).and_then(|r| {
            if r.is_digest() {
                Err("a tag, not a digest".to_string())
            } else {
                Ok(())
            }
        }) {
            return Err(Status::invalid_argument(format!(
                "-t {t}: not a valid image name ({e}): expected [REGISTRY/]NAME[:TAG], lower case"
            )));
        }
    }
    for (id, v) in &o.secrets {
        if id.is_empty() || id.len() > 255 || id.contains('/') {
            return Err(Status::invalid_argument(format!(
                "--secret id={id:?}: an id is 1 to 255 characters without '/'"
            )));
        }
        if v.len() > swarm_build::builder::MAX_SECRET_BYTES {
            return Err(Status::invalid_argument(format!(
                "--secret id={id}: {} bytes, more than a build secret may hold ({})",
                v.len(),
                swarm_build::builder::MAX_SECRET_BYTES
            )));
        }
    }
    let network_none = match o.network.as_str() {
        "" | "default" | "bridge" => false,
        "none" => true,
        "host" => {
            return Err(Status::invalid_argument(
                "--network host: build steps run with the isolation of services; use default or none",
            ))
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "--network {other}: a build's RUN steps use the node's default bridge (default) or none"
            )))
        }
    };
    Ok(Request {
        context: context.to_path_buf(),
        dockerfile: String::new(),
        dockerfile_name: file,
        build_args: o.build_args.clone().into_iter().collect(),
        target: (!o.target.is_empty()).then(|| o.target.clone()),
        tags: o.tags.clone(),
        no_cache: o.no_cache,
        cache_from: o.cache_from.clone(),
        labels: o.labels.clone().into_iter().collect(),
        secrets: swarm_build::builder::Secrets(o.secrets.clone().into_iter().collect()),
        network_none,
    })
}

/// The Dockerfile's text, read from the unpacked context.
fn read_dockerfile(mut req: Request) -> Result<Request, Status> {
    let p = req.context.join(&req.dockerfile_name);
    req.dockerfile = std::fs::read_to_string(&p).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot read {} from the build context: {e}",
            req.dockerfile_name
        ))
    })?;
    Ok(req)
}

/// Unpacks the context tar (no absolute paths, no `..`, nothing through a symlink: the tar
/// crate refuses those); owners are not kept (COPY sets them).
fn unpack_context(tar: &Path, dest: &Path) -> Result<(), Status> {
    std::fs::create_dir_all(dest).map_err(internal)?;
    let f = std::fs::File::open(tar).map_err(internal)?;
    let mut a = tar::Archive::new(f);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(false);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    a.unpack(dest)
        .map_err(|e| Status::invalid_argument(format!("the build context is not a valid tar: {e}")))
}

fn internal(e: std::io::Error) -> Status {
    Status::internal(e.to_string())
}
