//! `swarmctl service inspect SERVICE...`

use super::get_service;
use crate::client::Context;
use crate::output;
use clap::Args;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Service ids, id prefixes or names.
    #[arg(required = true)]
    pub services: Vec<String>,
}

pub async fn run(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for r in &a.services {
        out.push(get_service(ctx, r).await?);
    }
    output::json_array(&out)
}
