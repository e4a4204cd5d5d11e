//! The builder: runs a parsed Dockerfile on this node. Each stage a `--target` needs is built
//! on its own thread as soon as the stages it uses are (independent stages run at the same
//! time; progress is reported as if they had run in file order); each instruction either changes the image config (ENV, LABEL, WORKDIR, USER, CMD,
//! ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK) or adds a layer (RUN: a
//! container of our runtime whose overlay upper directory becomes the layer; COPY/ADD: the
//! files from the context written as a layer), and every step is committed as an image on top
//! of the previous one (`ImageStore::commit`), as `docker build` does.
//!
//! Cache: each step's result is remembered in the image store's build cache (which keeps it
//! from garbage collection) under a key made of the parent image, the instruction with its
//! variables expanded, the build arguments a RUN sees, and for COPY/ADD the digest of the
//! layer its inputs make. A rebuild with nothing changed gives the same image
//! digest; a change to one COPY input rebuilds from that step on.
//!
//! `--cache-from IMAGE` (a node without that cache, e.g. after a pull): a stage whose base
//! layers start IMAGE follows IMAGE's history step by step; while every step matched (same
//! `created_by`, the same layer for COPY/ADD), a RUN takes IMAGE's next layer instead of
//! running. Only IMAGE's own stage can match: earlier stages of a multi-stage build need
//! their own image, as with Docker's classic builder.
//!
//! `COPY --from` reads an earlier stage's image or an image of this node's store through a
//! read-only view of its filesystem ([`view::RootView`]); symbolic links in a source path
//! resolve inside the context or that filesystem, never to a host file.
//!
//! ADD unpacks local tar archives (plain or gzip; bzip2, xz and zstd are refused by name).
//!
//! RUN containers join the node's default bridge through [`RunNetwork`] (the agent's data
//! plane), with the node's DNS server in their `/etc/resolv.conf`; `RUN --network=none` (or a
//! builder without a network) has loopback only; `--network=host` is refused.
//!
//! Not yet: `RUN --mount`, RUN heredocs, ADD of URLs, `COPY --parents` and
//! `--exclude`, ONBUILD, user and group names in `--chown` (numeric ids work). Each is
//! refused with an error naming it.

mod context;
mod current;
pub mod run_extras;
mod steps;
mod view;

use current::{cache_key, Current};
pub use view::RootView;

use crate::dockerfile::{self, Base, Dockerfile, Instruction, Node, Stages};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use swarm_runtime::image::commit::Lineage;
use swarm_runtime::image::Digest;
use swarm_runtime::{ImageConfig, ImageError, ImageStore, Runtime};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The build context, unpacked.
    pub context: PathBuf,
    /// The Dockerfile's text and the name errors give it.
    pub dockerfile: String,
    pub dockerfile_name: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<String>,
    pub no_cache: bool,
    /// `--label`: added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--cache-from`: images (on this node) whose history may stand in for RUN steps.
    pub cache_from: Vec<String>,
    /// `--secret`: what `RUN --mount=type=secret` shows.
    pub secrets: Secrets,
    /// `--network=none`: RUN steps that name no network get loopback only.
    pub network_none: bool,
}

/// Build secrets by id. They reach a RUN only through its secret mounts, never a layer, a
/// cache key or a log: `Debug` shows the ids alone.
#[derive(Clone, Default)]
pub struct Secrets(pub BTreeMap<String, Vec<u8>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The largest secret a build takes (BuildKit's limit is 500 KB).
pub const MAX_SECRET_BYTES: usize = 512 * 1024;

/// What the builder tells as it goes (`docker build`'s plain progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Step {
        n: usize,
        total: usize,
        text: String,
    },
    Cached,
    Output(String),
    Done {
        digest: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[from] dockerfile::Error),
    #[error("{0}")]
    Target(#[from] dockerfile::TargetError),
    #[error("{file}:{line}: {message}")]
    Step {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("RUN's network: {0}")]
    Network(String),
    #[error("--cache-from {image}: {message}")]
    CacheFrom { image: String, message: String },
    #[error("{0}")]
    Runtime(#[from] swarm_runtime::RuntimeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What every stage of one build shares.
struct Plan<'a> {
    df: &'a Dockerfile,
    stages: &'a Stages,
    req: &'a Request,
    /// Steps of the whole build.
    total: usize,
    /// The `--cache-from` images (none with `--no-cache`).
    cache_from: Vec<std::sync::Arc<Lineage>>,
}

/// The stages built so far, for `COPY --from`.
struct Earlier<'a> {
    stages: &'a Stages,
    built: &'a BTreeMap<usize, Current>,
}

impl Earlier<'_> {
    /// The image `--from=reference` reads: an earlier stage (by name or index; `None` for
    /// a stage on `scratch` that committed nothing) or an image of this node's store.
    fn image(&self, store: &ImageStore, reference: &str) -> Result<Option<Digest>, String> {
        let stage = match reference.parse::<usize>() {
            Ok(i) => Some(i),
            Err(_) => self.stages.by_name(reference),
        };
        if let Some(i) = stage {
            return match self.built.get(&i) {
                Some(c) => Ok(c.image.clone()),
                None => Err(format!("--from={reference}: that stage has not been built")),
            };
        }
        let name = swarm_runtime::image::normalize_name(reference);
        store.resolve(&name).map(Some).map_err(|e| match e {
            ImageError::ImageNotFound { .. } => format!(
                "--from={reference}: no stage has that name and the image {name} is not on this node: import it (swarmctl image import) or pull it here"
            ),
            e => format!("--from={reference}: {e}"),
        })
    }
}

