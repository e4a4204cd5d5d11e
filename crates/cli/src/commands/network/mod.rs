//! `swarmctl network ...`, and the `--network` value syntax of `service create`.

mod create;
mod inspect;
mod ls;
mod rm;

use crate::client::{decode_object, status_err, Context};
use clap::Subcommand;
use swarm_api::control::GetRequest;
use swarm_types::spec::NetworkAttachmentConfig;
use swarm_types::{Network, Object};

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    Create(create::CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(inspect::InspectArgs),
    /// Remove one or more networks (refused while a service uses them).
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
}

pub async fn run(ctx: &Context, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create(a) => create::run(ctx, a).await,
        NetworkCmd::Ls(a) => ls::run(ctx, a).await,
        NetworkCmd::Inspect(a) => inspect::run(ctx, a).await,
        NetworkCmd::Rm(a) => rm::run(ctx, a).await,
    }
}

/// Fetches one network by id, id prefix or name.
pub async fn get_network(ctx: &Context, reference: &str) -> anyhow::Result<Network> {
    let resp = ctx
        .control()
        .await?
        .get_network(GetRequest {
            reference: reference.to_string(),
            stale: ctx.stale,
        })
        .await
        .map_err(status_err)?;
    match decode_object(&resp.get_ref().object)? {
        Object::Network(n) => Ok(n),
        _ => anyhow::bail!("server returned something other than a network"),
    }
}

/// Docker's `--network` value: `NAME`, or `name=NAME[,alias=ALIAS...]` (`target=` works for
/// `name=`).
pub fn parse_attachment(s: &str) -> Result<NetworkAttachmentConfig, String> {
    if !s.contains('=') {
        if s.is_empty() || s.contains(',') {
            return Err(format!(
                "invalid --network {s:?}: expected NAME or name=NAME,alias=ALIAS"
            ));
        }
        return Ok(NetworkAttachmentConfig {
            target: s.to_string(),
            aliases: vec![],
        });
    }
    let mut out = NetworkAttachmentConfig::default();
    for field in s.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            format!("invalid --network field {field:?}: expected KEY=VALUE (name, alias)")
        })?;
        match k.trim() {
            "name" | "target" => {
                if !out.target.is_empty() {
                    return Err("--network names its network once".into());
                }
                out.target = v.to_string();
            }
            "alias" => out.aliases.push(v.to_string()),
            "driver-opt" | "link-local-ip" | "ip" | "ip6" | "mac-address" => {
                return Err(format!(
                    "--network {k}=... is not supported; addresses are allocated by the cluster"
                ))
            }
            other => {
                return Err(format!(
                    "unknown --network field {other:?}: use name=NAME and alias=ALIAS"
                ))
            }
        }
    }
    if out.target.is_empty() {
        return Err(format!("--network {s:?} names no network: add name=NAME"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_values_parse_like_dockers() {
        let a = parse_attachment("front").unwrap();
        assert_eq!(a.target, "front");
        let a = parse_attachment("name=back,alias=db,alias=pg").unwrap();
        assert_eq!(a.target, "back");
        assert_eq!(a.aliases, vec!["db", "pg"]);
        assert!(parse_attachment("alias=db")
            .unwrap_err()
            .contains("names no network"));
        assert!(parse_attachment("name=a,colour=red")
            .unwrap_err()
            .contains("unknown"));
        assert!(parse_attachment("name=a,ip=10.0.0.3").is_err());
        assert!(parse_attachment("").is_err());
    }
}
