//! `swarmctl image ...`: the image store of the node behind the control socket.

use crate::client::{status_err, Context};
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use swarm_api::agent::agent_client::AgentClient;
use swarm_api::agent::{ImportChunk, ListImagesRequest};

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import a rootfs tarball (docker import semantics) as NAME:TAG into this node's store.
    Import(ImportArgs),
    /// List the images of this node's store.
    #[command(alias = "list")]
    Ls(LsArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball of a root filesystem (plain or gzip); `-` reads stdin.
    pub file: String,
    /// Name to tag it with, e.g. busybox:latest.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: Format,
}

pub async fn run(ctx: &Context, cmd: ImageCmd) -> anyhow::Result<()> {
    let ch = ctx.channel().await?;
    let mut client = AgentClient::new(ch).max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES);
    match cmd {
        ImageCmd::Import(a) => {
            if a.name.trim().is_empty() || a.name.contains(char::is_whitespace) {
                anyhow::bail!("invalid image name {:?}: expected NAME[:TAG]", a.name);
            }
            let data = if a.file == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                v
            } else {
                std::fs::read(&a.file).map_err(|e| anyhow::anyhow!("read {}: {e}", a.file))?
            };
            let name = a.name.clone();
            let chunks: Vec<ImportChunk> = data
                .chunks(1 << 20)
                .enumerate()
                .map(|(i, c)| ImportChunk {
                    name: if i == 0 { name.clone() } else { String::new() },
                    data: c.to_vec(),
                })
                .collect();
            let chunks = if chunks.is_empty() {
                vec![ImportChunk { name, data: vec![] }]
            } else {
                chunks
            };
            let resp = client
                .import_image(tokio_stream::iter(chunks))
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", resp.digest);
        }
        ImageCmd::Ls(a) => {
            let resp = client
                .list_images(ListImagesRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            if a.quiet {
                for i in &resp.images {
                    println!("{}", i.name);
                }
            } else if a.format == Format::Json {
                output::json_lines(
                    &resp
                        .images
                        .iter()
                        .map(|i| serde_json::json!({"Repository": i.name, "Digest": i.digest}))
                        .collect::<Vec<_>>(),
                )?;
            } else {
                output::table(
                    &["NAME", "DIGEST"],
                    &resp
                        .images
                        .iter()
                        .map(|i| vec![i.name.clone(), i.digest.clone()])
                        .collect::<Vec<_>>(),
                )?;
            }
        }
    }
    Ok(())
}
