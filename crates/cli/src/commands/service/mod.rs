//! `swarmctl service ...`

mod container_flags;
mod converge;
mod converge_bars;
mod security_opt;
pub use converge::DetachFlag;
mod create;
mod flags;
mod history;
mod inspect;
mod logs;
pub use logs::{parse_tail, parse_time as parse_log_time};
mod ls;
mod ports;
mod pretty;
pub use pretty::{bytes, print as print_aligned};
pub(crate) mod ps;
#[cfg(test)]
mod render_tests;
pub use ps::{list as ps_list, print_tasks as ps_print};
mod rm;
mod rollback;
mod scale;
mod snapshot;
mod update;

use crate::client::{decode_object, status_err, Context};
use crate::parse;
use clap::{Args, Subcommand};
use swarm_api::control::GetRequest;
use swarm_types::spec::RestartCondition;
use swarm_types::{Object, Service};

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create a new service.
    Create(create::CreateArgs),
    /// List services.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Display detailed information on one or more services.
    Inspect(inspect::InspectArgs),
    /// Update a service.
    Update(update::UpdateArgs),
    /// Scale one or multiple replicated services.
    Scale(scale::ScaleArgs),
    /// Remove one or more services.
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
    /// List the tasks of one or more services.
    Ps(ps::PsArgs),
    /// Revert changes to a service's configuration (the previous spec, or --to-version N).
    Rollback(rollback::RollbackArgs),
    /// Show the kept versions of a service's spec and what changed between them.
    History(history::HistoryArgs),
    /// Fetch the logs of a service or task (from every node, through the managers).
    Logs(logs::LogsArgs),
}

pub async fn run(ctx: &Context, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Create(a) => create::run(ctx, a).await,
        ServiceCmd::Ls(a) => ls::run(ctx, a).await,
        ServiceCmd::Inspect(a) => inspect::run(ctx, a).await,
        ServiceCmd::Update(a) => update::run(ctx, a).await,
        ServiceCmd::Scale(a) => scale::run(ctx, a).await,
        ServiceCmd::Rm(a) => rm::run(ctx, a).await,
        ServiceCmd::Ps(a) => ps::run(ctx, a).await,
        ServiceCmd::Rollback(a) => rollback::run(ctx, a).await,
        ServiceCmd::History(a) => history::run(ctx, a).await,
        ServiceCmd::Logs(a) => logs::run(ctx, a).await,
    }
}

/// The line `create`, `update`, `scale` and `rollback` print on stderr unless `-q`: the change
/// is written, and the tasks converge on their own (swarmctl does not follow them yet).
pub fn follow_hint(service: &str, what: &str) {
    eprintln!("{service}: {what}; the tasks converge in the background: follow them with `swarmctl service ps {service}` (or pass --detach=false)");
}

/// After a write: follow convergence (see `converge::DetachFlag`), or print the hint.
async fn after_write(
    ctx: &Context,
    obj: &swarm_types::Object,
    detach: &converge::DetachFlag,
    quiet: bool,
    op: converge::Operation,
    what: &str,
) -> anyhow::Result<()> {
    let swarm_types::Object::Service(svc) = obj else {
        anyhow::bail!("server returned something other than a service");
    };
    if detach.follow(quiet) {
        converge::follow(ctx, svc, op).await
    } else {
        if !quiet {
            follow_hint(&svc.spec.name, what);
        }
        Ok(())
    }
}

pub use crate::output::ListOutput;

/// Task-template flags shared by `create` and `update` (docker's names).
#[derive(Args, Debug, Clone, Default)]
pub struct TaskFlags {
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Limit CPUs (e.g. 0.5).
    #[arg(long, value_parser = parse::cpus)]
    pub limit_cpu: Option<i64>,
    /// Limit memory (e.g. 512m).
    #[arg(long, value_parser = parse::memory)]
    pub limit_memory: Option<i64>,
    /// Reserve CPUs.
    #[arg(long, value_parser = parse::cpus)]
    pub reserve_cpu: Option<i64>,
    /// Reserve memory.
    #[arg(long, value_parser = parse::memory)]
    pub reserve_memory: Option<i64>,
    /// Restart when condition is met: none, on-failure or any.
    #[arg(long, value_parser = parse_condition)]
    pub restart_condition: Option<RestartCondition>,
    /// Delay between restart attempts (e.g. 5s).
    #[arg(long, value_parser = parse::duration)]
    pub restart_delay: Option<std::time::Duration>,
    /// Maximum number of restarts before giving up (0 = unlimited).
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// Window used to evaluate the restart policy.
    #[arg(long, value_parser = parse::duration)]
    pub restart_window: Option<std::time::Duration>,
    /// Time to wait before force killing a container (e.g. 10s).
    #[arg(long, value_parser = parse::duration)]
    pub stop_grace_period: Option<std::time::Duration>,
    /// Maximum number of tasks per node (0 = unlimited; replicated services and jobs).
    #[arg(long)]
    pub replicas_max_per_node: Option<u64>,
}

fn parse_condition(s: &str) -> Result<RestartCondition, String> {
    match s {
        "none" => Ok(RestartCondition::None),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "any" => Ok(RestartCondition::Any),
        o => Err(format!(
            "invalid restart condition {o:?}: use none, on-failure or any"
        )),
    }
}

impl TaskFlags {
    /// Applies the flags that were given to a task spec.
    pub fn apply(&self, t: &mut swarm_types::spec::TaskSpec) -> anyhow::Result<()> {
        let c = &mut t.container;
        if let Some(v) = &self.workdir {
            c.workdir = v.clone();
        }
        if let Some(v) = &self.user {
            c.user = v.clone();
        }
        if let Some(v) = &self.hostname {
            c.hostname = v.clone();
        }
        if let Some(v) = &self.entrypoint {
            c.command = split_command(v)?;
        }
        if let Some(v) = self.stop_grace_period {
            c.stop_grace_period = v;
        }
        let r = &mut t.resources;
        if let Some(v) = self.limit_cpu {
            r.limits.nano_cpus = v;
        }
        if let Some(v) = self.limit_memory {
            r.limits.memory_bytes = v;
        }
        if let Some(v) = self.reserve_cpu {
            r.reservations.nano_cpus = v;
        }
        if let Some(v) = self.reserve_memory {
            r.reservations.memory_bytes = v;
        }
        let p = &mut t.restart_policy;
        if let Some(v) = self.restart_condition {
            p.condition = v;
        }
        if let Some(v) = self.restart_delay {
            p.delay = v;
        }
        if let Some(v) = self.restart_max_attempts {
            p.max_attempts = v;
        }
        if let Some(v) = self.restart_window {
            p.window = v;
        }
        if let Some(v) = self.replicas_max_per_node {
            t.placement.max_replicas_per_node = v;
        }
        Ok(())
    }
}

/// Splits a command line on whitespace, honouring single and double quotes.
pub fn split_command(s: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        anyhow::bail!("unterminated quote in {s:?}");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Fetches one service by id, id prefix or name.
pub async fn get_service(ctx: &Context, reference: &str) -> anyhow::Result<Service> {
    let resp = ctx
        .control()
        .await?
        .get_service(GetRequest {
            reference: reference.to_string(),
            stale: ctx.stale,
        })
        .await
        .map_err(status_err)?;
    match decode_object(&resp.get_ref().object)? {
        Object::Service(s) => Ok(*s),
        _ => anyhow::bail!("server returned something other than a service"),
    }
}

#[cfg(test)]
mod tests;

/// Warnings a manager attached to a successful answer, on stderr as Docker prints them.
pub fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}
