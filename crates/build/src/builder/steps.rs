//! One instruction of a stage: config changes, RUN in a container, COPY/ADD from the context.

use super::context::Sources;
use super::*;
use crate::dockerfile::{CommandLine, Healthcheck, KeyValue, Source};
use crate::shell::Lexer;
use std::time::Duration;
use swarm_runtime::image::diff::write_layer;
use swarm_runtime::spec::{resolve_process, ProcessOverrides, RootfsSpec};
use swarm_runtime::ContainerSpec;

/// How long one RUN may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

impl Builder<'_> {
    pub(super) fn step(
        &self,
        df: &Dockerfile,
        node: &Node,
        req: &Request,
        cur: &mut Current,
        earlier: &Earlier,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        let ins = &node.instruction;
        let lexer = Lexer::new(df.directives.escape);
        let vars = variables(cur);
        let x = |w: &str| -> Result<String, BuildError> {
            lexer
                .expand(w, |k| vars.get(k).cloned())
                .map_err(|e| step_err(df, node, e.to_string()))
        };
        let c = &mut cur.config;
        match ins {
            Instruction::Arg(decls) => {
                for d in decls {
                    let value = match (req.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(x(def)?),
                        (None, None) => global_default(df, &d.name, &lexer),
                    };
                    if let Some(v) = value {
                        cur.args.insert(d.name.clone(), v);
                    }
                }
                return Ok(());
            }
            Instruction::Maintainer(_) => return Ok(()),
            Instruction::Env(kvs) => {
                for (k, v) in expand_pairs(kvs, &x)? {
                    c.env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    c.env.push(format!("{k}={v}"));
                }
            }
            Instruction::Label(kvs) => c.labels.extend(expand_pairs(kvs, &x)?),
            Instruction::Workdir(p) => {
                let p = x(p)?;
                let base = c.working_dir.clone().unwrap_or_else(|| "/".into());
                c.working_dir = Some(if p.starts_with('/') {
                    p
                } else {
                    format!("{}/{p}", base.trim_end_matches('/'))
                });
            }
            Instruction::User(u) => c.user = Some(x(u)?),
            Instruction::Cmd(cl) => {
                c.cmd = Some(argv(cl, c));
                cur.cmd_set = true;
            }
            Instruction::Entrypoint(cl) => {
                c.entrypoint = Some(argv(cl, c));
                if !cur.cmd_set {
                    c.cmd = None;
                }
            }
            Instruction::Expose(ports) => {
                for p in ports {
                    let p = x(p)?;
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    c.exposed_ports.insert(p, serde_json::json!({}));
                }
            }
            Instruction::Volume(vs) => {
                for v in vs {
                    c.volumes.insert(x(v)?, serde_json::json!({}));
                }
            }
            Instruction::StopSignal(s) => c.stop_signal = Some(x(s)?),
            Instruction::Shell(v) => c.shell = Some(v.clone()),
            Instruction::Healthcheck(h) => c.healthcheck = Some(healthcheck(h)),
            Instruction::Run(r) => return self.run((df, node), req, cur, earlier, r, out),
            Instruction::Copy(cp) => {
                let from = match &cp.from {
                    Some(f) => Some((
                        f.as_str(),
                        earlier
                            .image(self.store, f)
                            .map_err(|m| step_err(df, node, m))?,
                    )),
                    None => None,
                };
                let from = from.as_ref().map(|(f, d)| (*f, d.as_ref()));
                let what = Sources {
                    t: &cp.transfer,
                    from,
                    unpack: false,
                    parents: cp.parents,
                    checksum: None,
                };
                return self.copy((df, node), req, cur, what, &x, out);
            }
            Instruction::Add(a) => {
                let local = a
                    .transfer
                    .sources
                    .iter()
                    .any(|s| !matches!(s, Source::Path(p) if p.contains("://")));
                if a.checksum.is_some() && local {
                    return Err(step_err(
                        df,
                        node,
                        "ADD --checksum is for URL sources only".into(),
                    ));
                }
                // Docker unpacks local archives unless --unpack=false (never downloads).
                let what = Sources {
                    t: &a.transfer,
                    from: None,
                    unpack: a.unpack != Some(false),
                    parents: false,
                    checksum: a.checksum.as_deref(),
                };
                return self.copy((df, node), req, cur, what, &x, out);
            }
            Instruction::Onbuild(o) => c.on_build.push(o.expression.clone()),
            Instruction::From(_) => {}
        }
        let key = cache_key(cur, node.original.trim(), "");
        let hit = self.commit(cur, None, node.original.trim(), &key, req)?;
        if hit {
            out(Event::Cached)
        }
        cur.follow(node.original.trim(), None);
        Ok(())
    }

    /// RUN: the command in a container of the current image; its changes become the layer.
    fn run(
        &self,
        (df, node): (&Dockerfile, &Node),
        req: &Request,
        cur: &mut Current,
        earlier: &Earlier,
        r: &crate::dockerfile::RunArgs,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        if r.network == Some(crate::dockerfile::Network::Host) {
            return Err(step_err(
                df,
                node,
                "RUN --network=host is not allowed".into(),
            ));
        }
        if r.security == Some(crate::dockerfile::Security::Insecure) {
            return Err(step_err(
                df,
                node,
                "RUN --security=insecure is not allowed: build steps run with the isolation of services".into(),
            ));
        }
        let lexer = Lexer::new(df.directives.escape);
        let vars = variables(cur);
        let mut expand = |w: &str| lexer.expand(w, |k| vars.get(k).cloned());
        let extras = self
            .run_extras(req, cur, earlier, r, &mut expand)
            .map_err(|m| step_err(df, node, m))?;
        let shell = cur
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let (args, script) = run_extras::command(&r.command, &r.heredocs, &shell)
            .map_err(|m| step_err(df, node, m))?;
        // Build arguments reach RUN as environment variables (ENV wins; not kept in the image).
        let env: Vec<String> = cur
            .args
            .iter()
            .filter(|(k, _)| {
                !cur.config
                    .env
                    .iter()
                    .any(|e| e.split('=').next() == Some(k.as_str()))
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // `image build --network none` is part of the key of the steps it takes the network
        // from (a step's own `--network` is in its text).
        let net = if r.network.is_none() && req.network_none {
            "net=none"
        } else {
            ""
        };
        let key = cache_key(
            cur,
            node.original.trim(),
            &format!("{args:?}{env:?}{}{net}", extras.inputs),
        );
        let created_by = format!("RUN {}", node.original.trim()[3..].trim());
        if self.reuse_cached(&key, &created_by, req, cur, out)? {
            return Ok(());
        }
        // This RUN's layer is new: no `--cache-from` image can match what follows.
        cur.cache_from.clear();
        let lower = match &cur.image {
            Some(d) => self.store.prepare(d.as_str())?.layers,
            None => Vec::new(),
        };
        if lower.is_empty() {
            return Err(step_err(
                df,
                node,
                "RUN needs an image with a shell or a program to run (FROM scratch has none yet)"
                    .into(),
            ));
        }
        let id = container_id(&key);
        // Secrets as variables come after the key: they change nothing in the cache.
        let mut env = env;
        env.extend(extras.env.iter().cloned());
        let o = ProcessOverrides {
            entrypoint: Some(args.clone()),
            cmd: Some(Vec::new()),
            env,
            ..Default::default()
        };
        let process =
            resolve_process(&cur.config, &o).map_err(|e| step_err(df, node, e.to_string()))?;
        let mut spec = ContainerSpec::new(
            &id,
            RootfsSpec::Layers {
                lower: lower.clone(),
            },
            process,
        );
        spec.mounts = extras.mounts.clone();
        // A `#!` heredoc runs as a file of its own, outside the image (kept until the end).
        let _script = match script {
            Some((at, body)) => Some(self.mount_script(&mut spec, &at, &body)?),
            None => None,
        };
        let network = match r.network {
            Some(crate::dockerfile::Network::None) => None,
            None if req.network_none => None,
            _ => self.network,
        };
        let layer = self.dir.join(format!("{id}.tar"));
        let res = self.run_to_layer(
            (df, node),
            &id,
            spec,
            network,
            &args,
            &lower,
            &extras.targets,
            &layer,
            out,
        );
        let res = res.and_then(|()| self.commit(cur, Some(&layer), &created_by, &key, req));
        let _ = std::fs::remove_file(&layer);
        res.map(|_| ())
    }

    /// A cached step (this builder's cache, or a `--cache-from` image's layer made on the same
    /// base): the current image moves on without running anything. Returns whether it did.
    fn reuse_cached(
        &self,
        key: &str,
        created_by: &str,
        req: &Request,
        cur: &mut Current,
        out: &mut dyn FnMut(Event),
    ) -> Result<bool, BuildError> {
        if let Some(d) = self.cached(key, req) {
            let diff = self
                .store
                .lineage(d.as_str())?
                .layers
                .last()
                .map(|l| l.1.clone());
            cur.image = Some(d);
            out(Event::Cached);
            cur.follow(created_by, diff.as_ref());
            return Ok(true);
        }
        // A `--cache-from` image made this step on the same base: its layer stands in.
        if let Some(reuse) = cur.reusable(created_by) {
            let diff = reuse.1.clone();
            self.commit_new(cur, key, created_by, None, Some(reuse))?;
            out(Event::Cached);
            cur.follow(created_by, Some(&diff));
            return Ok(true);
        }
        Ok(false)
    }

    /// Runs the RUN container (on the build network unless it has none) and writes its
    /// changes, less the mount points it was given, as a layer tarball at `layer`.
    #[allow(clippy::too_many_arguments)]
    fn run_to_layer(
        &self,
        (df, node): (&Dockerfile, &Node),
        id: &str,
        mut spec: ContainerSpec,
        network: Option<&dyn RunNetwork>,
        args: &[String],
        lower: &[PathBuf],
        targets: &[String],
        layer: &Path,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        let res = match network {
            Some(n) => n
                .reserve(id)
                .map_err(|m| step_err(df, node, format!("RUN's network: {m}")))
                .and_then(|resolv_conf| {
                    spec.options.etc_files = Some(swarm_runtime::options::EtcFiles {
                        hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                            .into(),
                        hostname: "buildsandbox\n".into(),
                        resolv_conf,
                    });
                    spec.hostname = Some("buildsandbox".into());
                    self.run_container(id, spec, Some(n), out)
                }),
            None => self.run_container(id, spec, None, out),
        };
        let res = res.and_then(|code| {
            if code != 0 {
                return Err(step_err(
                    df,
                    node,
                    format!("the command {args:?} returned a non-zero code: {code}"),
                ));
            }
            let upper = self.rt.upper_dir(id)?.expect("a container on layers");
            if network.is_some() {
                drop_mount_targets(&upper);
            }
            run_extras::drop_created_mount_points(&upper, lower, targets);
            let f = std::fs::File::create(layer).map_err(|source| BuildError::Io {
                path: layer.to_path_buf(),
                source,
            })?;
            write_layer(&upper, f).map_err(|e| step_err(df, node, e.to_string()))?;
            Ok(())
        });
        let _ = self.rt.remove(id, true);
        if let Some(n) = network {
            n.release(id);
        }
        res
    }

    /// A `#!` heredoc's body as a file of its own, bound read-only at `at`.
    fn mount_script(
        &self,
        spec: &mut ContainerSpec,
        at: &str,
        body: &str,
    ) -> Result<tempfile::TempPath, BuildError> {
        let f = script_file(&self.dir, body).map_err(|source| BuildError::Io {
            path: self.dir.clone(),
            source,
        })?;
        spec.mounts.push(swarm_runtime::spec::MountSpec::Bind {
            source: f.to_path_buf(),
            destination: at.into(),
            readonly: true,
            propagation: Default::default(),
            copy_up: false,
        });
        Ok(f)
    }

    /// Runs a build container to its end; its output goes to `out`. Returns its exit code.
    fn run_container(
        &self,
        id: &str,
        spec: ContainerSpec,
        network: Option<&dyn RunNetwork>,
        out: &mut dyn FnMut(Event),
    ) -> Result<i32, BuildError> {
        let info = self.rt.create(spec)?;
        if let Some(n) = network {
            if let Err(m) = n.attach(id, info.pid) {
                let _ = self.rt.remove(id, true);
                return Err(BuildError::Network(m));
            }
        }
        self.rt.start(id)?;
        // The output streams as it is written; a follower thread reads the log until the
        // container exits, this one forwards it and enforces the timeout.
        let follower = self.rt.follow_logs(id, None)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let deadline = std::time::Instant::now() + RUN_TIMEOUT;
        let mut timed_out = false;
        std::thread::scope(|s| {
            s.spawn(move || {
                for e in follower {
                    if tx.send(e).is_err() {
                        break;
                    }
                }
            });
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(e) => out(Event::Output(e.log)),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if !timed_out && std::time::Instant::now() > deadline {
                            timed_out = true;
                            let _ = self.rt.kill_init(id);
                        }
                    }
                }
            }
        });
        let status = self.rt.wait(id, Some(Duration::from_secs(30)))?;
        if timed_out {
            return Err(BuildError::Runtime(swarm_runtime::RuntimeError::Timeout {
                id: id.to_string(),
                after: RUN_TIMEOUT,
            }));
        }
        Ok(status.code)
    }
}

