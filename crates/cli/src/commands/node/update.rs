//! `swarmctl node update [--availability active|pause|drain] [--label-add k=v] [--label-rm k] NODE`

use super::{change_spec, Change};
use crate::client::Context;
use crate::parse;
use clap::Args;
use swarm_types::spec::Availability;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Availability of the node: active, pause or drain.
    #[arg(long)]
    pub availability: Option<Availability>,
    /// Add or update a node label (KEY=VALUE).
    #[arg(long = "label-add")]
    pub label_add: Vec<String>,
    /// Remove a node label if it exists.
    #[arg(long = "label-rm")]
    pub label_rm: Vec<String>,
    /// Node id, id prefix or hostname.
    pub node: String,
    #[command(flatten)]
    pub detach: crate::commands::service::DetachFlag,
}

pub async fn run(ctx: &Context, a: UpdateArgs) -> anyhow::Result<()> {
    if a.availability.is_none() && a.label_add.is_empty() && a.label_rm.is_empty() {
        anyhow::bail!("nothing to update: pass --availability, --label-add or --label-rm");
    }
    change_spec(ctx, &a.node, |spec| {
        if let Some(av) = a.availability {
            spec.availability = av;
        }
        for k in &a.label_rm {
            if spec.labels.remove(k).is_none() {
                anyhow::bail!("label {k:?} does not exist on node {}", a.node);
            }
        }
        for l in &a.label_add {
            let (k, v) = parse::key_value(l).map_err(anyhow::Error::msg)?;
            spec.labels.insert(k, v);
        }
        Ok(Change::Write)
    })
    .await?;
    println!("{}", a.node);
    if a.availability == Some(Availability::Drain) && a.detach.follow(false) {
        let node = super::get_node(ctx, &a.node).await?;
        follow_drain(ctx, node.id.as_str(), &a.node).await?;
    }
    Ok(())
}

/// Tasks of the node that have not stopped yet.
fn remaining(tasks: &[swarm_types::Task]) -> usize {
    tasks
        .iter()
        .filter(|t| !t.status.state.is_terminal())
        .count()
}

/// Watches a drained node until its tasks have stopped (they are rescheduled elsewhere by
/// the orchestrator). Ctrl-C stops watching, not the drain.
async fn follow_drain(ctx: &Context, id: &str, name: &str) -> anyhow::Result<()> {
    let mut last = None;
    loop {
        let tasks = crate::commands::service::ps_list(ctx, "", id).await?;
        let n = remaining(&tasks);
        if last != Some(n) {
            if n == 0 {
                println!("{name}: drained (no task runs on it)");
                return Ok(());
            }
            println!("{name}: draining, {n} task(s) still stopping");
            last = Some(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped watching; {name} keeps draining: follow it with `swarmctl node ps {name}`");
                return Ok(());
            }
        }
    }
}
