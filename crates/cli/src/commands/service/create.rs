//! `swarmctl service create [OPTIONS] IMAGE [COMMAND] [ARG...]`

use super::flags::ServiceFlags;
use super::TaskFlags;
use crate::client::{decode_object, status_err, Context};
use crate::parse;
use anyhow::bail;
use clap::Args;
use swarm_api::control::CreateServiceRequest;
use swarm_types::spec::{ContainerSpec, ServiceMode, ServiceSpec, TaskSpec};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub name: Option<String>,
    /// Service mode: replicated, global, replicated-job or global-job.
    #[arg(long, default_value = "replicated")]
    pub mode: String,
    /// Number of tasks (replicated), or of completions (replicated-job).
    // A negative count gets the value parser's message, not "unexpected argument".
    #[arg(long, value_parser = parse::replicas, allow_negative_numbers = true)]
    pub replicas: Option<u64>,
    /// Maximum number of job tasks running at once (replicated-job only).
    // A negative count gets the value parser's message, not "unexpected argument".
    #[arg(long, value_parser = parse::replicas, allow_negative_numbers = true)]
    pub max_concurrent: Option<u64>,
    /// Print only the service id (and do not follow convergence unless `--detach=false`).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub detach: super::converge::DetachFlag,
    /// Pin the image tag to the manifest digest the cluster registry holds for it, so every
    /// node runs the same image even if the tag moves: always, changed (only when the image
    /// changes) or never.
    #[arg(long = "resolve-image", default_value = "always", value_parser = ["always", "changed", "never"])]
    pub resolve_image: String,
    /// Send the credentials `docker login` stored for the image's registry to the managers,
    /// which seal them and hand them only to the nodes that run the service's tasks.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Set environment variables (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Service labels (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Container labels (KEY=VALUE).
    #[arg(long = "container-label")]
    pub container_labels: Vec<String>,
    /// Placement constraints (e.g. node.labels.zone==east).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Placement preferences (spread=node.labels.NAME; replicated services and jobs).
    #[arg(long = "placement-pref")]
    pub placement_prefs: Vec<String>,
    /// Attach to a network: NAME or name=NAME,alias=ALIAS (repeatable). Without it, tasks get
    /// their node's default bridge (outbound access through NAT); `none` gives only loopback.
    #[arg(long = "network", value_parser = crate::commands::network::parse_attachment)]
    pub networks: Vec<swarm_types::spec::NetworkAttachmentConfig>,
    /// Publish a port on every host (routing mesh): [PUBLISHED:]TARGET[/PROTOCOL], or
    /// published=P,target=T,protocol=tcp|udp,mode=ingress|host,traffic=cluster|local
    /// (repeatable). Without PUBLISHED a port from 30000-32767 is picked. traffic=local: only
    /// hosts running a task answer, and the task sees the client's address.
    #[arg(short = 'p', long = "publish", value_parser = super::ports::parse_publish)]
    pub publish: Vec<swarm_types::endpoint::PortConfig>,
    /// How the service is reached: vip (one virtual IP per network, balanced over its
    /// tasks) or dnsrr (its name resolves to every task's address).
    #[arg(long = "endpoint-mode", default_value = "vip", value_parser = ["vip", "dnsrr"])]
    pub endpoint_mode: String,
    #[command(flatten)]
    pub task: TaskFlags,
    #[command(flatten)]
    pub service: ServiceFlags,
    #[command(flatten)]
    pub container: super::container_flags::CreateContainerFlags,
    /// Image, then the command and its arguments. Options go before the image: everything
    /// after it belongs to the container's command (`busybox ls -l`), and an option swarmctl
    /// does not know is a usage error, never an image name.
    #[arg(
        required = true,
        value_name = "IMAGE [COMMAND] [ARG...]",
        trailing_var_arg = true
    )]
    pub image_and_args: Vec<String>,
}

