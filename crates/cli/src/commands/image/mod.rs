//! `swarmctl image ...`: the image store of the node behind the control socket.

use crate::client::{status_err, Context};
use crate::output::{self, Format};
use clap::{Args, Subcommand};

mod build;
mod build_progress;
use swarm_api::agent::agent_client::AgentClient;
use swarm_api::agent::{
    GcReport, ImageInfo, ImportChunk, ListImagesRequest, PruneImagesRequest, RemoveImagesRequest,
};

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Build an image from a Dockerfile (docker build): the context directory is sent to the
    /// node behind the socket (or the one --node names) and built into its image store.
    Build(Box<build::BuildArgs>),
    /// Import a rootfs tarball (docker import semantics) as NAME:TAG into this node's store.
    Import(ImportArgs),
    /// List the images of this node's store.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove images from this node's store (refused while a container uses one); the data
    /// nothing uses any more is deleted.
    #[command(alias = "remove", alias = "rmi")]
    Rm(RmArgs),
    /// Delete unused data from this node's store: blobs of untagged images and unpacked layers
    /// no image or container uses (with --all, also every image no container uses).
    Prune(PruneArgs),
    /// Pull an image into this node's store: NAME[:TAG] from the cluster registry, or
    /// HOST[:PORT]/NAME[:TAG] from that registry.
    Pull {
        /// Image reference.
        name: String,
    },
    /// Push an image of this node's store to the cluster registry (as NAME, or as TARGET,
    /// which may name another registry). Needs a manager's node (workers may only pull);
    /// elsewhere use skopeo or docker with `swarmctl registry login-token --push`.
    Push {
        /// Local image.
        name: String,
        /// Reference to push it as (default: NAME).
        target: Option<String>,
    },
    /// Show images of this node's store as JSON (Docker's keys: Id, RepoTags, Config, RootFS,
    /// Size; Manifest is the manifest digest services pin to).
    Inspect {
        /// NAME[:TAG] or manifest digest.
        #[arg(required = true, value_name = "IMAGE")]
        names: Vec<String>,
    },
    /// Give an image of this node's store another name (e.g. before `image push` to a
    /// repository of the cluster registry).
    Tag {
        /// Existing image: NAME[:TAG] or manifest digest.
        source: String,
        /// New name: NAME[:TAG].
        target: String,
    },
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Images to remove: NAME[:TAG] (or a manifest digest, for all of its tags).
    #[arg(required = true, value_name = "IMAGE")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Also remove every image no container uses, not only unused data.
    #[arg(short, long)]
    pub all: bool,
    /// Also forget the build cache: the step images `image build` keeps so that a rebuild
    /// reuses them (the next build runs every step).
    #[arg(long)]
    pub build_cache: bool,
    /// Do not ask for confirmation (asked only when stdin is a terminal).
    #[arg(short, long)]
    pub force: bool,
}

/// Docker's unit for reclaimed space (decimal: kB, MB, GB).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
            .replace(".000", "")
            .to_string()
    }
}

fn print_removed(untagged: &[ImageInfo], gc: Option<&GcReport>) {
    for i in untagged {
        println!("Untagged: {}", i.name);
    }
    let gc = gc.cloned().unwrap_or_default();
    if gc.blobs_removed + gc.layers_removed > 0 {
        println!(
            "Deleted: {} blob{}, {} unpacked layer{}",
            gc.blobs_removed,
            if gc.blobs_removed == 1 { "" } else { "s" },
            gc.layers_removed,
            if gc.layers_removed == 1 { "" } else { "s" },
        );
    }
    println!("Total reclaimed space: {}", human_bytes(gc.bytes_freed));
}

