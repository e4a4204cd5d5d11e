//! `swarmctl service update [OPTIONS] SERVICE`

use super::flags::ServiceFlags;
use super::{get_service, split_command, TaskFlags};
use crate::client::{decode_object, status_err, Context};
use crate::parse;
use anyhow::bail;
use clap::Args;
use swarm_api::control::UpdateServiceRequest;
use swarm_types::spec::{ServiceMode, ServiceSpec};

/// Every argument (or group of them) that changes the spec. `--rollback` restores the previous
/// spec as it was, so clap refuses it together with any of these. `TaskFlags` and
/// `ServiceFlags` are the groups clap derives for the flattened structs: a flag added there
/// is covered without touching this list.
const CHANGES: [&str; 17] = [
    "image",
    "publish_add",
    "publish_rm",
    "endpoint_mode",
    "with_registry_auth",
    "replicas",
    "args",
    "env_add",
    "env_rm",
    "label_add",
    "label_rm",
    "constraint_add",
    "constraint_rm",
    "force",
    "TaskFlags",
    "ServiceFlags",
    "UpdateContainerFlags",
];

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Service image.
    #[arg(long)]
    pub image: Option<String>,
    /// Pin the image tag to the manifest digest the cluster registry holds for it, so every
    /// node runs the same image even if the tag moves: always, changed (only when the image
    /// changes) or never.
    #[arg(long = "resolve-image", default_value = "always", value_parser = ["always", "changed", "never"])]
    pub resolve_image: String,
    /// Send the credentials `docker login` stored for the image's registry to the managers,
    /// which seal them and hand them only to the nodes that run the service's tasks.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Number of tasks.
    // A negative count gets the value parser's message, not "unexpected argument".
    #[arg(long, value_parser = parse::replicas, allow_negative_numbers = true)]
    pub replicas: Option<u64>,
    /// Service command args (replaces them).
    #[arg(long)]
    pub args: Option<String>,
    /// Add or update an environment variable.
    #[arg(long = "env-add")]
    pub env_add: Vec<String>,
    /// Remove an environment variable.
    #[arg(long = "env-rm")]
    pub env_rm: Vec<String>,
    /// Add or update a service label.
    #[arg(long = "label-add")]
    pub label_add: Vec<String>,
    /// Remove a label by its key.
    #[arg(long = "label-rm")]
    pub label_rm: Vec<String>,
    /// Add or update a placement constraint.
    #[arg(long = "constraint-add")]
    pub constraint_add: Vec<String>,
    /// Remove a constraint.
    #[arg(long = "constraint-rm")]
    pub constraint_rm: Vec<String>,
    /// Publish a port (as `service create --publish`), or change how a published port is
    /// published.
    #[arg(long = "publish-add", value_parser = super::ports::parse_publish)]
    pub publish_add: Vec<swarm_types::endpoint::PortConfig>,
    /// Stop publishing a port: PUBLISHED[/PROTOCOL] (the number `service ls` shows).
    #[arg(long = "publish-rm", value_parser = super::ports::parse_publish_rm)]
    pub publish_rm: Vec<(u16, swarm_types::endpoint::Protocol)>,
    /// vip or dnsrr (see `service create --endpoint-mode`).
    #[arg(long = "endpoint-mode", value_parser = ["vip", "dnsrr"])]
    pub endpoint_mode: Option<String>,
    /// Force the update even if no changes require it.
    #[arg(long)]
    pub force: bool,
    /// Roll back to the previous specification (as `service rollback`; no other change may be
    /// combined with it).
    #[arg(long, conflicts_with_all = CHANGES)]
    pub rollback: bool,
    /// Print only the service id (not the name as given, nor the stderr line on following
    /// its tasks).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub detach: super::converge::DetachFlag,
    #[command(flatten)]
    pub task: TaskFlags,
    #[command(flatten)]
    pub service_flags: ServiceFlags,
    #[command(flatten)]
    pub container: super::container_flags::UpdateContainerFlags,
    /// Service id, id prefix or name.
    pub service: String,
}

