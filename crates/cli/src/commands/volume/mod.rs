//! `swarmctl volume ...`: the named volumes of one node (volumes are local to each node, as
//! with Docker's `local` driver in a swarm): the node behind the control socket, or the one
//! `--node` names, reached through the manager.

use crate::client::{status_err, Context, NodeAgent};
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use swarm_api::agent::{
    InspectVolumesRequest, ListVolumesRequest, PruneVolumesRequest, RemoveVolumesRequest,
    VolumeInfo,
};

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// List the volumes of a node.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes (refused while a container uses one; all or none).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no container uses.
    Prune(PruneArgs),
}

/// Which node: volumes live on the node that ran the tasks using them.
#[derive(Args, Debug, Clone)]
pub struct NodeArg {
    /// Node (id, id prefix or hostname) whose volumes to manage; default: the node behind
    /// the control socket (-H). Another node is reached through the manager behind -H.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output: name=PREFIX, label=KEY[=VALUE], driver=local, dangling=true|false
    /// (no container uses it).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format: table, json, or a template ('{{.Name}}\t{{.ID}}'; 'table …' adds a header).
    #[arg(long, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Volume names.
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Volume names.
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub node: NodeArg,
    /// Do not ask for confirmation (asked only when stdin is a terminal).
    #[arg(short, long)]
    pub force: bool,
}

/// A client for the volumes of the node `--node` names (default: the one behind the socket).
async fn client(ctx: &Context, node: &NodeArg) -> anyhow::Result<NodeAgent> {
    ctx.node_agent(node.node.as_deref()).await
}

fn labels_text(v: &VolumeInfo) -> String {
    let mut l: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    l.join(",")
}

/// Docker's `volume inspect` object.
fn inspect_json(v: &VolumeInfo) -> serde_json::Value {
    let sorted = |m: &std::collections::HashMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": sorted(&v.labels),
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": sorted(&v.options),
        "Scope": "local",
        "UsageData": {"RefCount": v.used_by.len(), "Size": -1},
    })
}

fn confirm() -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    print!("WARNING! This will remove all volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub async fn run(ctx: &Context, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Ls(a) => {
            let vols = client(ctx, &a.node)
                .await?
                .list_volumes(ListVolumesRequest {})
                .await
                .map_err(status_err)?
                .into_inner()
                .volumes;
            let filters =
                output::Filters::parse(&a.filters, &["name", "label", "driver", "dangling"])?;
            let vols: Vec<_> = vols
                .into_iter()
                .filter(|v| {
                    filters.keep(|k, f| match k {
                        "name" => v.name.starts_with(f),
                        "label" => {
                            let labels: std::collections::BTreeMap<String, String> =
                                v.labels.clone().into_iter().collect();
                            output::label_matches(&labels, f)
                        }
                        "driver" => v.driver == f,
                        _ => v.used_by.is_empty() == (f == "true"),
                    })
                })
                .collect();
            if a.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
            } else if a.format != Format::Table {
                output::structured(
                    &a.format,
                    &vols
                        .iter()
                        .map(|v| {
                            serde_json::json!({
                                "Driver": v.driver,
                                "Labels": labels_text(v),
                                "Links": v.used_by.len().to_string(),
                                "Mountpoint": v.mountpoint,
                                "Name": v.name,
                                "Scope": "local",
                                "Size": "N/A",
                            })
                        })
                        .collect::<Vec<_>>(),
                )?;
            } else {
                output::table(
                    &["DRIVER", "VOLUME NAME"],
                    &vols
                        .iter()
                        .map(|v| vec![v.driver.clone(), v.name.clone()])
                        .collect::<Vec<_>>(),
                )?;
            }
        }
        VolumeCmd::Inspect(a) => {
            let vols = client(ctx, &a.node)
                .await?
                .inspect_volumes(InspectVolumesRequest { names: a.names })
                .await
                .map_err(status_err)?
                .into_inner()
                .volumes;
            output::json_array(&vols.iter().map(inspect_json).collect::<Vec<_>>())?;
        }
        VolumeCmd::Rm(a) => {
            let removed = client(ctx, &a.node)
                .await?
                .remove_volumes(RemoveVolumesRequest { names: a.names })
                .await
                .map_err(status_err)?
                .into_inner()
                .removed;
            for n in removed {
                println!("{n}");
            }
        }
        VolumeCmd::Prune(a) => {
            let mut c = client(ctx, &a.node).await?;
            if !a.force && !confirm()? {
                anyhow::bail!("prune cancelled: nothing removed");
            }
            let r = c
                .prune_volumes(PruneVolumesRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            if !r.removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &r.removed {
                    println!("{n}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                super::image::human_bytes(r.bytes_freed)
            );
        }
    }
    Ok(())
}
