//! The node's image store as the agent manages it: removing images (refused while a container
//! uses one), pruning, and garbage collection of the blobs and unpacked layers that no image
//! and no container uses, run after every container removal.
//!
//! One gate orders these against everything that adds to the store or creates containers:
//! imports and container creation hold it shared (from resolving the image until the
//! container exists and so pins its layers), removal and collection hold it exclusively. A
//! collection therefore never deletes a blob an import has written but not tagged yet, nor a
//! layer a container is about to be created on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use swarm_runtime::image::{normalize_name, Digest, GcStats};
use swarm_runtime::{ContainerInfo, ImageError, ImageStore, Runtime, RuntimeError};

/// Container label holding the manifest digest of the image the container was created from.
pub const IMAGE_DIGEST_LABEL: &str = "swarm.image.digest";

/// Most names one `image rm` takes, and the longest name (inputs have a size).
const MAX_NAMES: usize = 1000;
const MAX_NAME_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("image {name} is used by {users}; remove those tasks first (`swarmctl service rm`, or `service update --image` to another image), then remove the image")]
    InUse { name: String, users: String },
    #[error("no image given: pass NAME[:TAG] ...")]
    NoNames,
    #[error("too many images in one request ({0}; at most {MAX_NAMES})")]
    TooMany(usize),
    #[error("image name too long ({0} characters; at most {MAX_NAME_LEN})")]
    NameTooLong(usize),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("image store operation failed: {0}")]
    Task(String),
}

/// What a removal or prune did: the tags removed and what the collection freed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub untagged: Vec<(String, Digest)>,
    pub gc: GcStats,
    /// Build cache entries forgotten and cache mounts removed (`image prune --build-cache`).
    pub build_cache: usize,
}

