//! `swarmctl cluster ...`

use crate::client::{decode_object, status_err, Context};
use crate::output;
use anyhow::bail;
use clap::{Args, Subcommand};
use swarm_api::control::{GetRequest, RotateJoinTokenRequest};
use swarm_types::{Cluster, Object};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Display the cluster object (the CA key is never shown).
    Inspect,
    /// Show or rotate the join token of a role.
    JoinToken(JoinTokenArgs),
    /// Certificate authority operations.
    #[command(subcommand)]
    Ca(CaCmd),
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Write an admin client bundle (ca.pem, cert.pem, key.pem) for swarmctl over TCP.
    ClientBundle {
        /// Directory to create (must not exist or be empty).
        dir: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    /// worker or manager
    pub role: String,
    /// Only display the token.
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate the token (nodes already joined are not affected).
    #[arg(long)]
    pub rotate: bool,
}

pub async fn run(ctx: &Context, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Inspect => output::json_array(&[get_cluster(ctx).await?]),
        ClusterCmd::JoinToken(a) => join_token(ctx, a).await,
        ClusterCmd::Ca(CaCmd::ClientBundle { dir }) => client_bundle(ctx, &dir).await,
    }
}

async fn client_bundle(ctx: &Context, dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty; pick a new directory", dir.display());
    }
    let (key_pem, csr) = swarm_api::tls::new_key_and_csr()?;
    let resp = ctx
        .control()
        .await?
        .issue_client_cert(swarm_api::control::IssueClientCertRequest { csr })
        .await
        .map_err(status_err)?
        .into_inner();
    std::fs::create_dir_all(dir)?;
    for (name, data) in [
        ("ca.pem", &resp.ca_cert_pem),
        ("cert.pem", &resp.cert_pem),
        ("key.pem", &key_pem),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(name))?;
        f.write_all(data.as_bytes())?;
    }
    println!(
        "client bundle written to {}; use it with --tls-dir {} -H tcp://MANAGER:4242",
        dir.display(),
        dir.display()
    );
    Ok(())
}

async fn get_cluster(ctx: &Context) -> anyhow::Result<Cluster> {
    let resp = ctx
        .control()
        .await?
        .get_cluster(GetRequest {
            reference: String::new(),
            stale: ctx.stale,
        })
        .await
        .map_err(status_err)?;
    match decode_object(&resp.get_ref().object)? {
        Object::Cluster(c) => Ok(c),
        _ => bail!("server returned something other than the cluster"),
    }
}

async fn join_token(ctx: &Context, a: JoinTokenArgs) -> anyhow::Result<()> {
    let worker = match a.role.as_str() {
        "worker" => true,
        "manager" => false,
        other => bail!("unknown role {other:?}: use worker or manager"),
    };
    let cluster = if a.rotate {
        let resp = ctx
            .control()
            .await?
            .rotate_join_token(RotateJoinTokenRequest {
                worker,
                manager: !worker,
            })
            .await
            .map_err(status_err)?;
        match decode_object(&resp.get_ref().object)? {
            Object::Cluster(c) => c,
            _ => bail!("server returned something other than the cluster"),
        }
    } else {
        get_cluster(ctx).await?
    };
    let token = if worker {
        &cluster.join_tokens.worker
    } else {
        &cluster.join_tokens.manager
    };
    if a.quiet {
        println!("{token}");
        return Ok(());
    }
    if a.rotate {
        println!("Successfully rotated {} join token.\n", a.role);
    }
    let status = ctx.status().await?;
    let addr = status
        .managers
        .iter()
        .find(|m| m.node_id == status.node_id)
        .map(|m| m.addr.clone())
        .unwrap_or_else(|| "MANAGER_IP:4242".into());
    println!(
        "To add a {} to this cluster, run the following command:\n\n    swarmd --join {addr} --token {token}\n",
        a.role
    );
    Ok(())
}
