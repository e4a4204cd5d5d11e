//! The executor over swarm's native runtime: images from the node's local image store,
//! containers under the node's own state root and cgroup parent.
//!
//! Nothing here holds a thread for longer than one short runtime call, however many containers
//! run: the runtime API is blocking, so each call runs on tokio's blocking pool, at most
//! [`MAX_RUNTIME_CALLS`] at a time; waiting for a container to exit is its init's pidfd in
//! tokio's reactor (epoll); stop grace periods are timers; health-check execs are child
//! processes reaped by tokio. A host's container count is bounded by memory and file
//! descriptors (one pidfd per running container), not threads.

use crate::executor::{
    truncate_output, BoxFut, ContainerState, ExecError, Executor, Exit, MAX_EXEC_OUTPUT,
};
use crate::images::{NodeImages, IMAGE_DIGEST_LABEL};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use swarm_runtime::image::{normalize_name, ImageHealthcheck};
use swarm_runtime::runtime::KILL_WAIT;
use swarm_runtime::spec::resolve_process;
use swarm_runtime::{
    ContainerSpec, ContainerStatus, ExecSpec, ImageStore, ProcessOverrides, Resources, RootfsSpec,
    Runtime, RuntimeConfig, RuntimeError,
};
use swarm_types::spec::HealthCheck;
use swarm_types::Task;
use tokio::io::{AsyncRead, AsyncReadExt};

/// An image's docker `HEALTHCHECK` as the agent's health check type.
fn from_image(h: &ImageHealthcheck) -> HealthCheck {
    HealthCheck {
        test: h.test.clone(),
        interval: h.interval(),
        timeout: h.timeout(),
        retries: h.retries,
        start_period: h.start_period(),
    }
}

/// Runtime calls (create, start, signal, inspect, ...) in flight at once. Each occupies a
/// blocking-pool thread while it runs; the bound keeps a burst of thousands of task
/// transitions from growing the pool towards its 512 threads (and from thrashing the CPUs
/// with concurrent container setups).
pub const MAX_RUNTIME_CALLS: usize = 16;

pub struct RuntimeExecutor {
    runtime: Arc<Runtime>,
    images: Arc<NodeImages>,
    volumes: Arc<crate::volumes::Volumes>,
    calls: Arc<tokio::sync::Semaphore>,
    /// Pulls images a task needs and the node lacks (None: local images only).
    puller: Option<Arc<crate::pull::Puller>>,
    /// Plumbs task networks between create and start (`network/`); none: no networking.
    net: Option<Arc<crate::network::DataPlane>>,
    /// `swarmd --userns-remap`: every unprivileged task runs in a user namespace with these maps.
    userns: Option<Arc<swarm_runtime::userns::IdMap>>,
    /// Run remapped tasks on chowned copies of their layers (idmapped mounts do not work here).
    userns_copies: bool,
}

