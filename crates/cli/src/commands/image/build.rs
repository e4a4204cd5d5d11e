//! `swarmctl image build`: sends a build context (a tar of the directory, `.dockerignore`
//! applied) to the node behind the socket or the one `--node` names, which builds it into its
//! image store; the steps print as `docker build` prints them.

use super::build_progress::{Plain, Progress, Tty};
use crate::client::status_err;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// Pull the images the build starts from even when the node has them (a moved tag is
    /// seen); without it only missing ones are pulled.
    #[arg(long)]
    pub pull: bool,
    /// An image (in the cluster registry or on the node) whose layers may stand in for RUN
    /// steps when every step before matched (it was built from the same Dockerfile and base,
    /// e.g. on another node); repeatable.
    #[arg(long = "cache-from", value_name = "IMAGE")]
    pub cache_from: Vec<String>,
    /// A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=FILE` (a file),
    /// `id=ID,env=VAR` (a variable of this environment) or `id=ID` (the variable ID, else
    /// the file ID); repeatable. Secrets reach only the RUN steps that mount them, never the
    /// image or the cache.
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    pub secrets: Vec<String>,
    /// The network of RUN steps that name none: `default` (the node's bridge, with outbound
    /// access) or `none` (loopback only); `RUN --network=...` overrides it per step.
    #[arg(long, default_value = "default", value_parser = ["default", "none"])]
    pub network: String,
    /// A label for the image: KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Progress output: `plain` lines as Docker's classic builder prints them, `tty` a line
    /// per step with a timer (needs a terminal on stderr), `auto` tty on a terminal, else plain.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty"])]
    pub progress: String,
    /// Target platform: only this node's own (linux/ARCH) is accepted.
    #[arg(long)]
    pub platform: Option<String>,
    /// Push every tag to the cluster registry after the build.
    #[arg(long)]
    pub push: bool,
    /// The node that builds (id, id prefix or hostname) and whose image store receives the
    /// image; default: the node behind the control socket (-H). Another node is reached
    /// through the manager behind -H.
    #[arg(long)]
    pub node: Option<String>,
}

pub async fn run(ctx: &crate::client::Context, a: BuildArgs) -> anyhow::Result<()> {
    check_platform(a.platform.as_deref())?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress: Box<dyn Progress> = match (a.progress.as_str(), terminal) {
        ("tty", false) => anyhow::bail!(
            "--progress tty: stderr is not a terminal; use --progress plain (or auto)"
        ),
        ("tty", true) | ("auto", true) => {
            Box::new(Tty::new(indicatif::ProgressDrawTarget::stderr()))
        }
        _ => Box::new(Plain::default()),
    };
    let dockerfile = dockerfile_in_context(&a.context, a.file.as_deref())?;
    let mut client = ctx.node_agent(a.node.as_deref()).await?;
    let options = BuildOptions {
        dockerfile: dockerfile.clone(),
        tags: a.tags.clone(),
        build_args: pairs(&a.build_args, "--build-arg", true)?,
        target: a.target.clone().unwrap_or_default(),
        no_cache: a.no_cache,
        labels: pairs(&a.labels, "--label", false)?,
        pull: a.pull,
        cache_from: a.cache_from.clone(),
        secrets: secrets(&a.secrets)?,
        network: a.network.clone(),
    };
    let tar = ContextTar::write(&a.context, &dockerfile)?;
    let len = tar.len()?;
    if len > swarm_build::MAX_CONTEXT_BYTES {
        anyhow::bail!(
            "the build context {} is {} after .dockerignore, more than a node accepts ({}): leave out what the build does not need with a .dockerignore",
            a.context.display(),
            size(len),
            size(swarm_build::MAX_CONTEXT_BYTES)
        );
    }
    // On a terminal the count goes up as chunks leave; otherwise one line with the size.
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !live {
        eprintln!("Sending build context to the node: {}", size(len));
    }
    let chunks = tar.chunks(options, live.then_some(len))?;
    let mut events = client
        .build_image(chunks)
        .await
        .map_err(status_err)?
        .into_inner();
    let mut digest = String::new();
    let res = loop {
        let e = match events.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break Ok(()),
            Err(s) => break Err(status_err(s)),
        };
        if !e.step.is_empty() {
            progress.step(&e.step);
        }
        if e.cached {
            progress.cached();
        }
        if !e.output.is_empty() {
            progress.output(&e.output);
        }
        if !e.digest.is_empty() {
            digest = e.digest;
        }
    };
    progress.finish();
    res?;
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

