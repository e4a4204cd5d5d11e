//! The controller against the fake executor: phases, health gating, stop and re-adoption.

use super::*;
use crate::executor::FakeExecutor;
use swarm_types::objects::{Meta, TaskStatus};
use swarm_types::spec::HealthCheck;
use swarm_types::ServiceId;
use tokio::sync::mpsc;

const IMAGE: &str = "web:1";

fn hc(interval_ms: u64, retries: u64, start_ms: u64) -> HealthCheck {
    HealthCheck {
        test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_secs(1),
        retries,
        start_period: Duration::from_millis(start_ms),
    }
}

fn task(id: &str, check: Option<HealthCheck>) -> Task {
    let mut spec = swarm_types::spec::TaskSpec::default();
    spec.container.image = IMAGE.into();
    spec.container.healthcheck = check.map(Box::new);
    spec.container.stop_grace_period = Duration::from_millis(100);
    Task {
        id: TaskId::new(id),
        meta: Meta::default(),
        service_id: ServiceId::new("svc"),
        slot: 1,
        node_id: None,
        service_name: "web".into(),
        spec_version: 1,
        spec: spec.into(),
        desired_state: TaskState::Running,
        status: TaskStatus::default(),
        restarts: 0,
        networks: Vec::new(),
    }
}

struct Harness {
    tx: watch::Sender<Option<Task>>,
    statuses: mpsc::UnboundedReceiver<(TaskId, TaskStatus)>,
    seen: Vec<TaskStatus>,
    handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start(fake: &FakeExecutor, t: Task) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = TaskDb::open(dir.path().join("tasks")).unwrap();
        let (reporter, statuses) = Reporter::channel();
        let (tx, rx) = watch::channel(Some(t));
        let handle = tokio::spawn(Controller::run(Arc::new(fake.clone()), rx, reporter, db));
        Harness {
            tx,
            statuses,
            seen: Vec::new(),
            handle,
            _dir: dir,
        }
    }

    /// Waits (up to 5 s) for a status matching `f`; returns it.
    async fn until(&mut self, what: &str, f: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.statuses.recv()).await {
                Ok(Some((_, s))) => {
                    self.seen.push(s.clone());
                    if f(&s) {
                        return s;
                    }
                }
                _ => panic!("timed out waiting for {what}; seen: {:#?}", self.seen),
            }
        }
    }

    fn desire(&self, state: TaskState) {
        self.tx.send_modify(|t| {
            if let Some(t) = t {
                t.desired_state = state;
            }
        });
    }
}

#[tokio::test]
async fn without_healthcheck_task_runs_right_after_start() {
    let fake = FakeExecutor::default();
    let mut h = Harness::start(&fake, task("t1", None));
    let s = h.until("running", |s| s.state == TaskState::Running).await;
    assert_eq!(s.health, "");
    assert!(h.seen.iter().all(|s| s.health.is_empty()));
    assert_eq!(fake.exec_count(), 0);
}

#[tokio::test]
async fn healthcheck_gates_running_until_first_success() {
    let fake = FakeExecutor::default();
    let mut h = Harness::start(&fake, task("t1", Some(hc(30, 3, 0))));
    let s = h
        .until("starting", |s| s.state == TaskState::Starting)
        .await;
    assert_eq!(s.health, "starting");
    let s = h.until("running", |s| s.state == TaskState::Running).await;
    assert_eq!(s.health, "healthy");
    assert!(fake.exec_count() >= 1, "running reported before any probe");
}

#[tokio::test]
async fn failing_check_fails_the_task_and_stops_the_container() {
    let fake = FakeExecutor::default();
    fake.set_image_exec_code(IMAGE, 1);
    let mut h = Harness::start(&fake, task("t1", Some(hc(20, 3, 0))));
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.health, "unhealthy");
    assert!(
        s.err.starts_with("task: unhealthy container: fake exec"),
        "{}",
        s.err
    );
    assert!(h.seen.iter().all(|s| s.state != TaskState::Running));
    assert_eq!(fake.running(), 0);
    assert!(fake.exec_count() >= 3);
}

#[tokio::test]
async fn becoming_unhealthy_later_fails_the_task() {
    let fake = FakeExecutor::default();
    let mut h = Harness::start(&fake, task("t1", Some(hc(20, 2, 0))));
    h.until("running", |s| s.state == TaskState::Running).await;
    fake.set_exec_code("t1", 7);
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.health, "unhealthy");
    assert_eq!(fake.running(), 0);
}

#[tokio::test]
async fn an_unhealthy_task_on_a_network_is_failed_before_it_is_stopped() {
    let fake = FakeExecutor::default();
    let mut t = task("t1", Some(hc(20, 2, 0)));
    t.networks = vec![swarm_types::network::NetworkAttachment {
        network_id: swarm_types::NetworkId::new("n"),
        network_name: "front".into(),
        driver: swarm_types::network::NetworkDriver::Overlay,
        address: "10.0.0.5/24".parse().unwrap(),
        gateway: "10.0.0.1".parse().unwrap(),
        vni: 4097,
        internal: false,
        aliases: vec![],
    }];
    let mut h = Harness::start(&fake, t);
    h.until("running", |s| s.state == TaskState::Running).await;
    fake.set_exec_code("t1", 7);
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(
        (s.state, s.health.as_str()),
        (TaskState::Failed, "unhealthy")
    );
    // Reported while its container still runs (it drains first): every host drops it from
    // DNS and the balancing before it gets its stop signal.
    assert_eq!(fake.running(), 1, "failed before it was stopped");
    assert_eq!(s.exit_code, None);
    tokio::time::sleep(DRAIN + Duration::from_millis(300)).await;
    assert_eq!(fake.running(), 0, "then stopped");
}

