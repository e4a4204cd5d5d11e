//! Snapshots (insta) of what `service ls`, `service ps` and convergence print, rendered into
//! memory: the tables with their widths, the templates, and the error and rollback cases.

use super::converge::{snapshot, Operation};
use super::ListOutput;
use std::collections::HashMap;
use swarm_types::ids::{NodeId, ServiceId, TaskId};
use swarm_types::objects::{Meta, ServiceStatus, TaskStatus, UpdateState, UpdateStatus};
use swarm_types::spec::{ContainerSpec, ServiceMode, ServiceSpec, TaskSpec};
use swarm_types::task::TaskState;
use swarm_types::{Service, Task};

const HOUR_MS: u64 = 3_600_000;

/// A replicated service for the CLI's tests (also used by `converge` and `pretty` tests).
pub(crate) fn service(id: &str, name: &str, image: &str, replicas: u64, running: u64) -> Service {
    Service {
        id: ServiceId::new(id),
        meta: Default::default(),
        spec: ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            task: TaskSpec {
                container: ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        },
        previous_spec: None,
        update_status: None,
        spec_history: Vec::new(),
        endpoint: Default::default(),
        spec_version: 1,
        status: Some(Box::new(ServiceStatus {
            running_tasks: running,
            desired_tasks: replicas,
            completed_tasks: 0,
        })),
    }
}

/// A task whose state changed three hours ago (stable relative times in the snapshots).
fn task(svc: &Service, id: &str, slot: u64, node: &str, state: TaskState, err: &str) -> Task {
    let then = swarm_api::now_ms() - 3 * HOUR_MS;
    Task {
        id: TaskId::new(id),
        meta: Meta {
            created_at: then,
            ..Default::default()
        },
        service_id: svc.id.clone(),
        slot,
        node_id: Some(NodeId::new(node)),
        service_name: svc.spec.name.clone(),
        spec_version: 1,
        spec: svc.spec.task.clone().into(),
        desired_state: if state.is_terminal() {
            TaskState::Shutdown
        } else {
            TaskState::Running
        },
        status: TaskStatus {
            state,
            timestamp: then,
            err: err.into(),
            ..Default::default()
        },
        restarts: 0,
        networks: Vec::new(),
    }
}

fn out(format: &str, filters: &[&str], no_trunc: bool) -> ListOutput {
    ListOutput {
        quiet: false,
        filters: filters.iter().map(|s| s.to_string()).collect(),
        no_trunc,
        format: format.parse().unwrap(),
    }
}

fn services() -> Vec<Service> {
    let mut rolling = service(
        "r0llingservice0000000000",
        "api",
        "registry:4243/api:2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        5,
        3,
    );
    rolling.update_status = Some(Box::new(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: 1,
        completed_at: 0,
        message: "update rolled back: task api.2 failed".into(),
    }));
    rolling.spec.labels.insert("tier".into(), "back".into());
    let mut web = service("webservice00000000000000", "web", "busybox:latest", 3, 3);
    use swarm_types::endpoint::{PortConfig, Protocol, PublishMode};
    web.endpoint.ports = vec![
        PortConfig {
            published: 8080,
            target: 80,
            ..Default::default()
        },
        PortConfig {
            published: 5353,
            target: 53,
            protocol: Protocol::Udp,
            mode: PublishMode::Host,
            ..Default::default()
        },
    ];
    vec![rolling, web]
}