/// `--secret` values read: Docker's `id=ID[,src|source=FILE][,env=VAR][,type=file|env]`.
fn secrets(list: &[String]) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for item in list {
        let bad = |why: &str| {
            anyhow::anyhow!("--secret {item:?}: {why}; expected id=ID[,src=FILE|,env=VAR]")
        };
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in item.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", v @ ("file" | "env"))) => kind = Some(v.to_string()),
                Some(("type", _)) => return Err(bad("type is file or env")),
                _ => return Err(bad(&format!("unknown field {field:?}"))),
            }
        }
        // Docker: type=env with src= names the variable; id defaults to the file's name.
        if kind.as_deref() == Some("env") && env.is_none() {
            env = src.take();
        }
        let id = match (id, &src, &env) {
            (Some(id), _, _) if !id.is_empty() => id,
            (None, Some(f), _) => Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad("no id"))?,
            (None, None, Some(v)) => v.clone(),
            _ => return Err(bad("no id")),
        };
        let value = match (&src, &env) {
            (Some(_), Some(_)) => return Err(bad("give src= or env=, not both")),
            (Some(f), None) => std::fs::read(f).map_err(|e| anyhow::anyhow!("--secret id={id}: read {f}: {e}"))?,
            (None, Some(v)) => std::env::var(v)
                .map_err(|_| anyhow::anyhow!("--secret id={id}: the variable {v} is not set"))?
                .into_bytes(),
            (None, None) => match std::env::var(&id) {
                Ok(v) => v.into_bytes(),
                Err(_) => std::fs::read(&id).map_err(|_| {
                    anyhow::anyhow!("--secret id={id}: no variable {id} and no file {id}: give src=FILE or env=VAR")
                })?,
            },
        };
        if value.len() > swarm_build::builder::MAX_SECRET_BYTES {
            anyhow::bail!(
                "--secret id={id}: {} bytes, more than a build secret may hold ({})",
                value.len(),
                swarm_build::builder::MAX_SECRET_BYTES
            );
        }
        if out.insert(id.clone(), value).is_some() {
            anyhow::bail!("--secret id={id} is given twice");
        }
    }
    Ok(out)
}

/// The context as a tar in a temporary file (removed on drop): what `.dockerignore` excludes
/// is left out (the Dockerfile and the `.dockerignore` itself always go); symlinks travel as
/// symlinks.
struct ContextTar {
    path: PathBuf,
}

