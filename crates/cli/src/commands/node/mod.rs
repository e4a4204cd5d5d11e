//! `swarmctl node ...`

mod inspect;
mod ls;
mod promote;
mod ps;
mod rm;
mod update;

use crate::client::{decode_object, status_err, Context};
use clap::Subcommand;
use swarm_api::control::GetRequest;
use swarm_types::{Node, Object};

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

/// Fetches one node by id, id prefix or hostname.
pub async fn get_node(ctx: &Context, reference: &str) -> anyhow::Result<Node> {
    let resp = ctx
        .control()
        .await?
        .get_node(GetRequest {
            reference: reference.to_string(),
            stale: ctx.stale,
        })
        .await
        .map_err(status_err)?;
    match decode_object(&resp.get_ref().object)? {
        Object::Node(n) => Ok(n),
        _ => anyhow::bail!("server returned something other than a node"),
    }
}

/// Writes `spec` as the node's new spec, based on the version `node` was read at (a
/// concurrent change is refused rather than overwritten).
pub async fn update_spec(
    ctx: &Context,
    node: &Node,
    spec: &swarm_types::spec::NodeSpec,
) -> anyhow::Result<()> {
    ctx.control()
        .await?
        .update_node(swarm_api::control::UpdateNodeRequest {
            reference: node.id.to_string(),
            version: node.meta.version,
            spec: swarm_api::wire::to_bytes(spec),
        })
        .await
        .map_err(status_err)?;
    Ok(())
}
