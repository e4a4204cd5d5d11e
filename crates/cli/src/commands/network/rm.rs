//! `swarmctl network rm NETWORK...`: refused, naming the services, while a service uses it.

use crate::client::{status_err, Context};
use clap::Args;
use swarm_api::control::RemoveRequest;

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Network ids, id prefixes or names.
    #[arg(required = true)]
    pub networks: Vec<String>,
}

pub async fn run(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let mut c = ctx.control().await?;
    let mut failed = false;
    for n in &a.networks {
        match c
            .remove_network(RemoveRequest {
                reference: n.clone(),
                force: false,
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
        anyhow::bail!("some networks could not be removed");
    }
    Ok(())
}
