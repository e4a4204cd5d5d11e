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
    Ok(())
}
