//! `swarmctl node promote NODE...` / `swarmctl node demote NODE...`: change a node's role.
//! Promotion makes a worker a Raft voter (added as a learner, caught up, then promoted);
//! demotion removes a manager from Raft (a leader steps down first). A demotion that would
//! lose quorum is refused.

use super::{change_spec, Change};
use crate::client::Context;
use clap::Args;
use swarm_types::spec::NodeRole;

#[derive(Args, Debug)]
pub struct RoleArgs {
    /// Node ids, id prefixes or hostnames.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

pub async fn run(ctx: &Context, a: RoleArgs, role: NodeRole) -> anyhow::Result<()> {
    let mut failed = false;
    for n in &a.nodes {
        let res = async {
            let change = change_spec(ctx, n, |spec| {
                if spec.role == role {
                    return Ok(Change::Unchanged(format!(
                        "Node {n} is already a {}",
                        role.as_str()
                    )));
                }
                spec.role = role;
                Ok(Change::Write)
            })
            .await?;
            if let Change::Unchanged(m) = change {
                println!("{m}");
                return anyhow::Ok(());
            }
            match role {
                NodeRole::Manager => println!("Node {n} promoted to a manager in the cluster."),
                NodeRole::Worker => println!("Manager {n} demoted in the cluster."),
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = res {
            eprintln!("swarmctl: {e:#}");
            failed = true;
        }
    }
    if failed {
        anyhow::bail!("some nodes could not be changed");
    }
    Ok(())
}