/// The files a RUN with a network gets bind-mounted (`/etc/hosts`, `/etc/hostname`,
/// `/etc/resolv.conf`) are not the image's: where the image had none, the empty mount target
/// the runtime made is left out of the layer (what RUN writes to them never reaches it).
fn drop_mount_targets(upper: &Path) {
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = upper.join(f);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The variables a word sees: the stage's build arguments, then ENV (which wins).
fn variables(cur: &Current) -> BTreeMap<String, String> {
    let mut v = cur.args.clone();
    for e in &cur.config.env {
        if let Some((k, val)) = e.split_once('=') {
            v.insert(k.to_string(), val.to_string());
        }
    }
    v
}

/// A global ARG's default (an ARG without a value inside a stage takes it).
fn global_default(df: &Dockerfile, name: &str, lexer: &Lexer) -> Option<String> {
    df.nodes
        .iter()
        .take_while(|n| !matches!(n.instruction, Instruction::From(_)))
        .filter_map(|n| match &n.instruction {
            Instruction::Arg(d) => Some(d),
            _ => None,
        })
        .flatten()
        .filter(|d| d.name == name)
        .filter_map(|d| d.default.as_ref())
        .last()
        .and_then(|d| lexer.expand(d, |_| None).ok())
}

fn expand_pairs(
    kvs: &[KeyValue],
    x: &dyn Fn(&str) -> Result<String, BuildError>,
) -> Result<Vec<(String, String)>, BuildError> {
    kvs.iter()
        .map(|kv| Ok((x(&kv.key)?, x(&kv.value)?)))
        .collect()
}

/// Shell form runs through the image's SHELL (default `/bin/sh -c`).
fn argv(cl: &CommandLine, c: &ImageConfig) -> Vec<String> {
    match cl {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = c
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            v.push(s.clone());
            v
        }
    }
}

