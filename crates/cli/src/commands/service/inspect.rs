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
    /// Print the information in a human friendly format (Docker's layout).
    #[arg(long, conflicts_with = "format")]
    pub pretty: bool,
    /// Format each service with a template ('{{.Spec.Name}}'); fields are those of the JSON.
    #[arg(short, long)]
    pub format: Option<crate::template::Template>,
}

pub async fn run(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for r in &a.services {
        out.push(get_service(ctx, r).await?);
    }
    if a.pretty {
        let nets = network_names(ctx).await.unwrap_or_default();
        let name = |id: &str| nets.get(id).cloned().unwrap_or_else(|| id.to_string());
        for (i, s) in out.iter().enumerate() {
            if i > 0 {
                println!();
            }
            super::pretty::print(&super::pretty::pretty(s, &name))?;
        }
        return Ok(());
    }
    if let Some(t) = &a.format {
        for s in &out {
            println!(
                "{}",
                t.render(&serde_json::to_value(s)?)
                    .map_err(anyhow::Error::msg)?
            );
        }
        return Ok(());
    }
    output::json_array(&out)
}

/// Network names by id (the spec stores ids).
async fn network_names(ctx: &Context) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let objs = crate::client::collect(
        ctx.control()
            .await?
            .list_networks(ctx.list_request())
            .await
            .map_err(crate::client::status_err)?
            .into_inner(),
    )
    .await?;
    Ok(objs
        .into_iter()
        .filter_map(|o| match o {
            swarm_types::Object::Network(n) => Some((n.id.to_string(), n.spec.name)),
            _ => None,
        })
        .collect())
}
