//! `swarmctl node inspect NODE...` (`self` means the node serving the request).

use super::get_node;
use crate::client::Context;
use crate::output;
use clap::Args;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Node ids, id prefixes, hostnames, or `self`.
    #[arg(required = true)]
    pub nodes: Vec<String>,
    /// Print the information in a human friendly format (Docker's layout).
    #[arg(long, conflicts_with = "format")]
    pub pretty: bool,
    /// Format each node with a template ('{{.Description.Hostname}}'); fields are those of
    /// the JSON.
    #[arg(short, long)]
    pub format: Option<crate::template::Template>,
}

/// Docker's `node inspect --pretty` text (tab-separated, aligned by the caller). `manager`:
/// the node's raft status and whether it leads, when it is a manager.
pub fn pretty(n: &swarm_types::Node, manager: Option<(&str, bool)>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let d = &n.description;
    let _ = writeln!(out, "ID:\t{}", n.id);
    if !n.spec.labels.is_empty() {
        let _ = writeln!(out, "Labels:");
        for (k, v) in &n.spec.labels {
            let _ = writeln!(out, " - {k}={v}");
        }
    }
    let _ = writeln!(out, "Hostname:\t{}", d.hostname);
    if n.meta.created_at > 0 {
        let _ = writeln!(out, "Joined at:\t{}", output::ago(n.meta.created_at));
    }
    let _ = writeln!(out, "Status:");
    let _ = writeln!(out, " State:\t{}", output::title(n.status.state.as_str()));
    if !n.status.message.is_empty() {
        let _ = writeln!(out, " Message:\t{}", n.status.message);
    }
    let _ = writeln!(
        out,
        " Availability:\t{}",
        output::title(n.spec.availability.as_str())
    );
    if !n.status.addr.is_empty() {
        let _ = writeln!(out, " Address:\t{}", n.status.addr);
    }
    if let (Some(ms), Some((raft, leader))) = (&n.manager_status, manager) {
        let _ = writeln!(out, "Manager Status:");
        let _ = writeln!(out, " Address:\t{}", ms.addr);
        let _ = writeln!(out, " Raft Status:\t{}", output::title(raft));
        let _ = writeln!(out, " Leader:\t{}", if leader { "Yes" } else { "No" });
    }
    let _ = writeln!(out, "Platform:");
    let _ = writeln!(out, " Operating System:\t{}", d.platform.os);
    let _ = writeln!(out, " Architecture:\t{}", d.platform.arch);
    let _ = writeln!(out, "Resources:");
    let _ = writeln!(out, " CPUs:\t{}", d.nano_cpus / 1_000_000_000);
    let _ = writeln!(
        out,
        " Memory:\t{}",
        crate::commands::service::bytes(d.memory_bytes)
    );
    if !d.engine_labels.is_empty() {
        let _ = writeln!(out, "Engine Labels:");
        for (k, v) in &d.engine_labels {
            let _ = writeln!(out, " - {k}={v}");
        }
    }
    let _ = writeln!(out, "Engine Version:\t{}", d.version);
    out
}

pub async fn run(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for r in &a.nodes {
        let r = if r == "self" {
            ctx.status().await?.node_id
        } else {
            r.clone()
        };
        out.push(get_node(ctx, &r).await?);
    }
    if a.pretty {
        let status = ctx.status().await?;
        for (i, n) in out.iter().enumerate() {
            if i > 0 {
                println!();
            }
            let m = status
                .managers
                .iter()
                .find(|m| m.node_id == n.id.as_str())
                .map(|m| {
                    let leader = m.status == "leader";
                    (
                        if leader {
                            "reachable"
                        } else {
                            m.status.as_str()
                        },
                        leader,
                    )
                });
            crate::commands::service::print_aligned(&pretty(n, m))?;
        }
        return Ok(());
    }
    if let Some(t) = &a.format {
        for n in &out {
            println!(
                "{}",
                t.render(&serde_json::to_value(n)?)
                    .map_err(anyhow::Error::msg)?
            );
        }
        return Ok(());
    }
    output::json_array(&out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pretty_node_view() {
        let mut n = swarm_types::Node {
            id: swarm_types::NodeId::new("node1"),
            ..Default::default()
        };
        n.description.hostname = "host-1".into();
        n.description.platform.os = "linux".into();
        n.description.platform.arch = "x86_64".into();
        n.description.nano_cpus = 2_000_000_000;
        n.description.memory_bytes = 24 << 30;
        n.description.version = "0.1.0".into();
        n.status.addr = "198.18.0.1".into();
        n.manager_status = Some(swarm_types::objects::ManagerStatus {
            raft_id: 1,
            addr: "198.18.0.1:4242".into(),
        });
        let text = super::pretty(&n, Some(("reachable", true)));
        use std::io::Write as _;
        let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(1);
        tw.write_all(text.as_bytes()).unwrap();
        tw.flush().unwrap();
        insta::assert_snapshot!(String::from_utf8(tw.into_inner().unwrap()).unwrap());
    }
}