/// Applies the flags to the service's current spec (which is then validated); `allocated`
/// are the published ports the cluster holds for it (in the spec's order), so
/// `--publish-rm` finds a port published without a number by the number it got.
pub fn apply(
    a: &UpdateArgs,
    spec: &mut ServiceSpec,
    allocated: &[swarm_types::endpoint::PortConfig],
) -> anyhow::Result<()> {
    let ports = &mut spec.endpoint.ports;
    for rm in &a.publish_rm {
        let before = ports.len();
        let mut i = 0;
        ports.retain(|p| {
            let got = allocated
                .get(i)
                .filter(|q| q.target == p.target && q.protocol == p.protocol);
            i += 1;
            !(super::ports::matches_rm(p, *rm)
                || got.is_some_and(|q| super::ports::matches_rm(q, *rm)))
        });
        if ports.len() == before {
            bail!(
                "--publish-rm {}/{}: service {} does not publish that port",
                rm.0,
                rm.1.as_str(),
                spec.name
            );
        }
    }
    for add in &a.publish_add {
        ports.retain(|p| {
            !(p.protocol == add.protocol
                && ((add.published != 0 && p.published == add.published)
                    || (add.published == 0 && p.published == 0 && p.target == add.target)))
        });
        ports.push(add.clone());
    }
    if let Some(m) = &a.endpoint_mode {
        spec.endpoint.mode = swarm_types::endpoint::EndpointMode::parse(m)?;
    }
    let c = &mut spec.task.container;
    if let Some(i) = &a.image {
        c.image = i.clone();
    }
    if let Some(args) = &a.args {
        c.args = split_command(args)?;
    }
    for e in &a.env_rm {
        c.env
            .retain(|x| x.split_once('=').map(|(k, _)| k).unwrap_or(x) != e);
    }
    for e in &a.env_add {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e).to_string();
        c.env
            .retain(|x| x.split_once('=').map(|(k, _)| k).unwrap_or(x) != key);
        c.env.push(e.clone());
    }
    for k in &a.label_rm {
        spec.labels.remove(k);
    }
    for l in &a.label_add {
        let (k, v) = parse::key_value(l).map_err(anyhow::Error::msg)?;
        spec.labels.insert(k, v);
    }
    let p = &mut spec.task.placement;
    for r in &a.constraint_rm {
        p.constraints
            .retain(|c| c.replace(' ', "") != r.replace(' ', ""));
    }
    for c in &a.constraint_add {
        if !p.constraints.contains(c) {
            p.constraints.push(c.clone());
        }
    }
    if let Some(n) = a.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas } => *replicas = n,
            other => bail!(
                "--replicas can only be used with replicated services; {} is {}",
                spec.name,
                other.name()
            ),
        }
    }
    a.task.apply(&mut spec.task)?;
    a.container.apply(&mut spec.task.container)?;
    a.service_flags.apply(spec)?;
    if a.force {
        spec.task.force_update += 1;
    }
    spec.validate()?;
    Ok(())
}

pub async fn run(ctx: &Context, a: UpdateArgs) -> anyhow::Result<()> {
    if a.rollback {
        // Docker's `service update --rollback`; clap has refused any other change with it.
        return super::rollback::rollback(ctx, &a.service, 0, a.quiet, &a.detach).await;
    }
    let svc = get_service(ctx, &a.service).await?;
    let mut spec = svc.spec.clone();
    apply(&a, &mut spec, &svc.endpoint.ports)?;
    if a.with_registry_auth {
        spec.task.container.registry_auth.clear =
            crate::docker_auth::for_image(&spec.task.container.image)?;
    }
    let resp = ctx
        .control()
        .await?
        .update_service(UpdateServiceRequest {
            reference: svc.id.to_string(),
            version: svc.meta.version,
            spec: swarm_api::wire::to_bytes(&spec),
            resolve_image: a.resolve_image.clone(),
        })
        .await
        .map_err(status_err)?;
    super::print_warnings(&resp.get_ref().warnings);
    let obj = decode_object(&resp.get_ref().object)?;
    if a.quiet {
        println!("{}", obj.id());
    } else {
        // Docker prints the reference as given.
        println!("{}", a.service);
    }
    super::after_write(
        ctx,
        &obj,
        &a.detach,
        a.quiet,
        super::converge::Operation::Update,
        "updated",
    )
    .await
}
