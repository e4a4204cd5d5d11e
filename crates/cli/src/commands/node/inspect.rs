//! `swarmctl node inspect NODE...` (`self` means the node serving the request).

use super::get_node;
use crate::client::Context;
use crate::output;
use clap::Args;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Node ids, id prefixes, hostnames, or `self`.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

pub async fn run(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for r in &a.nodes {
        let r = if r == "self" {
            ctx.status().await?.node_id
        } else {
            r.clone()
        };
        out.push(get_node(ctx, &r).await?);
    }
    output::json_array(&out)
}