impl ContextTar {
    fn write(context: &Path, dockerfile: &str) -> anyhow::Result<ContextTar> {
        let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(s) => IgnoreMatcher::parse(&s)
                .map_err(|e| anyhow::anyhow!("{}: {e}", context.join(".dockerignore").display()))?,
            Err(_) => IgnoreMatcher::default(),
        };
        let path = std::env::temp_dir().join(format!(
            "swarmctl-context-{}-{}.tar",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let t = ContextTar { path };
        let f = std::fs::File::create(&t.path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", t.path.display()))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        let mut budget = swarm_build::MAX_CONTEXT_BYTES;
        add_dir(
            &mut b,
            context,
            Path::new(""),
            &ignore,
            dockerfile,
            &mut budget,
        )?;
        b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        Ok(t)
    }

    fn len(&self) -> anyhow::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// The stream of chunks to send: the options in the first one, 1 MiB of the tar each.
    /// With `live` (the total), the bytes sent so far are shown on stderr as they go.
    fn chunks(
        &self,
        options: BuildOptions,
        live: Option<u64>,
    ) -> anyhow::Result<impl tokio_stream::Stream<Item = BuildChunk> + Send + 'static> {
        use std::io::Read;
        let mut f = std::fs::File::open(&self.path)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<BuildChunk>(4);
        std::thread::spawn(move || {
            let mut options = Some(options);
            let mut sent: u64 = 0;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = match f.read(&mut buf) {
                    Ok(n) => n,
                    Err(_) => break,
                };
                buf.truncate(n);
                let first = options.take();
                if n == 0 && first.is_none() {
                    break;
                }
                if tx
                    .blocking_send(BuildChunk {
                        options: first,
                        data: buf,
                    })
                    .is_err()
                {
                    break;
                }
                sent += n as u64;
                if let Some(total) = live {
                    eprint!(
                        "\rSending build context to the node: {} of {}",
                        size(sent),
                        size(total)
                    );
                    if n == 0 || sent >= total {
                        eprintln!();
                    }
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

impl Drop for ContextTar {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Adds `root/rel`'s entries; `budget` is what is left of the context size limit (file
/// contents), so a huge context is refused before it is all written.
fn add_dir(
    b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>,
    root: &Path,
    rel: &Path,
    ignore: &IgnoreMatcher,
    dockerfile: &str,
    budget: &mut u64,
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
                add_dir(b, root, &r, ignore, dockerfile, budget)?;
            }
            continue;
        }
        if md.is_dir() {
            b.append_dir(&r, root.join(&r))?;
            add_dir(b, root, &r, ignore, dockerfile, budget)?;
        } else if md.is_file() || md.file_type().is_symlink() {
            *budget = budget.checked_sub(md.len()).ok_or_else(|| {
                anyhow::anyhow!(
                    "the build context {} is more than a node accepts ({}): leave out what the build does not need with a .dockerignore",
                    root.display(),
                    size(swarm_build::MAX_CONTEXT_BYTES)
                )
            })?;
            b.append_path_with_name(root.join(&r), &r)?;
        }
    }
    Ok(())
}

fn size(n: u64) -> String {
    if n < 1 << 20 {
        format!("{:.1}kB", n as f64 / 1000.0)
    } else {
        format!("{:.1}MB", n as f64 / 1e6)
    }
}

#[cfg(test)]
mod secret_tests {
    use super::secrets;

    #[test]
    fn secrets_are_read_as_docker_reads_them() {
        let dir = std::env::temp_dir().join(format!("swarmctl-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("npmrc");
        std::fs::write(&f, "token-from-file").unwrap();
        let f = f.to_str().unwrap();
        let path = std::env::var("PATH").unwrap();
        let got = secrets(&[
            format!("id=a,src={f}"),
            format!("source={f}"),
            "id=b,env=PATH".into(),
            "id=c,type=env,src=PATH".into(),
            "id=PATH".into(),
        ])
        .unwrap();
        assert_eq!(got["a"], b"token-from-file");
        assert_eq!(got["npmrc"], b"token-from-file");
        assert_eq!(got["b"], path.as_bytes());
        assert_eq!(got["c"], path.as_bytes());
        assert_eq!(got["PATH"], path.as_bytes());
        for (bad, want) in [
            (
                "id=x,src=/nonexistent/secret",
                "--secret id=x: read /nonexistent/secret",
            ),
            (
                "id=x,env=SWARM_T_UNSET_VAR",
                "the variable SWARM_T_UNSET_VAR is not set",
            ),
            ("id=x,color=red", "unknown field \"color=red\""),
            ("id=x,type=ssh", "type is file or env"),
        ] {
            let e = secrets(&[bad.to_string()]).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let twice = secrets(&[format!("id=a,src={f}"), format!("id=a,src={f}")]);
        assert!(twice.unwrap_err().to_string().contains("given twice"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
