//! `swarmctl container logs`: one container of the local node (the node behind the control
//! socket), read by its agent without the managers — for when they are unreachable.

use crate::client::{status_err, Context};
use clap::{Args, Subcommand};
use std::io::Write;
use swarm_api::agent::agent_client::AgentClient;
use swarm_api::agent::ContainerLogsRequest;
use swarm_api::dispatcher::LogOptions;

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Fetch the logs of a container on this node (a task id or a unique prefix of one).
    Logs(LogsArgs),
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the log ("all" or a number).
    #[arg(short = 'n', long, default_value = "all", value_parser = crate::commands::service::parse_tail)]
    pub tail: i64,
    /// Show lines since a time (RFC 3339, Unix timestamp, or a duration before now).
    #[arg(long, value_parser = crate::commands::service::parse_log_time)]
    pub since: Option<String>,
    /// Show lines before a time (same forms as --since).
    #[arg(long, value_parser = crate::commands::service::parse_log_time)]
    pub until: Option<String>,
    /// Show the time of each line.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container: a task id or a unique prefix of one.
    pub container: String,
}

pub async fn run(ctx: &Context, cmd: ContainerCmd) -> anyhow::Result<()> {
    let ContainerCmd::Logs(a) = cmd;
    let ch = ctx.channel().await?;
    let mut s = AgentClient::new(ch)
        .container_logs(ContainerLogsRequest {
            id: a.container.clone(),
            options: Some(LogOptions {
                follow: a.follow,
                tail: a.tail,
                since: a.since.unwrap_or_default(),
                until: a.until.unwrap_or_default(),
            }),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    while let Some(l) = s.message().await.map_err(status_err)? {
        let mut text = String::new();
        if a.timestamps {
            text.push_str(&l.time);
            text.push(' ');
        }
        text.push_str(&String::from_utf8_lossy(&l.data));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let res = if l.stream == "stderr" {
            std::io::stderr().write_all(text.as_bytes())
        } else {
            std::io::stdout().write_all(text.as_bytes())
        };
        if res.is_err() {
            return Ok(()); // our reader went away (`| head`)
        }
    }
    Ok(())
}
