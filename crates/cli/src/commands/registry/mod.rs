//! `swarmctl registry ...`: access to the cluster registry for clients without a cluster
//! certificate (Docker, skopeo).

use crate::client::{status_err, Context};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Print a login token for the cluster registry. Use it as the password of
    /// `docker login` / `skopeo --creds USER:TOKEN` (any user name) or as a bearer token.
    LoginToken(LoginTokenArgs),
}

#[derive(Args, Debug)]
pub struct LoginTokenArgs {
    /// Pull only (the default).
    #[arg(long, conflicts_with = "push")]
    pub pull: bool,
    /// Push and pull.
    #[arg(long)]
    pub push: bool,
    /// Lifetime of the token (e.g. 30m, 12h, 7d; at most 366d).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
}

pub async fn run(ctx: &Context, cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::LoginToken(a) => {
            if a.expires.as_secs() == 0 {
                anyhow::bail!("--expires must be at least 1s");
            }
            let scope = if a.push { "push" } else { "pull" };
            let r = ctx
                .control()
                .await?
                .registry_login_token(swarm_api::control::RegistryLoginTokenRequest {
                    scope: scope.into(),
                    expires_secs: a.expires.as_secs(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", r.token);
            Ok(())
        }
    }
}
