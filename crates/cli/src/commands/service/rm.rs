//! `swarmctl service rm SERVICE...`

use crate::client::{status_err, Context};
use clap::Args;
use swarm_api::control::RemoveRequest;

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Service ids, id prefixes or names.
    #[arg(required = true)]
    pub services: Vec<String>,
}

pub async fn run(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let mut c = ctx.control().await?;
    let mut failed = false;
    for s in &a.services {
        match c
            .remove_service(RemoveRequest {
                reference: s.clone(),
                force: false,
            })
            .await
        {
            Ok(_) => println!("{s}"),
            Err(e) => {
                eprintln!("swarmctl: {:#}", status_err(e));
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some services could not be removed");
    }
    Ok(())
}