/// The service mode from `--mode`, `--replicas` and `--max-concurrent`; a flag the mode does
/// not use is refused rather than dropped.
fn mode_of(
    mode: &str,
    replicas: Option<u64>,
    max_concurrent: Option<u64>,
) -> anyhow::Result<ServiceMode> {
    if max_concurrent.is_some() && mode != "replicated-job" {
        bail!("--max-concurrent can only be used with --mode replicated-job (this is {mode})");
    }
    Ok(match mode {
        "replicated" => ServiceMode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
        "replicated-job" => ServiceMode::ReplicatedJob {
            max_concurrent: max_concurrent.unwrap_or(1),
            total_completions: replicas.unwrap_or(1),
        },
        "global" | "global-job" => {
            if replicas.is_some() {
                bail!(
                    "--replicas can only be used with replicated or replicated-job mode: a {mode} service runs one task on every eligible node"
                );
            }
            if mode == "global" {
                ServiceMode::Global
            } else {
                ServiceMode::GlobalJob
            }
        }
        other => {
            bail!("invalid --mode {other:?}: use replicated, global, replicated-job or global-job")
        }
    })
}

/// The spec `service create` writes, validated: every flag given is either in it or refused.
pub fn build(a: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let mut it = a.image_and_args.iter().cloned();
    let image = it.next().unwrap_or_default();
    let args: Vec<String> = it.collect();
    let mode = mode_of(&a.mode, a.replicas, a.max_concurrent)?;
    let name = a.name.clone().unwrap_or_else(random_name);
    let mut task = TaskSpec {
        container: ContainerSpec {
            image,
            args,
            env: a.env.clone(),
            labels: parse::labels(&a.container_labels).map_err(anyhow::Error::msg)?,
            stop_grace_period: std::time::Duration::from_secs(10),
            ..Default::default()
        },
        ..Default::default()
    };
    task.placement.constraints = a.constraints.clone();
    task.placement.preferences = a.placement_prefs.clone();
    task.networks = a.networks.clone();
    a.task.apply(&mut task)?;
    a.container.apply(&mut task.container)?;
    let mut spec = ServiceSpec {
        name,
        labels: parse::labels(&a.labels).map_err(anyhow::Error::msg)?,
        task,
        mode,
        update_config: Default::default(),
        rollback_config: Default::default(),
        endpoint: swarm_types::endpoint::EndpointSpec {
            mode: swarm_types::endpoint::EndpointMode::parse(&a.endpoint_mode)?,
            ports: a.publish.clone(),
        },
    };
    a.service.apply(&mut spec)?;
    // Validate locally first: the same check the manager runs, without a round trip.
    spec.validate()?;
    Ok(spec)
}

pub async fn run(ctx: &Context, a: CreateArgs) -> anyhow::Result<()> {
    let mut spec = build(&a)?;
    if a.with_registry_auth {
        spec.task.container.registry_auth.clear =
            crate::docker_auth::for_image(&spec.task.container.image)?;
    }
    let resp = ctx
        .control()
        .await?
        .create_service(CreateServiceRequest {
            spec: swarm_api::wire::to_bytes(&spec),
            resolve_image: a.resolve_image.clone(),
        })
        .await
        .map_err(status_err)?;
    super::print_warnings(&resp.get_ref().warnings);
    let obj = decode_object(&resp.get_ref().object)?;
    println!("{}", obj.id());
    super::after_write(
        ctx,
        &obj,
        &a.detach,
        a.quiet,
        super::converge::Operation::Create,
        "created",
    )
    .await
}

/// Docker-style `adjective_name` for services created without `--name`.
fn random_name() -> String {
    const A: [&str; 8] = [
        "brave", "calm", "eager", "fancy", "happy", "jolly", "keen", "quiet",
    ];
    const B: [&str; 8] = [
        "turing", "hopper", "lovelace", "knuth", "ritchie", "liskov", "lamport", "dijkstra",
    ];
    let n: u32 = rand_u32();
    format!("{}_{}", A[(n % 8) as usize], B[((n / 8) % 8) as usize])
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
