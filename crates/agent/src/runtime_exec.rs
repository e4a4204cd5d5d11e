//! The executor over swarm's native runtime: images from the node's local image store,
//! containers under the node's own state root and cgroup parent. The runtime API is blocking,
//! so every call runs on tokio's blocking pool.

use crate::executor::{truncate_output, BoxFut, ContainerState, ExecError, Executor, Exit};
use crate::images::{NodeImages, IMAGE_DIGEST_LABEL};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use swarm_runtime::image::{normalize_name, ImageHealthcheck};
use swarm_runtime::spec::resolve_process;
use swarm_runtime::{
    ContainerSpec, ContainerStatus, ExecSpec, ImageStore, ProcessOverrides, Resources, RootfsSpec,
    Runtime, RuntimeConfig, RuntimeError,
};
use swarm_types::spec::HealthCheck;
use swarm_types::Task;

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

pub struct RuntimeExecutor {
    runtime: Arc<Runtime>,
    images: Arc<NodeImages>,
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
            runtime,
        })
    }

    /// The node's images (shared with the control socket's image commands).
    pub fn images(&self) -> Arc<NodeImages> {
        self.images.clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, ExecError> {
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || f(&rt))
            .await
            .map_err(|e| ExecError::Failed(format!("runtime call panicked: {e}")))?
            .map_err(|e| match e {
                RuntimeError::NotFound { id } => ExecError::NotFound(id),
                other => ExecError::Failed(other.to_string()),
            })
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
fn container_spec(images: &ImageStore, task: &Task) -> Result<ContainerSpec, ExecError> {
    let c = &task.spec.container;
    let name = normalize_name(&c.image);
    let prepared = images.prepare(&name).map_err(|e| {
        ExecError::Rejected(format!(
            "image {name} is not available on this node: {e}; import it with `swarmctl image import`"
        ))
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
    Ok(spec)
}

impl Executor for RuntimeExecutor {
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            // From resolving the image until the container pins its layers, no image removal
            // or garbage collection runs.
            let _shared = self.images.shared().await;
            let images = self.images.store().clone();
            let t = task.clone();
            let spec = tokio::task::spawn_blocking(move || container_spec(&images, &t))
                .await
                .map_err(|e| ExecError::Failed(e.to_string()))??;
            self.blocking(move |rt| rt.create(spec).map(|_| ()))
                .await
                .map_err(|e| match e {
                    ExecError::Failed(m) => ExecError::Rejected(m),
                    other => other,
                })
        })
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        let id = id.to_string();
        Box::pin(async move { self.blocking(move |rt| rt.start(&id)).await })
    }
    fn wait<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Exit, ExecError>> {
        let id = id.to_string();
        Box::pin(async move {
            self.blocking(move |rt| rt.wait(&id, None))
                .await
                .map(|e| exit_of(&e))
        })
    }
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFut<'a, Result<(), ExecError>> {
        let id = id.to_string();
        Box::pin(async move {
            self.blocking(move |rt| rt.stop(&id, grace).map(|_| ()))
                .await
        })
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        let id = id.to_string();
        Box::pin(async move {
            let res = match self.blocking(move |rt| rt.remove(&id, true)).await {
                Err(ExecError::NotFound(_)) => Ok(()),
                other => other,
            };
            if res.is_ok() {
                // Layers only this container used (an image re-tagged or removed meanwhile)
                // can go now.
                self.images.collect_soon();
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
                    ContainerStatus::Running => ContainerState::Running,
                    ContainerStatus::Stopped => {
                        ContainerState::Exited(info.exit.as_ref().map(exit_of).unwrap_or(Exit {
                            code: 255,
                            oom_killed: false,
                            error: Some("exit status lost".into()),
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
        let id = id.to_string();
        Box::pin(async move {
            let out = self
                .blocking(move |rt| {
                    rt.exec(
                        &id,
                        ExecSpec {
                            args,
                            timeout: Some(timeout),
                            ..Default::default()
                        },
                    )
                })
                .await?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if out.timed_out {
                text = format!("health check exceeded timeout ({timeout:?})");
            }
            Ok((out.code, truncate_output(text)))
        })
    }
    fn image_healthcheck<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Option<HealthCheck>> {
        let name = normalize_name(&task.spec.container.image);
        Box::pin(async move {
            let images = self.images.store().clone();
            tokio::task::spawn_blocking(move || images.config(&name).ok())
                .await
                .ok()
                .flatten()
                .and_then(|c| c.healthcheck.as_ref().map(from_image))
        })
    }
}
