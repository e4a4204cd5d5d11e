//! `swarmctl node ps [NODE...]`: tasks on nodes (default: the node serving the request).

use crate::client::Context;
use crate::output::ListOutput;
use clap::Args;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Node ids, id prefixes or hostnames (default: self).
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub out: ListOutput,
}

pub async fn run(ctx: &Context, a: PsArgs) -> anyhow::Result<()> {
    let nodes = if a.nodes.is_empty() {
        vec![ctx.status().await?.node_id]
    } else {
        a.nodes.clone()
    };
    let mut tasks = Vec::new();
    for n in &nodes {
        let n = if n == "self" {
            ctx.status().await?.node_id
        } else {
            n.clone()
        };
        tasks.extend(crate::commands::service::ps_list(ctx, "", &n).await?);
    }
    crate::commands::service::ps_print(ctx, tasks, &a.out).await
}
