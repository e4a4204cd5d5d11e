//! What the agent needs from a container engine, and a fake engine for tests and benchmarks.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_types::Task;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The task cannot run on this node (bad image, bad spec): the task is rejected.
    #[error("{0}")]
    Rejected(String),
    /// Something failed while running it.
    #[error("{0}")]
    Failed(String),
    #[error("container {0} not found")]
    NotFound(String),
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub oom_killed: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited(Exit),
}

/// A container engine. The container of a task is named after the task id, so the agent can
/// find it again after a restart.
pub trait Executor: Send + Sync + 'static {
    /// Creates the task's container (image resolved locally); not started.
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Result<(), ExecError>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>>;
    /// Resolves when the container has exited.
    fn wait<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Exit, ExecError>>;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFut<'a, Result<(), ExecError>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>>;
    /// `None` when there is no such container.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Option<ContainerState>, ExecError>>;
}

/// An in-memory engine: containers "run" until stopped (or until `exit` is called on them).
#[derive(Default, Clone)]
pub struct FakeExecutor {
    inner: Arc<Mutex<HashMap<String, FakeContainer>>>,
    /// Images this fake node "has" (None = every image).
    pub images: Option<Vec<String>>,
}

struct FakeContainer {
    state: ContainerState,
    exited: Arc<tokio::sync::Notify>,
}

impl FakeExecutor {
    /// Makes a running fake container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        let mut m = self.inner.lock().expect("fake lock");
        if let Some(c) = m.get_mut(id) {
            c.state = ContainerState::Exited(Exit {
                code,
                oom_killed: false,
                error: None,
            });
            c.exited.notify_waiters();
            c.exited.notify_one();
        }
    }
    pub fn running(&self) -> usize {
        self.inner
            .lock()
            .expect("fake lock")
            .values()
            .filter(|c| c.state == ContainerState::Running)
            .count()
    }
}

impl Executor for FakeExecutor {
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            if let Some(imgs) = &self.images {
                if !imgs.contains(&task.spec.container.image) {
                    return Err(ExecError::Rejected(format!(
                        "image {} not found on this node",
                        task.spec.container.image
                    )));
                }
            }
            self.inner.lock().expect("fake lock").insert(
                task.id.to_string(),
                FakeContainer {
                    state: ContainerState::Created,
                    exited: Arc::new(tokio::sync::Notify::new()),
                },
            );
            Ok(())
        })
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let mut m = self.inner.lock().expect("fake lock");
            let c = m
                .get_mut(id)
                .ok_or_else(|| ExecError::NotFound(id.into()))?;
            c.state = ContainerState::Running;
            Ok(())
        })
    }
    fn wait<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Exit, ExecError>> {
        Box::pin(async move {
            loop {
                let notify = {
                    let m = self.inner.lock().expect("fake lock");
                    let c = m.get(id).ok_or_else(|| ExecError::NotFound(id.into()))?;
                    if let ContainerState::Exited(e) = &c.state {
                        return Ok(e.clone());
                    }
                    c.exited.clone()
                };
                let _ = tokio::time::timeout(Duration::from_millis(200), notify.notified()).await;
            }
        })
    }
    fn stop<'a>(&'a self, id: &'a str, _grace: Duration) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let code = 143;
            self.exit(id, code);
            Ok(())
        })
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.inner.lock().expect("fake lock").remove(id);
            Ok(())
        })
    }
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Option<ContainerState>, ExecError>> {
        Box::pin(async move {
            Ok(self
                .inner
                .lock()
                .expect("fake lock")
                .get(id)
                .map(|c| c.state.clone()))
        })
    }
}