impl RuntimeExecutor {
    /// Opens the image store (`<state>/images`) and runtime root (`<state>/containers`).
    pub fn open(state_dir: &Path, cgroup_parent: &str) -> Result<Self, String> {
        let images = ImageStore::open(state_dir.join("images")).map_err(|e| e.to_string())?;
        let runtime = Runtime::new(RuntimeConfig::new(
            state_dir.join("containers"),
            cgroup_parent,
        ))
        .map_err(|e| e.to_string())?;
        let runtime = Arc::new(runtime);
        Ok(RuntimeExecutor {
            images: NodeImages::new(Arc::new(images), runtime.clone()),
            volumes: crate::volumes::Volumes::new(state_dir, runtime.clone()),
            runtime,
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_RUNTIME_CALLS)),
            puller: None,
            net: None,
            userns: None,
            userns_copies: false,
        })
    }

    /// Runs unprivileged tasks with their root mapped to `map`'s host ids (`swarmd
    /// --userns-remap`); new volumes belong to the mapped root. A privileged task stays in the
    /// host's user namespace, which privilege needs (Docker: `--userns=host`). Image layers
    /// are mounted idmapped, or with `copies` run from chowned copies made once per layer.
    pub fn with_userns_remap(mut self, map: swarm_runtime::userns::IdMap, copies: bool) -> Self {
        self.volumes
            .set_owner(map.host_uid(0).unwrap_or(0), map.host_gid(0).unwrap_or(0));
        self.userns = Some(Arc::new(map));
        self.userns_copies = copies;
        self
    }

    /// Pull missing images from registries before creating containers.
    pub fn set_puller(&mut self, puller: Arc<crate::pull::Puller>) {
        self.puller = Some(puller);
    }

    /// Gives task containers their networks through `dp`.
    pub fn with_network(mut self, dp: Arc<crate::network::DataPlane>) -> Self {
        self.net = Some(dp);
        self
    }

    /// The node's images (shared with the control socket's image commands).
    pub fn images(&self) -> Arc<NodeImages> {
        self.images.clone()
    }

    /// The node's volumes (shared with the control socket's volume commands).
    pub fn volumes(&self) -> Arc<crate::volumes::Volumes> {
        self.volumes.clone()
    }

    /// Blocking work (runtime or image store) on the blocking pool, at most
    /// [`MAX_RUNTIME_CALLS`] at a time.
    async fn limited<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ExecError> {
        let _permit = self
            .calls
            .acquire()
            .await
            .map_err(|_| ExecError::Failed("runtime executor closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ExecError::Failed(format!("runtime call panicked: {e}")))
    }

    /// One runtime call (see [`RuntimeExecutor::limited`]).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<Result<T, RuntimeError>, ExecError> {
        let rt = self.runtime.clone();
        self.limited(move || f(&rt)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, ExecError> {
        self.call(f).await?.map_err(exec_error)
    }

    /// Resolves once the container's init has exited (immediately when it is not running):
    /// its pidfd becomes readable then. Errors that say nothing about the container (a full
    /// fd table, a failed /proc read on a loaded host) are retried, never taken for an exit.
    async fn exited(&self, id: &str) -> Result<(), ExecError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let idc = id.to_string();
            let e = match self.call(move |rt| rt.init_pidfd(&idc)).await? {
                Ok(None) => return Ok(()),
                Ok(Some(fd)) => match swarm_runtime::asyncwait::exited(fd).await {
                    Ok(()) => return Ok(()),
                    Err(e) => format!("cannot watch its pidfd: {e}"),
                },
                Err(e @ (RuntimeError::NotFound { .. } | RuntimeError::InvalidState { .. })) => {
                    return Err(exec_error(e))
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(container = id, error = %e, ?backoff, "cannot wait for the container yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// The exit status of a container whose init has exited; transient errors are retried.
    async fn exit_status(&self, id: &str) -> Result<Exit, ExecError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let idc = id.to_string();
            match self.call(move |rt| rt.exit_status(&idc)).await? {
                Ok(st) => return Ok(exit_of(&st)),
                Err(e @ (RuntimeError::NotFound { .. } | RuntimeError::InvalidState { .. })) => {
                    return Err(exec_error(e))
                }
                Err(e) => {
                    tracing::warn!(container = id, error = %e, ?backoff, "cannot read the exit status yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Runs `args` in container `id` as a child process reaped by tokio (no thread), output
    /// capped at [`MAX_EXEC_OUTPUT`] per stream, killed after `timeout`.
    async fn exec_async(
        &self,
        id: String,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, String), ExecError> {
        let spec = ExecSpec {
            args,
            timeout: Some(timeout),
            ..Default::default()
        };
        let cmd = self.blocking(move |rt| rt.exec_command(&id, &spec)).await?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ExecError::Failed(format!("cannot run the exec helper: {e}")))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let (o, e, st) = tokio::join!(read_capped(out), read_capped(err), child.wait());
            (o, e, st)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok((o, e, st)) => {
                use std::os::unix::process::ExitStatusExt;
                let st = st.map_err(|e| ExecError::Failed(format!("exec helper: {e}")))?;
                let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
                let mut text = String::from_utf8_lossy(&o).into_owned();
                text.push_str(&String::from_utf8_lossy(&e));
                Ok((code, truncate_output(text)))
            }
            Err(_) => {
                // Killing the helper kills the command (parent-death signal) with it.
                let _ = child.kill().await;
                Ok((
                    128 + libc::SIGKILL,
                    format!("health check exceeded timeout ({timeout:?})"),
                ))
            }
        }
    }

    /// Pulls the image, creates the container and plumbs `task`'s networks into it.
    async fn prepare_on(&self, task: &Task) -> Result<(), ExecError> {
        // From resolving the image until the container pins its layers, no image removal
        // or garbage collection runs.
        let _shared = self.images.shared().await;
        if let Some(p) = &self.puller {
            let image = &task.spec.container.image;
            let auth = &task.spec.container.registry_auth.clear;
            p.ensure(image, (!auth.is_empty()).then_some(auth.as_str()))
                .await
                .map_err(|e| {
                    let m = format!("pulling image {image} failed: {e}");
                    if crate::pull::is_node_local(&e) {
                        ExecError::RejectedHere(m)
                    } else {
                        ExecError::Rejected(m)
                    }
                })?;
        }
        // Likewise no volume removal between creating a volume and the container using it.
        let _volumes = self.volumes.shared().await;
        let images = self.images.store().clone();
        let volumes = self.volumes.clone();
        let t = task.clone();
        let (userns, copies) = (self.userns.clone(), self.userns_copies);
        let spec = self
            .limited(move || {
                let mut spec = container_spec(&images, &volumes, &t)?;
                if let Some(map) = userns.as_deref().filter(|_| !spec.options.privileged) {
                    if let (true, RootfsSpec::Layers { lower }) = (copies, &mut spec.rootfs) {
                        *lower = images.remapped_layers(lower, map).map_err(|e| {
                            ExecError::RejectedHere(format!(
                                "cannot make the image's layers for --userns-remap: {e}"
                            ))
                        })?;
                        spec.layers_remapped = true;
                    }
                    spec.user_namespace = Some(map.clone());
                }
                Ok::<_, ExecError>(spec)
            })
            .await??;
        if let Some(d) = spec.labels.get(IMAGE_DIGEST_LABEL) {
            self.images.mark_used(d);
        }
        let info = self
            .blocking(move |rt| rt.create(spec))
            .await
            .map_err(|e| match e {
                // The runtime of this node could not create it.
                ExecError::Failed(m) => ExecError::RejectedHere(m),
                other => other,
            })?;
        if let (Some(dp), false) = (&self.net, task.networks.is_empty()) {
            // Between create and start: the container's namespace exists, its program
            // has not run yet.
            let (dp, t, pid) = (dp.clone(), task.clone(), info.pid);
            let t0 = std::time::Instant::now();
            let (res, work) = self
                .limited(move || {
                    let t1 = std::time::Instant::now();
                    let r = dp.attach(&t, pid);
                    (r, t1.elapsed())
                })
                .await?;
            // elapsed: what the task start waited; work: the setup itself (without the
            // wait for a free runtime slot).
            tracing::debug!(task = %task.id, elapsed = ?t0.elapsed(), work = ?work, "network setup");
            if let Err(e) = res {
                let id = info.id.clone();
                let _ = self.call(move |rt| rt.remove(&id, true)).await;
                return Err(ExecError::Failed(format!("network setup failed: {e}")));
            }
        }
        Ok(())
    }
}

fn exec_error(e: RuntimeError) -> ExecError {
    match e {
        RuntimeError::NotFound { id } => ExecError::NotFound(id),
        other => ExecError::Failed(other.to_string()),
    }
}

/// Reads a stream to its end, keeping the first [`MAX_EXEC_OUTPUT`] bytes (the rest is read
/// and dropped, so the writer never blocks on a full pipe).
async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn exit_of(e: &swarm_runtime::ExitStatus) -> Exit {
    Exit {
        code: e.code,
        oom_killed: e.oom_killed,
        error: e.error.clone(),
    }
}

/// Builds the runtime spec of a task from its image and the task's overrides.
fn container_spec(
    images: &ImageStore,
    volumes: &crate::volumes::Volumes,
    task: &Task,
) -> Result<ContainerSpec, ExecError> {
    let c = &task.spec.container;
    let name = normalize_name(&c.image);
    let prepared = images.prepare(&name).map_err(|e| {
        ExecError::Rejected(match e {
            swarm_runtime::ImageError::ImageNotFound { .. } => format!(
                "image {name} is not on this node: push it to a registry the nodes pull from (swarmctl image push), or import it on the node (swarmctl image import)"
            ),
            e => format!("image {name} cannot be used on this node: {e}"),
        })
    })?;
    let overrides = ProcessOverrides {
        entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
        cmd: (!c.args.is_empty()).then(|| c.args.clone()),
        env: c.env.clone(),
        workdir: (!c.workdir.is_empty()).then(|| c.workdir.clone()),
        user: (!c.user.is_empty()).then(|| c.user.clone()),
    };
    let process = resolve_process(&prepared.config, &overrides)
        .map_err(|e| ExecError::Rejected(format!("invalid task for image {name}: {e}")))?;
    let mut spec = ContainerSpec::new(
        task.id.to_string(),
        RootfsSpec::Layers {
            lower: prepared.layers.clone(),
        },
        process,
    );
    spec.hostname = Some(if c.hostname.is_empty() {
        task.id.short().to_string()
    } else {
        c.hostname.clone()
    });
    let lim = &task.spec.resources.limits;
    let mut res = Resources::default();
    if lim.nano_cpus > 0 {
        res = res.with_cpus(lim.nano_cpus as f64 / 1e9);
    }
    if lim.memory_bytes > 0 {
        res.memory_bytes = Some(lim.memory_bytes as u64);
    }
    spec.resources = res;
    spec.labels = c.labels.clone();
    spec.labels
        .insert("swarm.task.id".into(), task.id.to_string());
    spec.labels
        .insert("swarm.service.id".into(), task.service_id.to_string());
    spec.labels
        .insert("swarm.service.name".into(), task.service_name.clone());
    // What `image rm` checks before removing an image.
    spec.labels.insert(
        IMAGE_DIGEST_LABEL.into(),
        prepared.manifest_digest.to_string(),
    );
    crate::container_config::apply(&mut spec, task, volumes)?;
    Ok(spec)
}

impl Executor for RuntimeExecutor {
    fn progress(&self, task: &Task) -> Option<String> {
        self.puller.as_ref()?.progress(&task.spec.container.image)
    }

    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let Some(dp) = self
                .net
                .clone()
                .filter(|_| task.networks.is_empty() && !task.spec.network_none)
            else {
                return self.prepare_on(task).await;
            };
            // A task without networks: an address on the node's default bridge, held until
            // the container goes (or this prepare fails).
            let (d, id) = (dp.clone(), task.id.to_string());
            let att = self
                .limited(move || d.default_attachment(&id))
                .await?
                .map_err(|e| ExecError::RejectedHere(format!("default bridge: {e}")))?;
            let mut t = task.clone();
            t.networks.extend(att);
            let res = self.prepare_on(&t).await;
            if res.is_err() {
                let id = task.id.to_string();
                let _ = self.limited(move || dp.forget(&id)).await;
            }
            res
        })
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        let id = id.to_string();
        Box::pin(async move { self.blocking(move |rt| rt.start(&id)).await })
    }
    fn wait<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Exit, ExecError>> {
        Box::pin(async move {
            self.exited(id).await?;
            if let Some(dp) = &self.net {
                let (dp, idc) = (dp.clone(), id.to_string());
                let _ = self.limited(move || dp.forget(&idc)).await;
            }
            self.exit_status(id).await
        })
    }
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            // The stop signal (SIGTERM unless the task says otherwise) to the init (which
            // forwards it); a stopped container refuses it, and
            // then the wait below returns at once.
            let idc = id.to_string();
            let sig = self
                .call(move |rt| rt.inspect(&idc))
                .await?
                .ok()
                .and_then(|i| {
                    i.labels
                        .get(crate::container_config::STOP_SIGNAL_LABEL)
                        .and_then(|s| s.parse::<i32>().ok())
                })
                .unwrap_or(libc::SIGTERM);
            let idc = id.to_string();
            let _ = self.call(move |rt| rt.signal(&idc, sig)).await?;
            if let Ok(r) = tokio::time::timeout(grace, self.exited(id)).await {
                return r;
            }
            let idc = id.to_string();
            let _ = self.call(move |rt| rt.signal(&idc, libc::SIGKILL)).await?;
            if let Ok(r) = tokio::time::timeout(KILL_WAIT, self.exited(id)).await {
                return r;
            }
            tracing::warn!(
                container = id,
                "container init still running {KILL_WAIT:?} after its processes were killed; killing the init (its exit status is lost)"
            );
            let idc = id.to_string();
            self.blocking(move |rt| rt.kill_init(&idc)).await?;
            tokio::time::timeout(KILL_WAIT, self.exited(id))
                .await
                .map_err(|_| {
                    ExecError::Failed(format!("container {id} did not exit after SIGKILL"))
                })?
        })
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        let id = id.to_string();
        let idc = id.clone();
        Box::pin(async move {
            let res = match self.blocking(move |rt| rt.remove(&id, true)).await {
                Err(ExecError::NotFound(_)) => Ok(()),
                other => other,
            };
            if let (true, Some(dp)) = (res.is_ok(), &self.net) {
                let dp = dp.clone();
                let _ = self.limited(move || dp.forget(&idc)).await;
            }
            if res.is_ok() {
                // Layers only this container used (an image re-tagged or removed meanwhile)
                // can go now.
                self.images.collect_soon();
                if let Some(dp) = &self.net {
                    // Its veths went with its namespace; a bridge nobody uses goes now. The
                    // kernel removes a dead namespace's veths in the background, so a bridge
                    // can still have this container's port here: look again a little later
                    // (under load the t80 cleanup check saw bridges outlive their last task).
                    let (now, later) = (dp.clone(), dp.clone());
                    if let Ok(Err(e)) = self.limited(move || now.collect()).await {
                        tracing::warn!(error = %e, "network cleanup failed");
                    }
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        if let Ok(Err(e)) =
                            tokio::task::spawn_blocking(move || later.collect()).await
                        {
                            tracing::warn!(error = %e, "network cleanup failed");
                        }
                    });
                }
            }
            res
        })
    }
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Option<ContainerState>, ExecError>> {
        let id = id.to_string();
        Box::pin(async move {
            match self.blocking(move |rt| rt.inspect(&id)).await {
                Ok(info) => Ok(Some(match info.status {
                    ContainerStatus::Created => ContainerState::Created,
                    // Paused by hand with swarm-runtime: still running as far as the task goes.
                    ContainerStatus::Running | ContainerStatus::Paused => {
                        if let Some(dp) = &self.net {
                            // A container found at start: its service-address rules follow
                            // the views from now on.
                            let (dp, id, pid) = (dp.clone(), info.id.clone(), info.pid);
                            let _ = self.limited(move || dp.adopt(&id, pid)).await;
                        }
                        ContainerState::Running
                    }
                    ContainerStatus::Stopped => {
                        // Stopped without an exit record: no init was ever reported (the
                        // create did not finish); an init that ended has a record.
                        ContainerState::Exited(info.exit.as_ref().map(exit_of).unwrap_or(Exit {
                            code: 255,
                            oom_killed: false,
                            error: Some("container never ran: its create did not finish".into()),
                        }))
                    }
                })),
                Err(ExecError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }
    fn exec<'a>(
        &'a self,
        id: &'a str,
        args: Vec<String>,
        timeout: Duration,
    ) -> BoxFut<'a, Result<(i32, String), ExecError>> {
        Box::pin(self.exec_async(id.to_string(), args, timeout))
    }
    fn log_path(&self, id: &str) -> Option<std::path::PathBuf> {
        self.runtime.log_path(id).ok()
    }
    fn image_healthcheck<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Option<HealthCheck>> {
        let name = normalize_name(&task.spec.container.image);
        Box::pin(async move {
            let images = self.images.store().clone();
            self.limited(move || images.config(&name).ok())
                .await
                .ok()
                .flatten()
                .and_then(|c| c.healthcheck.as_ref().map(from_image))
        })
    }
}