fn ls(o: &ListOutput) -> String {
    let mut buf = Vec::new();
    let kept = super::ls::select(services(), o).unwrap();
    super::ls::render(&mut buf, &kept, o).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn service_ls_table() {
    insta::assert_snapshot!(ls(&out("table", &[], false)));
}

#[test]
fn service_ls_formats_and_filters() {
    let mut all = String::new();
    for (fmt, filters) in [
        ("json", vec![]),
        ("{{.Name}}: {{.Replicas}}", vec![]),
        ("table {{.Name}}\\t{{.Image}}", vec!["label=tier"]),
        ("table", vec!["name=we"]),
    ] {
        all.push_str(&format!("--format {fmt:?} --filter {filters:?}\n"));
        all.push_str(&ls(&out(fmt, &filters, false)));
        all.push('\n');
    }
    insta::assert_snapshot!(all);
}

fn ps(o: &ListOutput) -> String {
    let mut web = services()[1].clone();
    web.spec.task.container.image = "registry:4243/web:1@sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into();
    let web = &web;
    let tasks = vec![
        task(
            web,
            "taskone000000000000000001",
            1,
            "n1",
            TaskState::Running,
            "",
        ),
        task(
            web,
            "taskone000000000000000000",
            1,
            "n2",
            TaskState::Failed,
            "task: non-zero exit (1): the container's process ended with an error",
        ),
        task(
            web,
            "tasktwo000000000000000001",
            2,
            "n2",
            TaskState::Running,
            "",
        ),
    ];
    let names: HashMap<String, String> = [(web.id.to_string(), web.spec.name.clone())].into();
    let hosts: HashMap<String, String> = [
        ("n1".to_string(), "host-1".to_string()),
        ("n2".to_string(), "host-2".to_string()),
    ]
    .into();
    let mut buf = Vec::new();
    super::ps::render_tasks(&mut buf, tasks, &names, &hosts, o).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn service_ps_table_cuts_errors_unless_no_trunc() {
    let mut all = ps(&out("table", &[], false));
    all.push_str("\n--no-trunc\n");
    all.push_str(&ps(&out("table", &[], true)));
    all.push_str("\n--filter node=host-2 --filter desired-state=running\n");
    all.push_str(&ps(&out(
        "table",
        &["node=host-2", "desired-state=running"],
        false,
    )));
    insta::assert_snapshot!(all);
}

/// What convergence prints for one look at the service: the overall line, the task lines,
/// and the verdict.
fn progress(svc: &Service, tasks: &[Task], op: Operation) -> String {
    let s = snapshot(svc, tasks, op, &None);
    let mut out = format!("overall progress: {} out of {} tasks\n", s.done, s.total);
    for l in &s.lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("verdict: {:?}\n", s.verdict));
    out
}

#[test]
fn convergence_display_in_progress_failed_and_rolled_back() {
    let mut svc = service("s1", "web", "web:2", 3, 1);
    let mut all = String::new();
    let starting = vec![
        task(&svc, "a", 1, "n1", TaskState::Running, ""),
        task(&svc, "b", 2, "n2", TaskState::Preparing, ""),
        task(&svc, "c", 3, "n1", TaskState::Pending, ""),
    ];
    all.push_str("-- create, converging\n");
    all.push_str(&progress(&svc, &starting, Operation::Create));
    let mut failing = vec![
        task(&svc, "a", 1, "n1", TaskState::Running, ""),
        task(
            &svc,
            "b",
            2,
            "n2",
            TaskState::Failed,
            "task: non-zero exit (1)",
        ),
        task(&svc, "c", 3, "n1", TaskState::Running, ""),
    ];
    // Seen the moment it failed, before the orchestrator replaces it.
    failing[1].desired_state = TaskState::Running;
    all.push_str("-- update, a task failed\n");
    all.push_str(&progress(&svc, &failing, Operation::Update));
    svc.update_status = Some(Box::new(UpdateStatus {
        state: UpdateState::RollbackCompleted,
        started_at: 1,
        completed_at: 2,
        message: "update rolled back: task web.2 failed: task: non-zero exit (1)".into(),
    }));
    all.push_str("-- update, rolled back\n");
    all.push_str(&progress(&svc, &failing, Operation::Update));
    svc.update_status = Some(Box::new(UpdateStatus {
        state: UpdateState::Paused,
        started_at: 1,
        completed_at: 0,
        message: "update paused: task web.2 failed: task: non-zero exit (1)".into(),
    }));
    all.push_str("-- update, paused\n");
    all.push_str(&progress(&svc, &failing, Operation::Update));
    insta::assert_snapshot!(all);
}

/// The bars a terminal shows, drawn into an in-memory terminal.
fn bars_screen(steps: &[(&Service, Vec<Task>, Operation, Option<&str>)]) -> String {
    use indicatif::{InMemoryTerm, ProgressDrawTarget};
    let term = InMemoryTerm::new(16, 100);
    let mut bars = super::converge_bars::Bars::new(ProgressDrawTarget::term_like_with_hz(
        Box::new(term.clone()),
        200,
    ));
    for (svc, tasks, op, say) in steps {
        bars.show(&snapshot(svc, tasks, *op, &None), "tasks");
        if let Some(line) = say {
            bars.say(line);
        }
        // Draws are rate-limited: let the next one through.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    bars.finish();
    term.contents()
}

#[test]
fn convergence_bars_on_a_terminal() {
    let svc = service("s1", "web", "web:2", 3, 1);
    let starting = vec![
        task(&svc, "a", 1, "n1", TaskState::Running, ""),
        task(&svc, "b", 2, "n2", TaskState::Preparing, ""),
        task(&svc, "c", 3, "n1", TaskState::Pending, ""),
    ];
    let mut failing = vec![
        task(&svc, "a", 1, "n1", TaskState::Running, ""),
        task(
            &svc,
            "b",
            2,
            "n2",
            TaskState::Failed,
            "task: non-zero exit (1)",
        ),
        task(&svc, "c", 3, "n1", TaskState::Running, ""),
    ];
    failing[1].desired_state = TaskState::Running;
    insta::assert_snapshot!(
        "converging",
        bars_screen(&[(&svc, starting.clone(), Operation::Create, None)])
    );
    let screen = bars_screen(&[
        (&svc, starting, Operation::Create, None),
        (
            &svc,
            failing,
            Operation::Update,
            Some("rollback: update failed, rolling back: task b failed: task: non-zero exit (1)"),
        ),
    ]);
    insta::assert_snapshot!(screen);
}
