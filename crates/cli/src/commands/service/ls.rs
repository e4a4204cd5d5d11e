//! `swarmctl service ls`

use super::ListOutput;
use crate::client::{collect, status_err, Context};
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use swarm_types::objects::UpdateState;
use swarm_types::spec::ServiceMode;
use swarm_types::{Object, Service};

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub out: ListOutput,
}

/// "running/desired" as docker shows it, from the counts the manager computed.
pub fn replicas(svc: &Service) -> String {
    let st = svc.status.clone().unwrap_or_default();
    let (running, desired, done) = (st.running_tasks, st.desired_tasks, st.completed_tasks);
    match svc.spec.mode {
        ServiceMode::Replicated { .. } | ServiceMode::Global => format!("{running}/{desired}"),
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob => {
            format!("{running}/{desired} ({done}/{desired} completed)")
        }
    }
}

/// The update state worth showing next to REPLICAS: an update or rollback in flight or paused.
pub fn update_note(svc: &Service) -> Option<&'static str> {
    svc.update_status
        .as_ref()
        .map(|u| u.state)
        .and_then(|s| match s {
            UpdateState::Updating => Some("updating"),
            UpdateState::Paused => Some("update paused"),
            UpdateState::RollbackStarted => Some("rolling back"),
            UpdateState::RollbackPaused => Some("rollback paused"),
            UpdateState::Completed | UpdateState::RollbackCompleted => None,
        })
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
            Object::Service(s) => Some(*s),
            _ => None,
        })
        .collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let services = select(services, &a.out)?;
    if a.out.quiet {
        for s in &services {
            println!("{}", s.id);
        }
        return Ok(());
    }
    render(&mut std::io::stdout(), &services, &a.out)
}

/// The services `--filter` keeps.
pub fn select(mut services: Vec<Service>, out: &ListOutput) -> anyhow::Result<Vec<Service>> {
    let filters = output::Filters::parse(&out.filters, &["id", "name", "label", "mode"])?;
    services.retain(|s| {
        filters.keep(|k, v| match k {
            "id" => s.id.as_str().starts_with(v),
            "name" => s.spec.name.starts_with(v),
            "label" => output::label_matches(&s.spec.labels, v),
            _ => s.spec.mode.name() == v,
        })
    });
    Ok(services)
}

/// The list as `service ls` prints it (tests render it into memory).
/// Docker's PORTS column: `*:8080->80/tcp, 30000->53/udp` (the ports as allocated).
pub fn ports(s: &Service) -> String {
    s.endpoint
        .ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render(
    w: &mut dyn std::io::Write,
    services: &[Service],
    out: &ListOutput,
) -> anyhow::Result<()> {
    let rows: Vec<(String, String, String, String, String, String)> = services
        .iter()
        .map(|s| {
            (
                if out.no_trunc {
                    s.id.to_string()
                } else {
                    s.id.short().to_string()
                },
                s.spec.name.clone(),
                s.spec.mode.name().to_string(),
                replicas(s),
                swarm_types::registry::display_image(&s.spec.task.container.image).to_string(),
                s.update_status
                    .as_ref()
                    .map(|u| u.state.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    match &out.format {
        f @ (Format::Json | Format::Template(_)) => output::structured_to(
            w,
            f,
            &rows
                .iter()
                .zip(services)
                .map(|(r, s)| json!({"ID": r.0, "Name": r.1, "Mode": r.2, "Replicas": r.3, "Image": r.4, "Ports": ports(s), "UpdateStatus": r.5}))
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table_to(
            w,
            &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
            &rows
                .into_iter()
                .zip(services)
                .map(|(r, s)| {
                    let replicas = match update_note(s) {
                        Some(n) => format!("{} ({n})", r.3),
                        None => r.3,
                    };
                    vec![r.0, r.1, r.2, replicas, r.4, ports(s)]
                })
                .collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}
