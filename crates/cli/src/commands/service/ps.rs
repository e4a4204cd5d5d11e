//! `swarmctl service ps SERVICE...`: the tasks of services, with their state and errors.

use crate::client::{collect, status_err, Context};
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use swarm_api::control::ListRequest;
use swarm_types::objects::UpdateState;
use swarm_types::{Object, Task};

/// Width of the ERROR column (Docker's `maxErrLength`).
const ERROR_WIDTH: usize = 30;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Service ids, id prefixes or names.
    #[arg(required = true)]
    pub services: Vec<String>,
    #[command(flatten)]
    pub out: super::ListOutput,
}

pub async fn run(ctx: &Context, a: PsArgs) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for s in &a.services {
        tasks.extend(list(ctx, s, "").await?);
    }
    print_tasks(ctx, tasks, &a.out).await?;
    if a.out.quiet || a.out.format != Format::Table {
        return Ok(());
    }
    // A paused update explains itself under the table.
    for s in &a.services {
        let svc = super::get_service(ctx, s).await?;
        if let Some(line) = paused_line(&svc) {
            if a.services.len() > 1 {
                println!("{}: {line}", svc.spec.name);
            } else {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// `update paused: <reason>` / `rollback paused: <reason>` for a paused service.
pub fn paused_line(svc: &swarm_types::Service) -> Option<String> {
    let u = svc.update_status.as_ref()?;
    match u.state {
        // The manager's message already names the state: not "update paused: update paused: …".
        UpdateState::Paused => Some(format!(
            "update paused: {}",
            u.message
                .strip_prefix("update paused: ")
                .unwrap_or(&u.message)
        )),
        UpdateState::RollbackPaused => Some(format!(
            "rollback paused: {}",
            u.message
                .strip_prefix("rollback paused: ")
                .unwrap_or(&u.message)
        )),
        _ => None,
    }
}

/// CURRENT STATE as docker shows it, with the container's health like `docker ps`:
/// `Running 5 seconds ago (healthy)`, `Starting 2 seconds ago (health: starting)`.
pub fn current_state(t: &Task) -> String {
    let base = format!(
        "{} {}",
        output::title(t.status.state.as_str()),
        output::ago(t.status.timestamp.max(t.meta.created_at))
    );
    // How far an image pull got (the agent's note while preparing).
    if t.status.state == swarm_types::task::TaskState::Preparing
        && t.status.message.starts_with("pulling image")
    {
        return format!("{base} ({})", t.status.message);
    }
    match t.status.health.as_str() {
        "" => base,
        "starting" => format!("{base} (health: starting)"),
        h => format!("{base} ({h})"),
    }
}

pub async fn list(ctx: &Context, service: &str, node: &str) -> anyhow::Result<Vec<Task>> {
    let objs = collect(
        ctx.control()
            .await?
            .list_tasks(ListRequest {
                stale: ctx.stale,
                service: service.to_string(),
                node: node.to_string(),
            })
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?;
    Ok(objs
        .into_iter()
        .filter_map(|o| match o {
            Object::Task(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// A task's name as Docker shows it: `SERVICE.SLOT`, or `SERVICE.NODE` for a global task.
pub(crate) fn task_name(service: &str, t: &Task) -> String {
    if t.slot > 0 {
        format!("{service}.{}", t.slot)
    } else {
        format!(
            "{service}.{}",
            t.node_id.as_ref().map(|n| n.as_str()).unwrap_or("")
        )
    }
}

/// Prints tasks as `service ps` / `node ps` do.
pub async fn print_tasks(
    ctx: &Context,
    mut tasks: Vec<Task>,
    out: &super::ListOutput,
) -> anyhow::Result<()> {
    tasks.sort_by(|a, b| {
        (
            a.service_id.as_str(),
            a.slot,
            std::cmp::Reverse(a.meta.created_at),
        )
            .cmp(&(
                b.service_id.as_str(),
                b.slot,
                std::cmp::Reverse(b.meta.created_at),
            ))
    });
    let mut c = ctx.control().await?;
    let mut names: HashMap<String, String> = HashMap::new();
    for o in collect(
        c.list_services(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?
    {
        if let Object::Service(s) = o {
            names.insert(s.id.to_string(), s.spec.name);
        }
    }
    let mut hosts: HashMap<String, String> = HashMap::new();
    for o in collect(
        c.list_nodes(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?
    {
        if let Object::Node(n) = o {
            hosts.insert(n.id.to_string(), n.description.hostname);
        }
    }
    render_tasks(&mut std::io::stdout(), tasks, &names, &hosts, out)
}

/// The task table of `service ps` / `node ps`, given service names and node hostnames by id
/// (tests render it into memory).
pub fn render_tasks(
    w: &mut dyn std::io::Write,
    mut tasks: Vec<Task>,
    names: &HashMap<String, String>,
    hosts: &HashMap<String, String>,
    out: &super::ListOutput,
) -> anyhow::Result<()> {
    let filters = output::Filters::parse(&out.filters, &["id", "name", "node", "desired-state"])?;
    let task_name = |t: &Task| {
        let svc = names
            .get(t.service_id.as_str())
            .cloned()
            .unwrap_or_else(|| t.service_id.to_string());
        task_name(&svc, t)
    };
    tasks.retain(|t| {
        filters.keep(|k, v| match k {
            "id" => t.id.as_str().starts_with(v),
            "name" => task_name(t).starts_with(v),
            "node" => t.node_id.as_ref().is_some_and(|n| {
                n.as_str().starts_with(v) || hosts.get(n.as_str()).is_some_and(|h| h == v)
            }),
            _ => t.desired_state.as_str() == v,
        })
    });
    if out.quiet {
        for t in &tasks {
            writeln!(w, "{}", t.id)?;
        }
        return Ok(());
    }
    let mut seen_slots = std::collections::HashSet::new();
    let rows: Vec<[String; 8]> = tasks
        .iter()
        .map(|t| {
            let key = (
                t.service_id.clone(),
                t.slot,
                if t.slot == 0 { t.node_id.clone() } else { None },
            );
            let history = !seen_slots.insert(key);
            let name = task_name(t);
            // Docker marks earlier attempts of a slot like this.
            let name = if history {
                format!(" \\_ {name}")
            } else {
                name
            };
            let node = t
                .node_id
                .as_ref()
                .map(|n| {
                    hosts
                        .get(n.as_str())
                        .cloned()
                        .unwrap_or_else(|| n.to_string())
                })
                .unwrap_or_default();
            let current = current_state(t);
            let err = t.status.err.clone();
            [
                if out.no_trunc {
                    t.id.to_string()
                } else {
                    t.id.short().to_string()
                },
                name,
                // The pinned digest with --no-trunc, as docker service ps shows it.
                if out.no_trunc {
                    t.spec.container.image.clone()
                } else {
                    swarm_types::registry::display_image(&t.spec.container.image).to_string()
                },
                node,
                output::title(t.desired_state.as_str()),
                current,
                err,
                // Host-mode ports, as Docker's PORTS shows them per task.
                t.spec
                    .host_ports
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    match &out.format {
        f @ (Format::Json | Format::Template(_)) => output::structured_to(
            w,
            f,
            &rows
                .iter()
                .map(|r| json!({"ID": r[0], "Name": r[1], "Image": r[2], "Node": r[3], "DesiredState": r[4], "CurrentState": r[5], "Error": r[6], "Ports": r[7]}))
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table_to(
            w,
            &["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR", "PORTS"],
            &rows
                .into_iter()
                .map(|r| {
                    let mut v = r.to_vec();
                    // Docker cuts errors to 30 characters unless --no-trunc (JSON and
                    // templates keep them whole: scripts read them).
                    if !out.no_trunc {
                        v[6] = output::ellipsis(&v[6], ERROR_WIDTH);
                    }
                    v
                })
                .collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::objects::{Meta, TaskStatus, UpdateStatus};
    use swarm_types::task::TaskState;
    use swarm_types::{ServiceId, TaskId};

    fn task(state: TaskState, health: &str) -> Task {
        let now = swarm_api::now_ms();
        Task {
            id: TaskId::new("t1"),
            meta: Meta::default(),
            service_id: ServiceId::new("s1"),
            slot: 1,
            node_id: None,
            service_name: "web".into(),
            spec_version: 1,
            spec: Default::default(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                timestamp: now - 5_000,
                health: health.into(),
                ..Default::default()
            },
            restarts: 0,
            networks: Vec::new(),
        }
    }

    #[test]
    fn current_state_shows_health_like_docker_ps() {
        assert_eq!(
            current_state(&task(TaskState::Running, "")),
            "Running 5 seconds ago"
        );
        assert_eq!(
            current_state(&task(TaskState::Running, "healthy")),
            "Running 5 seconds ago (healthy)"
        );
        assert_eq!(
            current_state(&task(TaskState::Starting, "starting")),
            "Starting 5 seconds ago (health: starting)"
        );
        assert_eq!(
            current_state(&task(TaskState::Failed, "unhealthy")),
            "Failed 5 seconds ago (unhealthy)"
        );
        let mut pulling = task(TaskState::Preparing, "");
        pulling.status.message = "pulling image: 12.3 MB of 212.0 MB".into();
        assert_eq!(
            current_state(&pulling),
            "Preparing 5 seconds ago (pulling image: 12.3 MB of 212.0 MB)"
        );
    }

    #[test]
    fn paused_updates_explain_themselves() {
        let mut svc: swarm_types::Service = serde_json::from_value(serde_json::json!({
            "id": "s1", "meta": {"version": 1, "created_at": 0, "updated_at": 0},
            "spec": {"name": "web", "labels": {}, "mode": {"replicated": {"replicas": 1}},
                     "task": serde_json::to_value(swarm_types::spec::TaskSpec::default()).unwrap()},
            "previous_spec": null
        }))
        .unwrap();
        assert_eq!(paused_line(&svc), None);
        let mut st = UpdateStatus {
            state: UpdateState::Paused,
            started_at: 0,
            completed_at: 0,
            message: "task web.2 on node-3 failed: task: non-zero exit (1)".into(),
        };
        svc.update_status = Some(Box::new(st.clone()));
        assert_eq!(
            paused_line(&svc).unwrap(),
            "update paused: task web.2 on node-3 failed: task: non-zero exit (1)"
        );
        assert_eq!(super::super::ls::update_note(&svc), Some("update paused"));
        st.state = UpdateState::RollbackPaused;
        svc.update_status = Some(Box::new(st.clone()));
        assert!(paused_line(&svc).unwrap().starts_with("rollback paused: "));
        st.state = UpdateState::Completed;
        svc.update_status = Some(Box::new(st));
        assert_eq!(paused_line(&svc), None);
        assert_eq!(super::super::ls::update_note(&svc), None);
    }
}
