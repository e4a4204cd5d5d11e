//! What the agent needs from a container engine, and a fake engine for tests and benchmarks.
//! It speaks of containers only: task states and managers belong to the controller.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_types::spec::HealthCheck;
use swarm_types::Task;

/// Health check output kept in statuses (docker keeps 4 KiB too).
pub const MAX_EXEC_OUTPUT: usize = 4096;

/// Truncates `s` to at most `MAX_EXEC_OUTPUT` bytes on a char boundary.
pub fn truncate_output(mut s: String) -> String {
    if s.len() > MAX_EXEC_OUTPUT {
        let mut n = MAX_EXEC_OUTPUT;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

/// The health check that applies to a task: the service's (`["NONE"]` disables it) merged over
/// the image's (docker's rule: an empty test and zero fields inherit from the image), with
/// docker's defaults for what is still unset. `None` = no health check.
pub fn effective_healthcheck(
    task: Option<&HealthCheck>,
    image: Option<&HealthCheck>,
) -> Option<HealthCheck> {
    let mut hc = match (task, image) {
        (None, None) => return None,
        (Some(t), None) => t.clone(),
        (None, Some(i)) => i.clone(),
        (Some(t), Some(i)) => {
            let mut h = t.clone();
            if h.test.is_empty() {
                h.test = i.test.clone();
            }
            if h.interval.is_zero() {
                h.interval = i.interval;
            }
            if h.timeout.is_zero() {
                h.timeout = i.timeout;
            }
            if h.retries == 0 {
                h.retries = i.retries;
            }
            if h.start_period.is_zero() {
                h.start_period = i.start_period;
            }
            h
        }
    };
    if hc.disabled() || hc.test.is_empty() {
        return None;
    }
    let runnable = match hc.test[0].as_str() {
        "CMD" => hc.test.len() > 1,
        "CMD-SHELL" => hc.test.len() > 1,
        _ => false,
    };
    if !runnable {
        return None;
    }
    hc = hc.with_defaults();
    Some(hc)
}

/// The argv a health check test runs: `CMD-SHELL x` → `/bin/sh -c x`, `CMD a b` → `a b`.
pub fn healthcheck_argv(test: &[String]) -> Vec<String> {
    match test.first().map(String::as_str) {
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        Some("CMD") => test[1..].to_vec(),
        _ => Vec::new(),
    }
}

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The task cannot run on this node (bad image, bad spec): the task is rejected.
    #[error("{0}")]
    Rejected(String),
    /// The task cannot run on this node for a reason of the node (registry unreachable from
    /// here, disk, runtime): rejected, and its replacement goes to another node if one can
    /// take it.
    #[error("{0}")]
    RejectedHere(String),
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
    /// While `prepare` runs: how far it got, for the task's status (e.g. "pulling image:
    /// 12 MB of 212 MB"); None when there is nothing to tell.
    fn progress(&self, _task: &Task) -> Option<String> {
        None
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>>;
    /// Resolves when the container has exited.
    fn wait<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Exit, ExecError>>;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFut<'a, Result<(), ExecError>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<(), ExecError>>;
    /// `None` when there is no such container.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFut<'a, Result<Option<ContainerState>, ExecError>>;
    /// Runs `args` inside the running container `id`, killed after `timeout`. Returns the exit
    /// code and the combined stdout+stderr (at most `MAX_EXEC_OUTPUT` bytes).
    fn exec<'a>(
        &'a self,
        id: &'a str,
        args: Vec<String>,
        timeout: Duration,
    ) -> BoxFut<'a, Result<(i32, String), ExecError>>;
    /// The health check declared by the task's image (docker `HEALTHCHECK`), if any.
    fn image_healthcheck<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Option<HealthCheck>>;
    /// Where the container of task `id` logs (Docker's json-file lines), if this engine
    /// keeps logs; the file may not exist (no such container).
    fn log_path(&self, _id: &str) -> Option<PathBuf> {
        None
    }
}

/// An in-memory engine: containers "run" until stopped (or until `exit` is called on them).
/// Health checks: `exec` exits with the code set for the container (`set_exec_code`), else the
/// one set for its image (`set_image_exec_code`), else 0; images may declare a health check
/// (`set_image_healthcheck`).
#[derive(Default, Clone)]
pub struct FakeExecutor {
    inner: Arc<Mutex<HashMap<String, FakeContainer>>>,
    /// Images this fake node "has" (None = every image).
    pub images: Option<Vec<String>>,
    fake_health: Arc<Mutex<FakeHealth>>,
    /// Slow "pulls": image → the progress notes `prepare` goes through, one per step.
    fake_pulls: Arc<Mutex<HashMap<String, FakePull>>>,
    /// Task id → the note of the pull under way.
    pulling: Arc<Mutex<HashMap<String, String>>>,
}

/// A slow fake pull: the progress notes, one per step, and the time of a step.
type FakePull = (Vec<String>, Duration);

#[derive(Default)]
struct FakeHealth {
    by_container: HashMap<String, i32>,
    by_image: HashMap<String, i32>,
    image_checks: HashMap<String, HealthCheck>,
    execs: usize,
}

struct FakeContainer {
    state: ContainerState,
    image: String,
    exited: Arc<tokio::sync::Notify>,
}

impl FakeExecutor {
    /// Exit code of `exec` in container `id` from now on.
    pub fn set_exec_code(&self, id: &str, code: i32) {
        self.fake_health
            .lock()
            .expect("fake lock")
            .by_container
            .insert(id.to_string(), code);
    }
    /// Exit code of `exec` in containers of `image` (unless set per container).
    pub fn set_image_exec_code(&self, image: &str, code: i32) {
        self.fake_health
            .lock()
            .expect("fake lock")
            .by_image
            .insert(image.to_string(), code);
    }
    /// Makes `image` declare a health check (as a docker `HEALTHCHECK` would).
    pub fn set_image_healthcheck(&self, image: &str, hc: HealthCheck) {
        self.fake_health
            .lock()
            .expect("fake lock")
            .image_checks
            .insert(image.to_string(), hc);
    }
    /// Makes `prepare` of tasks of `image` take `steps.len() × step`, reporting each step as
    /// its progress (as a slow image pull would).
    pub fn set_image_pull(&self, image: &str, steps: Vec<String>, step: Duration) {
        self.fake_pulls
            .lock()
            .expect("fake lock")
            .insert(image.to_string(), (steps, step));
    }
    /// How many execs ran so far.
    pub fn exec_count(&self) -> usize {
        self.fake_health.lock().expect("fake lock").execs
    }
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
    fn progress(&self, task: &Task) -> Option<String> {
        self.pulling
            .lock()
            .expect("fake lock")
            .get(task.id.as_str())
            .cloned()
    }

    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let pull = self
                .fake_pulls
                .lock()
                .expect("fake lock")
                .get(&task.spec.container.image)
                .cloned();
            if let Some((steps, step)) = pull {
                for note in steps {
                    self.pulling
                        .lock()
                        .expect("fake lock")
                        .insert(task.id.to_string(), note);
                    tokio::time::sleep(step).await;
                }
                self.pulling
                    .lock()
                    .expect("fake lock")
                    .remove(task.id.as_str());
            }
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
                    image: task.spec.container.image.clone(),
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
            let state = || -> Result<Option<Exit>, ExecError> {
                let m = self.inner.lock().expect("fake lock");
                let c = m.get(id).ok_or_else(|| ExecError::NotFound(id.into()))?;
                Ok(match &c.state {
                    ContainerState::Exited(e) => Some(e.clone()),
                    _ => None,
                })
            };
            loop {
                let notify = {
                    let m = self.inner.lock().expect("fake lock");
                    let c = m.get(id).ok_or_else(|| ExecError::NotFound(id.into()))?;
                    c.exited.clone()
                };
                // Registered before the state is checked, so an exit in between still wakes
                // us (no polling: a fake node may hold thousands of waiting containers).
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(e) = state()? {
                    return Ok(e);
                }
                notified.await;
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
            if let Some(c) = self.inner.lock().expect("fake lock").remove(id) {
                // Waiters find it gone and return NotFound.
                c.exited.notify_waiters();
            }
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
    fn exec<'a>(
        &'a self,
        id: &'a str,
        args: Vec<String>,
        _timeout: Duration,
    ) -> BoxFut<'a, Result<(i32, String), ExecError>> {
        Box::pin(async move {
            let image = {
                let m = self.inner.lock().expect("fake lock");
                let c = m.get(id).ok_or_else(|| ExecError::NotFound(id.into()))?;
                if c.state != ContainerState::Running {
                    return Err(ExecError::Failed(format!("container {id} is not running")));
                }
                c.image.clone()
            };
            let mut h = self.fake_health.lock().expect("fake lock");
            h.execs += 1;
            let code = h
                .by_container
                .get(id)
                .or_else(|| h.by_image.get(&image))
                .copied()
                .unwrap_or(0);
            Ok((code, format!("fake exec {args:?}: exit {code}\n")))
        })
    }
    fn image_healthcheck<'a>(&'a self, task: &'a Task) -> BoxFut<'a, Option<HealthCheck>> {
        Box::pin(async move {
            self.fake_health
                .lock()
                .expect("fake lock")
                .image_checks
                .get(&task.spec.container.image)
                .cloned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(test: &[&str], interval_s: u64, retries: u64) -> HealthCheck {
        HealthCheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_secs(interval_s),
            retries,
            ..Default::default()
        }
    }

    #[test]
    fn effective_healthcheck_merges_task_over_image_with_docker_defaults() {
        assert_eq!(effective_healthcheck(None, None), None);
        let img = check(&["CMD", "/probe"], 5, 0);
        let e = effective_healthcheck(None, Some(&img)).unwrap();
        assert_eq!(e.test, vec!["CMD", "/probe"]);
        assert_eq!(e.interval, Duration::from_secs(5));
        assert_eq!(e.timeout, Duration::from_secs(30));
        assert_eq!(e.retries, 3);
        // The task's test wins; its zero fields inherit the image's.
        let own = check(&["CMD-SHELL", "true"], 0, 7);
        let e = effective_healthcheck(Some(&own), Some(&img)).unwrap();
        assert_eq!(e.test, vec!["CMD-SHELL", "true"]);
        assert_eq!((e.interval, e.retries), (Duration::from_secs(5), 7));
        // Only timings on the task: the image's test runs.
        let timing = check(&[], 2, 0);
        let e = effective_healthcheck(Some(&timing), Some(&img)).unwrap();
        assert_eq!(
            (e.test[1].as_str(), e.interval),
            ("/probe", Duration::from_secs(2))
        );
        // NONE disables, on the task or on the image.
        let none = check(&["NONE"], 0, 0);
        assert_eq!(effective_healthcheck(Some(&none), Some(&img)), None);
        assert_eq!(effective_healthcheck(None, Some(&none)), None);
        assert_eq!(effective_healthcheck(Some(&timing), None), None);
    }

    #[test]
    fn healthcheck_argv_follows_docker() {
        let v = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            healthcheck_argv(&v(&["CMD-SHELL", "curl -f localhost || exit 1"])),
            v(&["/bin/sh", "-c", "curl -f localhost || exit 1"])
        );
        assert_eq!(
            healthcheck_argv(&v(&["CMD", "/bin/true", "x"])),
            v(&["/bin/true", "x"])
        );
        assert!(healthcheck_argv(&v(&["NONE"])).is_empty());
    }

    #[test]
    fn exec_output_is_truncated_on_a_char_boundary() {
        let s = "é".repeat(MAX_EXEC_OUTPUT);
        let t = truncate_output(s);
        assert!(t.len() <= MAX_EXEC_OUTPUT && t.len() >= MAX_EXEC_OUTPUT - 1);
    }
}