fn healthcheck(h: &Healthcheck) -> swarm_runtime::image::ImageHealthcheck {
    let ns = |d: Option<Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
    match h {
        Healthcheck::None => swarm_runtime::image::ImageHealthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        },
        Healthcheck::Cmd(hc) => swarm_runtime::image::ImageHealthcheck {
            test: match &hc.command {
                CommandLine::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.iter().cloned())
                    .collect(),
                CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            },
            interval: ns(hc.interval),
            timeout: ns(hc.timeout),
            start_period: ns(hc.start_period),
            retries: hc.retries.map(u64::from).unwrap_or(0),
        },
    }
}

/// A heredoc script as an executable file (kept until the step ends), closed: a file open
/// for writing cannot be executed (ETXTBSY).
/// A RUN container's id: unique per process and step (two builds of one Dockerfile at once
/// each run their own), also in its first 6 characters, which name its veth on the host.
fn container_id(key: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let unique = (u64::from(std::process::id()) << 20 ^ seq) & 0xff_ffff;
    format!("{unique:06x}-build-{}", &key[..12])
}

fn script_file(dir: &Path, body: &str) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::Builder::new()
        .prefix("heredoc-")
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempfile_in(dir)?;
    f.write_all(body.as_bytes())?;
    f.flush()?;
    Ok(f.into_temp_path())
}
