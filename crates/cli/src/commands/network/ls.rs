//! `swarmctl network ls`: docker's columns (`NETWORK ID NAME DRIVER SCOPE`) and JSON keys.

use crate::client::{collect, status_err, Context};
use crate::output::ListOutput;
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use swarm_types::{Network, Object};

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub out: ListOutput,
}

pub use super::inspect::scope;

pub async fn run(ctx: &Context, a: LsArgs) -> anyhow::Result<()> {
    let mut c = ctx.control().await?;
    let mut nets: Vec<Network> = collect(
        c.list_networks(ctx.list_request())
            .await
            .map_err(status_err)?
            .into_inner(),
    )
    .await?
    .into_iter()
    .filter_map(|o| match o {
        Object::Network(n) => Some(n),
        _ => None,
    })
    .collect();
    nets.sort_by(|a, b| (&a.spec.name, &a.id).cmp(&(&b.spec.name, &b.id)));
    let filters = output::Filters::parse(&a.out.filters, &["id", "name", "label", "driver"])?;
    nets.retain(|n| {
        filters.keep(|k, v| match k {
            "id" => n.id.as_str().starts_with(v),
            "name" => n.spec.name.starts_with(v),
            "label" => output::label_matches(&n.spec.labels, v),
            _ => n.spec.driver.as_str() == v,
        })
    });
    if a.out.quiet {
        for n in &nets {
            println!(
                "{}",
                if a.out.no_trunc {
                    n.id.as_str()
                } else {
                    n.id.short()
                }
            );
        }
        return Ok(());
    }
    render(&mut std::io::stdout(), &nets, &a.out)
}

/// What `network ls` prints (tests render it into memory).
pub fn render(
    w: &mut dyn std::io::Write,
    nets: &[Network],
    out: &ListOutput,
) -> anyhow::Result<()> {
    match &out.format {
        f @ (Format::Json | Format::Template(_)) => output::structured_to(
            w,
            f,
            &nets
                .iter()
                .map(|n| {
                    let labels = n
                        .spec
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    json!({
                        "CreatedAt": crate::commands::network::inspect::created(n),
                        "Driver": n.spec.driver.as_str(),
                        "ID": if out.no_trunc { n.id.as_str() } else { n.id.short() },
                        "IPv6": "false",
                        "Internal": n.spec.internal.to_string(),
                        "Labels": labels,
                        "Name": n.spec.name,
                        "Scope": scope(n),
                    })
                })
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table_to(
            w,
            &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            &nets
                .iter()
                .map(|n| {
                    vec![
                        if out.no_trunc {
                            n.id.to_string()
                        } else {
                            n.id.short().to_string()
                        },
                        n.spec.name.clone(),
                        n.spec.driver.as_str().to_string(),
                        scope(n).to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(
        id: &str,
        name: &str,
        driver: swarm_types::network::NetworkDriver,
        internal: bool,
    ) -> Network {
        Network {
            id: swarm_types::NetworkId::new(id),
            meta: Default::default(),
            spec: swarm_types::network::NetworkSpec {
                name: name.into(),
                labels: [("team".to_string(), "a".to_string())].into(),
                driver,
                ipam: Default::default(),
                attachable: false,
                internal,
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
            ip_range: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        }
    }

    #[test]
    fn network_ls_table_and_template() {
        use swarm_types::network::NetworkDriver;
        let nets = vec![
            net(
                "backend000000000000000001",
                "backend",
                NetworkDriver::Overlay,
                true,
            ),
            net(
                "local00000000000000000002",
                "local",
                NetworkDriver::Bridge,
                false,
            ),
        ];
        let mut all = Vec::new();
        for f in [
            "table",
            "{{.Name}} {{.Driver}} {{.Scope}} internal={{.Internal}}",
        ] {
            let out = ListOutput {
                quiet: false,
                filters: Vec::new(),
                no_trunc: false,
                format: f.parse().unwrap(),
            };
            render(&mut all, &nets, &out).unwrap();
            all.push(b'\n');
        }
        insta::assert_snapshot!(String::from_utf8(all).unwrap());
    }
}
