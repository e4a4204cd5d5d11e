//! `swarmctl node rm [--force] NODE...`: removes nodes; their certificates are refused after.

use crate::client::{status_err, Context};
use clap::Args;
use swarm_api::control::RemoveRequest;

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove the node even if it is up (its tasks are rescheduled elsewhere).
    #[arg(short, long)]
    pub force: bool,
    /// Node ids, id prefixes or hostnames.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

pub async fn run(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let mut c = ctx.control().await?;
    let mut failed = false;
    for n in &a.nodes {
        match c
            .remove_node(RemoveRequest {
                reference: n.clone(),
                force: a.force,
            })
            .await
        {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("swarmctl: {:#}", status_err(e));
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some nodes could not be removed");
    }
    Ok(())
}