pub struct NodeImages {
    store: Arc<ImageStore>,
    runtime: Arc<Runtime>,
    gate: tokio::sync::RwLock<()>,
    /// A collection is queued and has not started yet (further requests join it).
    gc_queued: AtomicBool,
    /// Manifest digest → when a container was last created from it (or, for an image no
    /// container used since this agent started, when the keep policy first saw it).
    last_used: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl NodeImages {
    pub fn new(store: Arc<ImageStore>, runtime: Arc<Runtime>) -> Arc<Self> {
        Arc::new(NodeImages {
            store,
            runtime,
            gate: tokio::sync::RwLock::new(()),
            gc_queued: AtomicBool::new(false),
            last_used: Default::default(),
        })
    }

    /// The container runtime the images serve.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// Held by an import or a container creation for its whole duration.
    pub async fn shared(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Removes the tags `names` (all or none), refusing an image that would lose its last tag
    /// while a container uses it, then collects what nothing uses any more.
    pub async fn remove(&self, names: Vec<String>) -> Result<Removed, ImagesError> {
        if names.is_empty() {
            return Err(ImagesError::NoNames);
        }
        if names.len() > MAX_NAMES {
            return Err(ImagesError::TooMany(names.len()));
        }
        if let Some(n) = names.iter().find(|n| n.len() > MAX_NAME_LEN) {
            return Err(ImagesError::NameTooLong(n.len()));
        }
        let _g = self.gate.write().await;
        let (store, rt) = (self.store.clone(), self.runtime.clone());
        blocking(move || remove_blocking(&store, &rt, &names)).await
    }

    /// Collects unused blobs and layers; with `all`, first removes every image no container
    /// uses (docker's `image prune --all`); with `build_cache`, first forgets the build cache.
    pub async fn prune(&self, all: bool, build_cache: bool) -> Result<Removed, ImagesError> {
        let _g = self.gate.write().await;
        let (store, rt) = (self.store.clone(), self.runtime.clone());
        blocking(move || {
            // Step entries and `RUN --mount=type=cache` directories (those no build uses now).
            let build_cache = if build_cache {
                let mounts = swarm_build::builder::run_extras::clear_cache_mounts(store.root())
                    .map_err(|e| {
                        ImagesError::Task(format!("remove the build's cache mounts: {e}"))
                    })?;
                store.cache_clear()? + mounts
            } else {
                0
            };
            let mut untagged = Vec::new();
            if all {
                let containers = rt.list()?;
                for (name, d) in store.list()? {
                    if users(&store, &rt, &d, &containers).is_empty() {
                        store.untag(&name)?;
                        untagged.push((name, d));
                    }
                }
            }
            Ok(Removed {
                untagged,
                gc: collect(&store, &rt)?,
                build_cache,
            })
        })
        .await
    }

    /// Collects unused blobs and layers now.
    pub async fn collect(&self) -> Result<GcStats, ImagesError> {
        let _g = self.gate.write().await;
        let (store, rt) = (self.store.clone(), self.runtime.clone());
        blocking(move || collect(&store, &rt)).await
    }

    /// Notes that a container was just created from manifest `digest` (the keep policy
    /// counts unused time from here).
    pub fn mark_used(&self, digest: &str) {
        self.last_used
            .lock()
            .expect("last_used lock")
            .insert(digest.to_string(), std::time::Instant::now());
    }

    /// The keep policy (`swarmd --image-keep-unused`): removes the images no container uses
    /// and none was created from for `keep`, then collects their data. Images in use count as
    /// used now; an image first seen by this pass (imported, pulled, or present when the
    /// agent started) starts its unused time now, so nothing goes without a full `keep`.
    pub async fn expire_unused(&self, keep: std::time::Duration) -> Result<Removed, ImagesError> {
        let _g = self.gate.write().await;
        let (store, rt) = (self.store.clone(), self.runtime.clone());
        let now = std::time::Instant::now();
        let mut last_used = self.last_used.lock().expect("last_used lock").clone();
        let (removed, seen) = blocking(move || {
            let containers = rt.list()?;
            let mut untagged = Vec::new();
            let mut seen = std::collections::HashMap::new();
            for (name, d) in store.list()? {
                let used = !users(&store, &rt, &d, &containers).is_empty();
                let since = last_used.entry(d.to_string()).or_insert(now);
                if used {
                    *since = now;
                }
                if !used && now.duration_since(*since) >= keep {
                    store.untag(&name)?;
                    untagged.push((name, d));
                } else {
                    seen.insert(d.to_string(), *since);
                }
            }
            let gc = if untagged.is_empty() {
                GcStats::default()
            } else {
                collect(&store, &rt)?
            };
            Ok((
                Removed {
                    untagged,
                    gc,
                    build_cache: 0,
                },
                seen,
            ))
        })
        .await?;
        // Forget images that are gone; keep marks made meanwhile (newer than this pass).
        let mut m = self.last_used.lock().expect("last_used lock");
        m.retain(|d, at| seen.contains_key(d) || *at > now);
        for (d, at) in seen {
            let e = m.entry(d).or_insert(at);
            *e = (*e).max(at);
        }
        Ok(removed)
    }

    /// Runs the keep policy every `keep / 4` (between 1 s and 1 h) until shutdown; a zero
    /// `keep` disables it.
    pub async fn expire_periodically(
        self: Arc<Self>,
        keep: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if keep.is_zero() {
            return;
        }
        let every = (keep / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
        );
        loop {
            match self.expire_unused(keep).await {
                Ok(r) if !r.untagged.is_empty() => tracing::info!(
                    images = ?r.untagged.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                    bytes = r.gc.bytes_freed,
                    "removed images unused for {keep:?} (--image-keep-unused)"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "image keep policy failed; will retry"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Queues a collection in the background (after a container was removed). Requests made
    /// while one is queued join it, so removing a thousand containers collects a few times,
    /// not a thousand.
    pub fn collect_soon(self: &Arc<Self>) {
        if self.gc_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _g = me.gate.write().await;
            me.gc_queued.store(false, Ordering::SeqCst);
            let (store, rt) = (me.store.clone(), me.runtime.clone());
            match blocking(move || collect(&store, &rt)).await {
                Ok(st) if st != GcStats::default() => tracing::info!(
                    blobs = st.blobs_removed,
                    layers = st.layers_removed,
                    bytes = st.bytes_freed,
                    "removed unused image data"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
            }
        });
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImagesError> + Send + 'static,
) -> Result<T, ImagesError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImagesError::Task(e.to_string()))?
}

/// Blobs and layers no tag and no existing container uses are deleted.
fn collect(store: &ImageStore, rt: &Runtime) -> Result<GcStats, ImagesError> {
    let mut in_use = std::collections::HashSet::new();
    for c in rt.list()? {
        match rt.lower_dirs(&c.id) {
            Ok(l) => in_use.extend(l),
            // Removed since the listing: it uses nothing any more.
            Err(RuntimeError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(store.gc(&in_use)?)
}

/// The containers created from manifest `d`: by their label, or, for containers created
/// before the label existed, by their layers.
fn users<'a>(
    store: &ImageStore,
    rt: &Runtime,
    d: &Digest,
    containers: &'a [ContainerInfo],
) -> Vec<&'a ContainerInfo> {
    let mut layers: Option<Vec<PathBuf>> = None;
    containers
        .iter()
        .filter(|c| match c.labels.get(IMAGE_DIGEST_LABEL) {
            Some(label) => label == d.as_str(),
            None => {
                let l = layers.get_or_insert_with(|| store.layer_dirs(d).unwrap_or_default());
                !l.is_empty() && rt.lower_dirs(&c.id).is_ok_and(|cl| cl == *l)
            }
        })
        .collect()
}

/// "2 containers (task x of service web, ...)", at most five named.
fn describe(users: &[&ContainerInfo]) -> String {
    let mut names: Vec<String> = users
        .iter()
        .take(5)
        .map(|c| {
            match (
                c.labels.get("swarm.task.id"),
                c.labels.get("swarm.service.name"),
            ) {
                (Some(t), Some(s)) => format!("task {t} of service {s}"),
                _ => format!("container {}", c.id),
            }
        })
        .collect();
    if users.len() > 5 {
        names.push(format!("and {} more", users.len() - 5));
    }
    format!(
        "{} container{} ({})",
        users.len(),
        if users.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

fn remove_blocking(
    store: &ImageStore,
    rt: &Runtime,
    names: &[String],
) -> Result<Removed, ImagesError> {
    let tags = store.list()?;
    // The tags to remove: a name, or a manifest digest standing for all of its tags.
    let mut plan: Vec<(String, Digest)> = Vec::new();
    for n in names {
        let found: Vec<(String, Digest)> = match Digest::parse(n) {
            Ok(d) => tags.iter().filter(|(_, td)| *td == d).cloned().collect(),
            Err(_) => {
                let n = normalize_name(n);
                tags.iter().filter(|(t, _)| *t == n).cloned().collect()
            }
        };
        if found.is_empty() {
            return Err(ImageError::ImageNotFound {
                name: normalize_name(n),
            }
            .into());
        }
        for f in found {
            if !plan.contains(&f) {
                plan.push(f);
            }
        }
    }
    let containers = rt.list()?;
    for (name, d) in &plan {
        let keeps_a_tag = tags
            .iter()
            .any(|(t, td)| td == d && !plan.iter().any(|(p, _)| p == t));
        if keeps_a_tag {
            continue;
        }
        let u = users(store, rt, d, &containers);
        if !u.is_empty() {
            return Err(ImagesError::InUse {
                name: name.clone(),
                users: describe(&u),
            });
        }
    }
    for (name, _) in &plan {
        store.untag(name)?;
    }
    Ok(Removed {
        untagged: plan,
        gc: collect(store, rt)?,
        build_cache: 0,
    })
}

/// Docker's `image inspect` document for `name` (a tag or a manifest digest) of `store`:
/// `Id` (the config digest, as Docker shows it), `RepoTags`, `Manifest`, `Created`,
/// `Architecture`, `Os`, `Config`, `RootFS`, `Size` (compressed layer bytes).
pub fn inspect(store: &ImageStore, name: &str) -> Result<String, tonic::Status> {
    let d = store.resolve(name).map_err(|e| {
        tonic::Status::not_found(format!("{e}; swarmctl image ls lists this node's images"))
    })?;
    let internal = |e: ImageError| tonic::Status::internal(e.to_string());
    let manifest = store.manifest(&d).map_err(internal)?;
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&manifest.config.digest).map_err(internal)?)
            .map_err(|e| tonic::Status::internal(format!("image config: {e}")))?;
    let tags: Vec<String> = store
        .list()
        .map_err(internal)?
        .into_iter()
        .filter(|(_, x)| *x == d)
        .map(|(n, _)| n)
        .collect();
    let doc = serde_json::json!({
        "Id": manifest.config.digest.to_string(),
        "RepoTags": tags,
        "Manifest": d.to_string(),
        "Created": config["created"],
        "Architecture": config["architecture"],
        "Os": config["os"],
        "Config": config["config"],
        "RootFS": config["rootfs"],
        "Size": manifest.layers.iter().map(|l| l.size).sum::<u64>(),
        "Layers": manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
    });
    Ok(doc.to_string())
}
