//! `swarmctl network create [OPTIONS] NETWORK`

use crate::client::{decode_object, status_err, Context};
use crate::parse;
use anyhow::bail;
use clap::Args;
use swarm_api::control::CreateNetworkRequest;
use swarm_types::network::{IpamSpec, Ipv4Net, NetworkDriver, NetworkSpec};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver: bridge (a segment per host) or overlay (one segment across the hosts).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format (default: the next free one from the cluster's address pools).
    #[arg(long)]
    pub subnet: Option<Ipv4Net>,
    /// Gateway of the subnet (default: its first address).
    #[arg(long)]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// Allocate task addresses from this part of the subnet only.
    #[arg(long)]
    pub ip_range: Option<Ipv4Net>,
    /// Let standalone containers attach (recorded; the cluster runs services only).
    #[arg(long)]
    pub attachable: bool,
    /// Restrict external access to the network: its tasks reach only each other.
    #[arg(long)]
    pub internal: bool,
    /// Network labels (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Driver options (KEY=VALUE); none is supported yet, each is refused with the reason.
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    /// Network name.
    pub name: String,
}

/// The spec `network create` sends, validated locally first.
pub fn build(a: &CreateArgs) -> anyhow::Result<NetworkSpec> {
    if let Some(o) = a.opts.first() {
        let (k, _) = parse::key_value(o).map_err(anyhow::Error::msg)?;
        match k.as_str() {
            "encrypted" => bail!(
                "--opt encrypted is not supported yet: overlay traffic between hosts is not encrypted; leave it out"
            ),
            other => bail!("unknown driver option {other:?}: no --opt is supported yet"),
        }
    }
    let driver: NetworkDriver = a.driver.parse().map_err(anyhow::Error::msg)?;
    let spec = NetworkSpec {
        name: a.name.clone(),
        labels: parse::labels(&a.labels).map_err(anyhow::Error::msg)?,
        driver,
        ipam: IpamSpec {
            subnet: a.subnet,
            gateway: a.gateway,
            ip_range: a.ip_range,
        },
        attachable: a.attachable,
        internal: a.internal,
    };
    spec.validate()?;
    Ok(spec)
}

pub async fn run(ctx: &Context, a: CreateArgs) -> anyhow::Result<()> {
    let spec = build(&a)?;
    let resp = ctx
        .control()
        .await?
        .create_network(CreateNetworkRequest {
            spec: swarm_api::wire::to_bytes(&spec),
        })
        .await
        .map_err(status_err)?;
    let obj = decode_object(&resp.get_ref().object)?;
    println!("{}", obj.id());
    Ok(())
}
