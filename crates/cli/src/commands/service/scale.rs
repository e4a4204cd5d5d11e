//! `swarmctl service scale SERVICE=REPLICAS...`

use crate::client::{decode_object, status_err, Context};
use crate::parse;
use clap::Args;
use swarm_api::control::ScaleServiceRequest;

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// SERVICE=REPLICAS pairs.
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub pairs: Vec<String>,
    #[command(flatten)]
    pub detach: super::converge::DetachFlag,
}

pub async fn run(ctx: &Context, a: ScaleArgs) -> anyhow::Result<()> {
    // Parse everything first: a typo in the last pair must not leave the first ones scaled.
    let mut parsed = Vec::new();
    for p in &a.pairs {
        let (name, n) = p.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("invalid scale specifier {p:?}: expected SERVICE=REPLICAS, e.g. web=5")
        })?;
        let n = parse::replicas(n).map_err(anyhow::Error::msg)?;
        parsed.push((name.to_string(), n));
    }
    let mut c = ctx.control().await?;
    let mut failed = false;
    let mut scaled = Vec::new();
    for (name, n) in parsed {
        match c
            .scale_service(ScaleServiceRequest {
                reference: name.clone(),
                replicas: n,
            })
            .await
        {
            Ok(r) => {
                println!("{name} scaled to {n}");
                scaled.push(decode_object(&r.get_ref().object)?);
            }
            Err(e) => {
                eprintln!("swarmctl: {name}: {:#}", status_err(e));
                failed = true;
            }
        }
    }
    // Then follow each (as docker does, one after the other).
    if a.detach.follow(false) {
        for obj in &scaled {
            if let Err(e) = super::after_write(
                ctx,
                obj,
                &a.detach,
                false,
                super::converge::Operation::Scale,
                "scaled",
            )
            .await
            {
                eprintln!("swarmctl: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some services could not be scaled");
    }
    Ok(())
}