#[tokio::test]
async fn failures_during_start_period_do_not_count() {
    let fake = FakeExecutor::default();
    fake.set_exec_code("t1", 1);
    // 1 retry: any counted failure would fail the task at once.
    let mut h = Harness::start(&fake, task("t1", Some(hc(20, 1, 400))));
    h.until("starting", |s| s.state == TaskState::Starting)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(fake.exec_count() >= 2, "probes ran in the start period");
    fake.set_exec_code("t1", 0);
    let s = h.until("running", |s| s.state != TaskState::Starting).await;
    assert_eq!(
        (s.state, s.health.as_str()),
        (TaskState::Running, "healthy")
    );
}

#[tokio::test]
async fn failure_after_start_period_counts() {
    let fake = FakeExecutor::default();
    fake.set_exec_code("t1", 1);
    let mut h = Harness::start(&fake, task("t1", Some(hc(20, 1, 100))));
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(s.state, TaskState::Failed);
}

#[tokio::test]
async fn image_healthcheck_applies_and_none_disables_it() {
    let fake = FakeExecutor::default();
    fake.set_image_healthcheck(IMAGE, hc(20, 1, 0));
    fake.set_image_exec_code(IMAGE, 1);
    let mut h = Harness::start(&fake, task("t1", None));
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(s.health, "unhealthy");

    let none = HealthCheck {
        test: vec!["NONE".into()],
        ..Default::default()
    };
    let mut h = Harness::start(&fake, task("t2", Some(none)));
    let s = h.until("running", |s| s.state == TaskState::Running).await;
    assert_eq!(s.health, "");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fake.running() >= 1);
}

#[tokio::test]
async fn stop_request_ends_health_checking() {
    let fake = FakeExecutor::default();
    let mut h = Harness::start(&fake, task("t1", Some(hc(10, 3, 0))));
    h.until("running", |s| s.state == TaskState::Running).await;
    h.desire(TaskState::Shutdown);
    let s = h.until("shutdown", |s| s.state.is_terminal()).await;
    assert_eq!(s.state, TaskState::Shutdown);
    let n = fake.exec_count();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.exec_count(), n, "probes continued after stop");
    h.tx.send_replace(None);
    tokio::time::timeout(Duration::from_secs(5), h.handle)
        .await
        .expect("controller ends")
        .unwrap();
}

#[tokio::test]
async fn readopted_container_resumes_health_checking() {
    let fake = FakeExecutor::default();
    let mut t = task("t1", Some(hc(20, 2, 0)));
    fake.prepare(&t).await.unwrap();
    fake.start("t1").await.unwrap();
    t.status.state = TaskState::Running;
    t.status.health = "healthy".into();
    let mut h = Harness::start(&fake, t);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(fake.exec_count() >= 1, "no probes after re-adoption");
    assert!(
        h.seen.iter().all(|s| s.state == TaskState::Running),
        "{:?}",
        h.seen
    );
    fake.set_exec_code("t1", 1);
    let s = h.until("failed", |s| s.state.is_terminal()).await;
    assert_eq!(
        (s.state, s.health.as_str()),
        (TaskState::Failed, "unhealthy")
    );
}

#[tokio::test]
async fn agent_shutdown_leaves_container_running_and_stops_probes() {
    let fake = FakeExecutor::default();
    let mut h = Harness::start(&fake, task("t1", Some(hc(10, 3, 0))));
    h.until("running", |s| s.state == TaskState::Running).await;
    drop(h.tx);
    tokio::time::timeout(Duration::from_secs(5), h.handle)
        .await
        .expect("controller ends")
        .unwrap();
    assert_eq!(fake.running(), 1);
}

#[tokio::test]
async fn a_slow_image_pull_reports_its_progress_while_preparing() {
    let fake = FakeExecutor::default();
    let notes: Vec<String> = ["1.0 MB of 3.0 MB", "2.0 MB of 3.0 MB"]
        .iter()
        .map(|p| format!("pulling image: {p}"))
        .collect();
    fake.set_image_pull(IMAGE, notes.clone(), Duration::from_millis(1300));
    let mut h = Harness::start(&fake, task("t1", None));
    for note in &notes {
        h.until(note, |s| {
            s.state == TaskState::Preparing && s.message == *note
        })
        .await;
    }
    h.until("running", |s| s.state == TaskState::Running).await;
    let told: Vec<&str> = h
        .seen
        .iter()
        .filter(|s| s.message.starts_with("pulling"))
        .map(|s| s.message.as_str())
        .collect();
    assert_eq!(told, notes, "each note once, in order");
}
