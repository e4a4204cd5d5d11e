//! `swarmctl node ...`

mod inspect;
mod ls;
mod promote;
mod ps;
mod rm;
mod update;

use crate::client::{status_err, Context};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes in the cluster.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Display detailed information on one or more nodes.
    Inspect(inspect::InspectArgs),
    /// Update a node (availability, labels).
    Update(update::UpdateArgs),
    /// List tasks running on one or more nodes.
    Ps(ps::PsArgs),
    /// Promote one or more workers to managers.
    Promote(promote::RoleArgs),
    /// Demote one or more managers to workers.
    Demote(promote::RoleArgs),
    /// Remove one or more nodes from the cluster.
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
}

pub async fn run(ctx: &Context, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Ls(a) => ls::run(ctx, a).await,
        NodeCmd::Inspect(a) => inspect::run(ctx, a).await,
        NodeCmd::Update(a) => update::run(ctx, a).await,
        NodeCmd::Ps(a) => ps::run(ctx, a).await,
        NodeCmd::Rm(a) => rm::run(ctx, a).await,
        NodeCmd::Promote(a) => promote::run(ctx, a, swarm_types::spec::NodeRole::Manager).await,
        NodeCmd::Demote(a) => promote::run(ctx, a, swarm_types::spec::NodeRole::Worker).await,
    }
}

pub use crate::client::get_node;

/// What a change to a node's spec decided: write it, or nothing to do (with the message).
pub enum Change {
    Write,
    Unchanged(String),
}

/// Reads the node, lets `change` edit its spec and writes it based on the version it read. A
/// concurrent write to the node (its heartbeat recording a role or address, another
/// operator) makes the write fail as "out of sequence"; then the node is read again and
/// `change` applied to the fresh spec, so nothing written in between is overwritten and the
/// operator does not see a conflict with the cluster's own bookkeeping.
pub async fn change_spec(
    ctx: &Context,
    reference: &str,
    mut change: impl FnMut(&mut swarm_types::spec::NodeSpec) -> anyhow::Result<Change>,
) -> anyhow::Result<Change> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let node = get_node(ctx, reference).await?;
        let mut spec = node.spec.clone();
        if let Change::Unchanged(m) = change(&mut spec)? {
            return Ok(Change::Unchanged(m));
        }
        let res = ctx
            .control()
            .await?
            .update_node(swarm_api::control::UpdateNodeRequest {
                reference: node.id.to_string(),
                version: node.meta.version,
                spec: swarm_api::wire::to_bytes(&spec),
            })
            .await;
        match res {
            Ok(_) => return Ok(Change::Write),
            Err(s) if attempt < ATTEMPTS && is_version_conflict(&s) => continue,
            Err(s) => return Err(status_err(s)),
        }
    }
}

/// The store refused a write based on an older version of the object.
fn is_version_conflict(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::FailedPrecondition && s.message().contains("out of sequence")
}