/// The images (not stages, not `scratch`) a build of `req` starts from: the FROM images and
/// `COPY --from` images of the stages its target needs, in order, once each.
pub fn base_images(req: &Request) -> Result<Vec<String>, BuildError> {
    let df = dockerfile::parse(&req.dockerfile, &req.dockerfile_name)?;
    let stages = Stages::analyze(&df, &|k| req.build_args.get(k).cloned())?;
    let mut out: Vec<String> = Vec::new();
    for i in stages.needed_for(req.target.as_deref())? {
        let s = &stages.stages[i];
        let base = match &s.base {
            Base::Image(name) => Some(name.clone()),
            _ => None,
        };
        for name in base.into_iter().chain(s.images.iter().cloned()) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// How RUN containers reach the network: the node's default bridge, as its tasks do. The
/// node's data plane implements it; without one, RUN has loopback only.
pub trait RunNetwork: Sync {
    /// Holds an address for container `id`; returns the `/etc/resolv.conf` it gets.
    fn reserve(&self, id: &str) -> Result<String, String>;
    /// Plumbs the created (not yet started) container `id`, whose init has host pid `pid`.
    fn attach(&self, id: &str, pid: i32) -> Result<(), String>;
    /// Gives back what `reserve` and `attach` took (the container is gone).
    fn release(&self, id: &str);
}

/// A builder over this node's runtime and image store.
pub struct Builder<'a> {
    pub rt: &'a Runtime,
    pub store: &'a ImageStore,
    /// RUN's network (`RUN --network=default`, the default); `None`: loopback only.
    pub network: Option<&'a dyn RunNetwork>,
    /// How `ADD https://...` downloads; `None`: URLs are refused.
    pub fetch: Option<&'a dyn Fetch>,
    /// Where layers and `COPY --from` views are staged.
    pub dir: PathBuf,
}

/// ADD's remote sources: the node downloads a URL (the agent does it with its HTTP client).
pub trait Fetch: Sync {
    /// Writes the body of `url` (http or https) to `dest`, at most `limit` bytes; returns the
    /// server's Last-Modified time (unix seconds) when it sent one.
    fn fetch(&self, url: &str, dest: &Path, limit: u64) -> Result<Option<u64>, String>;
}

impl Builder<'_> {
    /// Builds `req`; returns the final image's manifest digest, tagged with every `-t`.
    pub fn build(&self, req: &Request, out: &mut dyn FnMut(Event)) -> Result<Digest, BuildError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| BuildError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let df = dockerfile::parse(&req.dockerfile, &req.dockerfile_name)?;
        let stages = Stages::analyze(&df, &|k| req.build_args.get(k).cloned())?;
        let order = stages.needed_for(req.target.as_deref())?;
        // A stage's nodes are the instructions after its FROM; the FROM is a step too.
        let total: usize = order
            .iter()
            .map(|i| stages.stages[*i].nodes.len() + 1)
            .sum();
        // Each stage's first step number: steps are numbered in file order.
        let mut first = BTreeMap::new();
        let mut n = 0;
        for &i in &order {
            first.insert(i, n);
            n += stages.stages[i].nodes.len() + 1;
        }
        let mut cache_from = Vec::new();
        for name in &req.cache_from {
            let n = swarm_runtime::image::normalize_name(name);
            let l = self.store.lineage(&n).map_err(|e| BuildError::CacheFrom {
                image: n.clone(),
                message: e.to_string(),
            })?;
            cache_from.push(std::sync::Arc::new(l));
        }
        let plan = Plan {
            df: &df,
            stages: &stages,
            req,
            total,
            cache_from,
        };
        let mut built = self.stages_concurrently(&plan, &order, &first, out)?;
        let last = order
            .last()
            .and_then(|i| built.remove(i))
            .unwrap_or_default();
        let digest = self.finish(last, req)?;
        out(Event::Done {
            digest: digest.to_string(),
        });
        Ok(digest)
    }

    /// Builds the stages in `order`, each as soon as the stages it needs are built (on its
    /// own thread), and returns what each built. Events reach `out` as if the stages had run
    /// one after the other: the stage first in `order` streams live, the others' events wait
    /// until every stage before them in `order` has finished.
    fn stages_concurrently(
        &self,
        plan: &Plan,
        order: &[usize],
        first: &BTreeMap<usize, usize>,
        out: &mut dyn FnMut(Event),
    ) -> Result<BTreeMap<usize, Current>, BuildError> {
        use std::sync::{mpsc, Condvar, Mutex};
        enum Msg {
            Event(usize, Event),
            Finished(usize),
        }
        let built: Mutex<BTreeMap<usize, Current>> = Mutex::new(BTreeMap::new());
        let failed: Mutex<Option<(usize, BuildError)>> = Mutex::new(None);
        let ready = Condvar::new();
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::scope(|s| {
            for &i in order {
                let tx = tx.clone();
                let (built, failed, ready) = (&built, &failed, &ready);
                s.spawn(move || {
                    let deps = &plan.stages.stages[i].deps;
                    // The stages this one needs, once they are built (none if one failed).
                    let snapshot = {
                        let mut g = built.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            let stop = failed.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                            if stop {
                                break None;
                            }
                            if deps.iter().all(|d| g.contains_key(d)) {
                                break Some(g.clone());
                            }
                            g = ready.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    if let Some(snapshot) = snapshot {
                        let mut emit = |e| {
                            let _ = tx.send(Msg::Event(i, e));
                        };
                        let stop = || failed.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                        match self.stage(plan, i, first[&i], &snapshot, &stop, &mut emit) {
                            Ok(cur) => {
                                built
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(i, cur);
                            }
                            Err(e) => {
                                let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                                // The first failing stage in file order is the one reported.
                                if f.as_ref().is_none_or(|(j, _)| i < *j) {
                                    *f = Some((i, e));
                                }
                            }
                        }
                    }
                    // Wakes the stages waiting for this one (or for a failure).
                    drop(built.lock().unwrap_or_else(|e| e.into_inner()));
                    ready.notify_all();
                    let _ = tx.send(Msg::Finished(i));
                });
            }
            drop(tx);
            let mut next = 0;
            let mut held: BTreeMap<usize, Vec<Event>> = BTreeMap::new();
            let mut finished = std::collections::BTreeSet::new();
            for m in rx {
                match m {
                    Msg::Event(i, e) if next < order.len() && i == order[next] => out(e),
                    Msg::Event(i, e) => held.entry(i).or_default().push(e),
                    Msg::Finished(i) => {
                        finished.insert(i);
                    }
                }
                while next < order.len() && finished.contains(&order[next]) {
                    next += 1;
                    if let Some(i) = order.get(next) {
                        for e in held.remove(i).unwrap_or_default() {
                            out(e);
                        }
                    }
                }
            }
        });
        if let Some((_, e)) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(built.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// One stage: its FROM and its steps, numbered from `first + 1`, on top of the stages
    /// it needs (in `built`). Stops before a step once `stop` says another stage failed.
    fn stage(
        &self,
        plan: &Plan,
        i: usize,
        first: usize,
        built: &BTreeMap<usize, Current>,
        stop: &dyn Fn() -> bool,
        out: &mut dyn FnMut(Event),
    ) -> Result<Current, BuildError> {
        let (df, stages) = (plan.df, plan.stages);
        let stage = &stages.stages[i];
        let from = &df.nodes[stage.nodes.start - 1];
        let total = plan.total;
        out(Event::Step {
            n: first + 1,
            total,
            text: from.original.trim().to_string(),
        });
        let mut cur = self.base(&stage.base, built, df, from)?;
        cur.args.clear();
        if !plan.cache_from.is_empty() && !plan.req.no_cache {
            let base = match &cur.image {
                Some(d) => self.store.lineage(d.as_str())?,
                None => Lineage::default(),
            };
            cur.start_cache_from(&plan.cache_from, &base);
        }
        let earlier = Earlier { stages, built };
        self.triggers(plan, from, &mut cur, &earlier, out)?;
        for (n, node) in (first + 2..).zip(&df.nodes[stage.nodes.clone()]) {
            if stop() {
                return Err(step_err(df, node, "stopped: another stage failed".into()));
            }
            out(Event::Step {
                n,
                total,
                text: node.original.trim().to_string(),
            });
            self.step(df, node, plan.req, &mut cur, &earlier, out)?;
        }
        Ok(cur)
    }

    /// Runs the `ONBUILD` triggers of the image a stage starts from, right after its FROM,
    /// as Docker does; the stage's image does not keep them. Their output is shown, their
    /// cache hits are not (they belong to the FROM step), and an error names the FROM line.
    fn triggers(
        &self,
        plan: &Plan,
        from: &Node,
        cur: &mut Current,
        earlier: &Earlier,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        let triggers = std::mem::take(&mut cur.config.on_build);
        if triggers.is_empty() {
            return Ok(());
        }
        let s = if triggers.len() == 1 { "" } else { "s" };
        out(Event::Output(format!(
            "# Executing {} build trigger{s}
",
            triggers.len()
        )));
        for t in &triggers {
            let fail = |m: String| {
                step_err(
                    plan.df,
                    from,
                    format!("ONBUILD trigger {t:?} of the base image: {m}"),
                )
            };
            // A Dockerfile needs a FROM first; the trigger is its second line.
            let tdf = dockerfile::parse(&format!("FROM scratch\n{t}\n"), "ONBUILD")
                .map_err(|e| fail(e.to_string()))?;
            for node in tdf.nodes.iter().skip(1) {
                if matches!(
                    node.instruction,
                    Instruction::From(_) | Instruction::Onbuild(_) | Instruction::Maintainer(_)
                ) {
                    return Err(fail("this instruction cannot be a trigger".into()));
                }
                let mut shown = |e: Event| {
                    if let Event::Output(_) = e {
                        out(e)
                    }
                };
                self.step(&tdf, node, plan.req, cur, earlier, &mut shown)
                    .map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The image a stage starts from.
    fn base(
        &self,
        base: &Base,
        built: &BTreeMap<usize, Current>,
        df: &Dockerfile,
        from: &Node,
    ) -> Result<Current, BuildError> {
        match base {
            Base::Scratch => Ok(Current::default()),
            Base::Stage(j) => Ok(built.get(j).cloned().unwrap_or_default()),
            Base::Image(name) => {
                let d = self.store.resolve(name).map_err(|e| match e {
                    ImageError::ImageNotFound { name } => step_err(
                        df,
                        from,
                        format!("image {name} is not on this node: import it (swarmctl image import) or push it to the cluster registry and pull it here"),
                    ),
                    e => e.into(),
                })?;
                Ok(Current {
                    config: self.store.config(d.as_str())?,
                    image: Some(d),
                    ..Default::default()
                })
            }
        }
    }

    /// The final image: `--label`s added, tagged.
    fn finish(&self, mut cur: Current, req: &Request) -> Result<Digest, BuildError> {
        if !req.labels.is_empty() || cur.image.is_none() {
            cur.config.labels.extend(req.labels.clone());
            let key = cache_key(&cur, "LABEL --label", &format!("{:?}", req.labels));
            self.commit(&mut cur, None, "LABEL (--label)", &key, req)?;
        }
        let d = cur.image.expect("committed above");
        for t in &req.tags {
            self.store
                .tag(&swarm_runtime::image::normalize_name(t), &d)?;
        }
        Ok(d)
    }

    /// Commits a step (reusing the cached result of `key` unless `--no-cache`).
    fn commit(
        &self,
        cur: &mut Current,
        layer: Option<&Path>,
        created_by: &str,
        key: &str,
        req: &Request,
    ) -> Result<bool, BuildError> {
        if let Some(d) = self.cached(key, req) {
            cur.config = self.store.config(d.as_str())?;
            cur.image = Some(d);
            return Ok(true);
        }
        self.commit_new(cur, key, created_by, layer, None)?;
        Ok(false)
    }

    /// Commits the next image on `cur` — its config, with `layer` or a layer already in the
    /// store (`reuse`) — and caches it under `key`.
    fn commit_new(
        &self,
        cur: &mut Current,
        key: &str,
        created_by: &str,
        layer: Option<&Path>,
        reuse: Option<(swarm_runtime::image::Descriptor, Digest)>,
    ) -> Result<(), BuildError> {
        let parent = cur.image.as_ref().map(|d| d.to_string());
        let d = self.store.commit(
            &swarm_runtime::image::commit::Step {
                parent: parent.as_deref(),
                layer,
                reuse,
                config: cur.config.clone(),
                created_by: created_by.to_string(),
            },
            None,
        )?;
        self.store.cache_put(key, &d)?;
        cur.image = Some(d);
        Ok(())
    }

    fn cached(&self, key: &str, req: &Request) -> Option<Digest> {
        if req.no_cache {
            return None;
        }
        self.store.cache_get(key)
    }
}

fn step_err(df: &Dockerfile, node: &Node, message: String) -> BuildError {
    BuildError::Step {
        file: df.file.clone(),
        line: node.line,
        message,
    }
}

#[cfg(test)]
mod tests;
