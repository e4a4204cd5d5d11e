//! `swarmctl service rollback [--to-version N] SERVICE`: back to the previous spec (docker), or
//! to any kept version (our extension; see `service history`).

use crate::client::{decode_object, status_err, Context};
use clap::Args;
use swarm_api::control::RollbackServiceRequest;

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Spec version to return to (see `swarmctl service history`); default: the previous one.
    #[arg(long, value_name = "N")]
    pub to_version: Option<u64>,
    /// Print only the service id (not the name as given, nor the stderr line on following
    /// its tasks).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub detach: super::converge::DetachFlag,
    /// Service id, id prefix or name.
    pub service: String,
}

pub async fn run(ctx: &Context, a: RollbackArgs) -> anyhow::Result<()> {
    if a.to_version == Some(0) {
        anyhow::bail!(
            "invalid --to-version 0: versions start at 1 (see `swarmctl service history {}`)",
            a.service
        );
    }
    rollback(
        ctx,
        &a.service,
        a.to_version.unwrap_or(0),
        a.quiet,
        &a.detach,
    )
    .await
}

/// Calls `RollbackService` and prints the service reference as docker does (the id with
/// `quiet`).
pub async fn rollback(
    ctx: &Context,
    service: &str,
    to_version: u64,
    quiet: bool,
    detach: &super::converge::DetachFlag,
) -> anyhow::Result<()> {
    let resp = ctx
        .control()
        .await?
        .rollback_service(RollbackServiceRequest {
            reference: service.to_string(),
            to_version,
        })
        .await
        .map_err(status_err)?;
    let obj = decode_object(&resp.get_ref().object)?;
    if quiet {
        println!("{}", obj.id());
    } else {
        println!("{service}");
    }
    super::after_write(
        ctx,
        &obj,
        detach,
        quiet,
        super::converge::Operation::Rollback,
        "rolled back",
    )
    .await
}
