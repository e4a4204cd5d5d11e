//! `swarmctl node ls`

use crate::client::{collect, status_err, Context};
use crate::output::ListOutput;
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use swarm_types::{Node, Object};

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub out: ListOutput,
}

pub async fn run(ctx: &Context, a: LsArgs) -> anyhow::Result<()> {
    let status = ctx.status().await?;
    let mut c = ctx.control().await?;
    let mut nodes: Vec<Node> = collect(
        c.list_nodes(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?
    .into_iter()
    .filter_map(|o| match o {
        Object::Node(n) => Some(n),
        _ => None,
    })
    .collect();
    nodes.sort_by(|a, b| (&a.description.hostname, &a.id).cmp(&(&b.description.hostname, &b.id)));
    let filters = output::Filters::parse(
        &a.out.filters,
        &["id", "name", "role", "membership", "label", "node.label"],
    )?;
    nodes.retain(|n| {
        filters.keep(|k, v| match k {
            "id" => n.id.as_str().starts_with(v),
            "name" => n.description.hostname.starts_with(v),
            "role" => n.spec.role.as_str() == v,
            // A node is a member once it joined (there is no pending acceptance).
            "membership" => v == "accepted",
            "label" => output::label_matches(&n.description.engine_labels, v),
            _ => output::label_matches(&n.spec.labels, v),
        })
    });
    if a.out.quiet {
        for n in &nodes {
            println!("{}", n.id);
        }
        return Ok(());
    }
    let mgr: HashMap<&str, &str> = status
        .managers
        .iter()
        .map(|m| (m.node_id.as_str(), m.status.as_str()))
        .collect();
    render(
        &mut std::io::stdout(),
        &nodes,
        &mgr,
        &status.node_id,
        &a.out,
    )
}

/// The table (or JSON / template lines) of `node ls`: `mgr` gives each manager's raft status,
/// `me` the node serving the request (marked `*`). Tests render it into memory.
pub fn render(
    w: &mut dyn std::io::Write,
    nodes: &[Node],
    mgr: &HashMap<&str, &str>,
    me: &str,
    out: &ListOutput,
) -> anyhow::Result<()> {
    let rows: Vec<(String, String, String, String, String, bool, String)> = nodes
        .iter()
        .map(|n| {
            let ms = mgr
                .get(n.id.as_str())
                .map(|s| output::title(s))
                .unwrap_or_default();
            (
                n.id.to_string(),
                n.description.hostname.clone(),
                output::title(n.status.state.as_str()),
                output::title(n.spec.availability.as_str()),
                ms,
                n.id.as_str() == me,
                n.description.version.clone(),
            )
        })
        .collect();
    match &out.format {
        f @ (Format::Json | Format::Template(_)) => output::structured_to(
            w,
            f,
            &rows
                .iter()
                .map(|r| json!({"ID": r.0, "Hostname": r.1, "Status": r.2, "Availability": r.3, "ManagerStatus": r.4, "Self": r.5, "EngineVersion": r.6}))
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table_to(
            w,
            &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"],
            &rows
                .into_iter()
                .map(|r| {
                    let id = if r.5 { format!("{} *", r.0) } else { r.0 };
                    vec![id, r.1, r.2, r.3, r.4, r.6]
                })
                .collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::objects::{ManagerStatus, NodeState};
    use swarm_types::spec::{Availability, NodeRole};

    fn node(id: &str, host: &str, role: NodeRole, state: NodeState, av: Availability) -> Node {
        let mut n = Node {
            id: swarm_types::NodeId::new(id),
            role,
            ..Default::default()
        };
        n.description.hostname = host.into();
        n.description.version = "0.1.0".into();
        n.spec.role = role;
        n.spec.availability = av;
        n.status.state = state;
        if role == NodeRole::Manager {
            n.manager_status = Some(ManagerStatus {
                raft_id: 1,
                addr: format!("{host}:4242"),
            });
        }
        n
    }

    #[test]
    fn node_ls_table_and_json() {
        let nodes = vec![
            node(
                "aaaa1111",
                "m1",
                NodeRole::Manager,
                NodeState::Ready,
                Availability::Active,
            ),
            node(
                "bbbb2222",
                "m2",
                NodeRole::Manager,
                NodeState::Down,
                Availability::Active,
            ),
            node(
                "cccc3333",
                "w1",
                NodeRole::Worker,
                NodeState::Ready,
                Availability::Drain,
            ),
        ];
        let mgr: HashMap<&str, &str> = [("aaaa1111", "leader"), ("bbbb2222", "unreachable")].into();
        let mut all = Vec::new();
        for f in ["table", "json", "table {{.Hostname}}\\t{{.ManagerStatus}}"] {
            let out = ListOutput {
                quiet: false,
                filters: Vec::new(),
                no_trunc: false,
                format: f.parse().unwrap(),
            };
            render(&mut all, &nodes, &mgr, "aaaa1111", &out).unwrap();
            all.push(b'\n');
        }
        insta::assert_snapshot!(String::from_utf8(all).unwrap());
    }
}
