//! One module per noun, one file per verb (`service/create.rs`, ...).

pub mod cluster;
pub mod container;
pub mod events;
pub mod image;
pub mod network;
pub mod node;
pub mod registry;
pub mod service;
pub mod volume;

use crate::client::Context;

/// `swarmctl version`: the client's version and, when reachable, the server's.
pub async fn version(ctx: &Context) -> anyhow::Result<()> {
    println!("Client:\n Version:\t{}", swarm_api::VERSION);
    match ctx.status().await {
        Ok(s) => println!(
            "Server:\n Version:\t{}\n Node ID:\t{}\n Cluster ID:\t{}",
            s.version, s.node_id, s.cluster_id
        ),
        Err(e) => println!("Server:\n ({:#})", ctx.explain(e).await),
    }
    Ok(())
}