/// Docker's prune question, asked only of a person at a terminal.
fn confirm(all: bool, build_cache: bool) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let what = if all {
        "all images without at least one container using them"
    } else {
        "unused image data (untagged images, unused unpacked layers)"
    };
    let what = if build_cache {
        format!("{what} and the build cache")
    } else {
        what.to_string()
    };
    print!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
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
    /// Filter output: reference=NAME (a prefix, or a pattern with `*`), digest=PREFIX.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format: table, json, or a template ('{{.Name}}\t{{.ID}}'; 'table …' adds a header).
    #[arg(long, default_value = "table")]
    pub format: Format,
}

pub async fn run(ctx: &Context, cmd: ImageCmd) -> anyhow::Result<()> {
    let ch = ctx.channel().await?;
    let mut client = AgentClient::new(ch).max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES);
    match cmd {
        ImageCmd::Pull { name } => {
            let r = client
                .pull_image(swarm_api::agent::PullImageRequest { name: name.clone() })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{name}: pulled\nDigest: {}", r.digest);
        }
        ImageCmd::Push { name, target } => {
            let r = client
                .push_image(swarm_api::agent::PushImageRequest {
                    name: name.clone(),
                    target: target.clone().unwrap_or_default(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            println!(
                "{}: pushed ({} blobs uploaded)\nDigest: {}",
                target.as_deref().unwrap_or(&name),
                r.uploaded,
                r.digest
            );
        }
        ImageCmd::Inspect { names } => {
            let r = client
                .inspect_images(swarm_api::agent::InspectImagesRequest { names })
                .await
                .map_err(status_err)?
                .into_inner();
            let docs = r
                .images
                .iter()
                .map(|d| serde_json::from_str(d))
                .collect::<Result<Vec<serde_json::Value>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&docs)?);
        }
        ImageCmd::Tag { source, target } => {
            client
                .tag_image(swarm_api::agent::TagImageRequest { source, target })
                .await
                .map_err(status_err)?;
        }
        ImageCmd::Build(a) => build::run(ctx, *a).await?,
        ImageCmd::Import(a) => import(&mut client, a).await?,
        ImageCmd::Ls(a) => ls(&mut client, a).await?,
        ImageCmd::Rm(a) => {
            let resp = client
                .remove_images(RemoveImagesRequest { names: a.names })
                .await
                .map_err(status_err)?
                .into_inner();
            print_removed(&resp.untagged, resp.gc.as_ref());
        }
        ImageCmd::Prune(a) => {
            if !a.force && !confirm(a.all, a.build_cache)? {
                anyhow::bail!("prune cancelled: nothing removed");
            }
            let resp = client
                .prune_images(PruneImagesRequest {
                    all: a.all,
                    build_cache: a.build_cache,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            if a.build_cache {
                println!(
                    "Build cache: {} step{} forgotten",
                    resp.build_cache_entries,
                    if resp.build_cache_entries == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
            }
            print_removed(&resp.untagged, resp.gc.as_ref());
        }
    }
    Ok(())
}

type Client = AgentClient<tonic::transport::Channel>;

/// `image import FILE|- NAME`: the tarball streamed to the node in 1 MiB chunks.
async fn import(client: &mut Client, a: ImportArgs) -> anyhow::Result<()> {
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
    Ok(())
}

/// `image ls`: the node's images, filtered, as a table, JSON or names.
async fn ls(client: &mut Client, a: LsArgs) -> anyhow::Result<()> {
    let resp = client
        .list_images(ListImagesRequest {})
        .await
        .map_err(status_err)?
        .into_inner();
    let filters = output::Filters::parse(&a.filters, &["reference", "digest"])?;
    let mut resp = resp;
    resp.images.retain(|i| {
        filters.keep(|k, v| match k {
            "reference" => output::pattern_matches(v, &i.name),
            _ => i.digest.starts_with(v) || i.digest.trim_start_matches("sha256:").starts_with(v),
        })
    });
    if a.quiet {
        for i in &resp.images {
            println!("{}", i.name);
        }
    } else if a.format != Format::Table {
        output::structured(
            &a.format,
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimed_space_reads_like_docker() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(1000), "1kB");
        assert_eq!(human_bytes(2_345_678), "2.346MB");
    }
}
