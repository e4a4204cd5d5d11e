//! `swarmctl image build`: sends a build context (a tar of the directory, `.dockerignore`
//! applied) to the node behind the socket, which builds it into its image store; the steps
//! print as `docker build` prints them.

use crate::client::status_err;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use swarm_api::agent::agent_client::AgentClient;
use swarm_api::agent::{BuildChunk, BuildOptions};
use swarm_build::IgnoreMatcher;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build context: a directory.
    #[arg(value_name = "PATH")]
    pub context: PathBuf,
    /// Name (and tag) of the image: NAME[:TAG]; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: PATH/Dockerfile); it must be inside the context.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A build argument: KEY=VALUE, or KEY to take the value from this environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build up to this stage (`FROM ... AS NAME`).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, even the ones the cache has.
    #[arg(long)]
    pub no_cache: bool,
    /// A label for the image: KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Progress output: plain lines (auto = plain; a terminal view is not offered yet).
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain"])]
    pub progress: String,
    /// Target platform: only this node's own (linux/ARCH) is accepted.
    #[arg(long)]
    pub platform: Option<String>,
    /// Push every tag to the cluster registry after the build.
    #[arg(long)]
    pub push: bool,
}

pub async fn run(
    client: &mut AgentClient<tonic::transport::Channel>,
    a: BuildArgs,
) -> anyhow::Result<()> {
    check_platform(a.platform.as_deref())?;
    let dockerfile = dockerfile_in_context(&a.context, a.file.as_deref())?;
    let options = BuildOptions {
        dockerfile: dockerfile.clone(),
        tags: a.tags.clone(),
        build_args: pairs(&a.build_args, "--build-arg", true)?,
        target: a.target.clone().unwrap_or_default(),
        no_cache: a.no_cache,
        labels: pairs(&a.labels, "--label", false)?,
    };
    let tar = context_tar(&a.context, &dockerfile)?;
    eprintln!("Sending build context to the node: {}", size(tar.len()));
    let mut chunks: Vec<BuildChunk> = tar
        .chunks(1 << 20)
        .map(|c| BuildChunk {
            options: None,
            data: c.to_vec(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(BuildChunk::default());
    }
    chunks[0].options = Some(options);
    let mut events = client
        .build_image(tokio_stream::iter(chunks))
        .await
        .map_err(status_err)?
        .into_inner();
    let mut digest = String::new();
    while let Some(e) = events.message().await.map_err(status_err)? {
        if !e.step.is_empty() {
            println!("{}", e.step);
        }
        if e.cached {
            println!(" ---> Using cache");
        }
        if !e.output.is_empty() {
            print!("{}", e.output);
        }
        if !e.digest.is_empty() {
            digest = e.digest;
        }
    }
    if digest.is_empty() {
        anyhow::bail!("the build ended without an image (see the node's log)");
    }
    println!("Successfully built {digest}");
    for t in &a.tags {
        println!("Successfully tagged {t}");
    }
    if a.push {
        for t in &a.tags {
            let r = client
                .push_image(swarm_api::agent::PushImageRequest {
                    name: t.clone(),
                    target: String::new(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{t}: pushed ({} blobs uploaded)", r.uploaded);
        }
    }
    Ok(())
}

/// The only platform a node builds for is its own.
fn check_platform(p: Option<&str>) -> anyhow::Result<()> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let own = format!("linux/{arch}");
    match p {
        Some(p) if p != own => anyhow::bail!(
            "--platform {p}: this builder builds only for its node's own platform ({own})"
        ),
        _ => Ok(()),
    }
}

/// The Dockerfile's path relative to the context.
fn dockerfile_in_context(context: &Path, file: Option<&Path>) -> anyhow::Result<String> {
    if !context.is_dir() {
        anyhow::bail!(
            "{}: the build context must be a directory",
            context.display()
        );
    }
    let Some(f) = file else {
        return Ok("Dockerfile".into());
    };
    let ctx = context.canonicalize()?;
    let f = f
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    let rel = f.strip_prefix(&ctx).map_err(|_| {
        anyhow::anyhow!(
            "{}: the Dockerfile must be inside the build context {}",
            f.display(),
            ctx.display()
        )
    })?;
    Ok(rel.to_string_lossy().into_owned())
}

/// `KEY=VALUE` list into a map; with `from_env`, a bare KEY takes this environment's value.
fn pairs(list: &[String], flag: &str, from_env: bool) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for item in list {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            _ => anyhow::bail!("{flag} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// The context as a tar: what `.dockerignore` excludes is left out (the Dockerfile and the
/// `.dockerignore` itself always go); symlinks travel as symlinks.
fn context_tar(context: &Path, dockerfile: &str) -> anyhow::Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(s) => IgnoreMatcher::parse(&s)?,
        Err(_) => IgnoreMatcher::default(),
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    add_dir(&mut b, context, Path::new(""), &ignore, dockerfile)?;
    Ok(b.into_inner()?)
}

fn add_dir(
    b: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
    ignore: &IgnoreMatcher,
    dockerfile: &str,
) -> anyhow::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let r = rel.join(n);
        let s = r.to_string_lossy();
        let always = s == dockerfile || s == ".dockerignore";
        let md = std::fs::symlink_metadata(root.join(&r))?;
        if ignore.excluded(&s) && !always {
            if md.is_dir() && !ignore.can_skip_dir(&s) {
                add_dir(b, root, &r, ignore, dockerfile)?;
            }
            continue;
        }
        if md.is_dir() {
            b.append_dir(&r, root.join(&r))?;
            add_dir(b, root, &r, ignore, dockerfile)?;
        } else if md.is_file() || md.file_type().is_symlink() {
            b.append_path_with_name(root.join(&r), &r)?;
        }
    }
    Ok(())
}

fn size(n: usize) -> String {
    if n < 1 << 20 {
        format!("{:.1}kB", n as f64 / 1000.0)
    } else {
        format!("{:.1}MB", n as f64 / 1e6)
    }
}
