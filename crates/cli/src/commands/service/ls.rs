//! `swarmctl service ls`

use super::ListOutput;
use crate::client::{collect, status_err, Context};
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use swarm_types::objects::UpdateState;
use swarm_types::spec::ServiceMode;
use swarm_types::task::TaskState;
use swarm_types::{Object, Service, Task};

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub out: ListOutput,
}

/// "running/desired" as docker shows it.
pub fn replicas(svc: &Service, tasks: &[Task], ready_nodes: usize) -> String {
    let mine = tasks.iter().filter(|t| t.service_id == svc.id);
    let running = mine
        .clone()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count();
    match svc.spec.mode {
        ServiceMode::Replicated { replicas } => format!("{running}/{replicas}"),
        ServiceMode::Global => format!("{running}/{ready_nodes}"),
        ServiceMode::ReplicatedJob {
            total_completions, ..
        } => {
            let done = mine
                .filter(|t| t.status.state == TaskState::Complete)
                .count();
            format!("{running}/{total_completions} ({done}/{total_completions} completed)")
        }
        ServiceMode::GlobalJob => {
            let done = mine
                .filter(|t| t.status.state == TaskState::Complete)
                .count();
            format!("{running}/{ready_nodes} ({done}/{ready_nodes} completed)")
        }
    }
}

/// The update state worth showing next to REPLICAS: an update or rollback in flight or paused.
pub fn update_note(svc: &Service) -> Option<&'static str> {
    svc.update_status
        .as_ref()
        .map(|u| u.state)
        .filter(|s| !matches!(s, UpdateState::Completed | UpdateState::RollbackCompleted))
        .map(UpdateState::as_str)
}

pub async fn run(ctx: &Context, a: LsArgs) -> anyhow::Result<()> {
    let mut c = ctx.control().await?;
    let services = collect(
        c.list_services(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?;
    let mut services: Vec<Service> = services
        .into_iter()
        .filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
        .collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    if a.out.quiet {
        for s in &services {
            println!("{}", s.id);
        }
        return Ok(());
    }
    let tasks: Vec<Task> = collect(
        c.list_tasks(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?
    .into_iter()
    .filter_map(|o| match o {
        Object::Task(t) => Some(t),
        _ => None,
    })
    .collect();
    let nodes = collect(
        c.list_nodes(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?;
    let ready = nodes
        .iter()
        .filter(|o| matches!(o, Object::Node(n) if swarm_manager_free::eligible(n)))
        .count();
    let rows: Vec<(String, String, String, String, String, String)> = services
        .iter()
        .map(|s| {
            (
                s.id.short().to_string(),
                s.spec.name.clone(),
                s.spec.mode.name().to_string(),
                replicas(s, &tasks, ready),
                s.spec.task.container.image.clone(),
                s.update_status
                    .as_ref()
                    .map(|u| u.state.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    match a.out.format {
        Format::Json => output::json_lines(
            &rows
                .iter()
                .map(|r| json!({"ID": r.0, "Name": r.1, "Mode": r.2, "Replicas": r.3, "Image": r.4, "Ports": "", "UpdateStatus": r.5}))
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table(
            &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
            &rows
                .into_iter()
                .zip(&services)
                .map(|(r, s)| {
                    let replicas = match update_note(s) {
                        Some(n) => format!("{} ({n})", r.3),
                        None => r.3,
                    };
                    vec![r.0, r.1, r.2, replicas, r.4, String::new()]
                })
                .collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}

/// Node eligibility for global services as the CLI estimates it (ready and not drained).
mod swarm_manager_free {
    use swarm_types::objects::NodeState;
    use swarm_types::spec::Availability;
    use swarm_types::Node;

    pub fn eligible(n: &Node) -> bool {
        n.status.state == NodeState::Ready && n.spec.availability != Availability::Drain
    }
}
