//! What a RUN sees besides its image: `--mount` (cache, tmpfs, bind, secret) and heredocs (a
//! script of its own, or the shell's input). Ssh mounts are refused: the CLI cannot forward
//! an ssh agent.
//!
//! Cache mounts are directories of the image store (`<store>/cache-mounts/`), kept across
//! builds and cleared by `image prune --build-cache`; their content never enters a layer or
//! the step's cache key (as BuildKit's). Bind mounts show the context or another stage
//! read-only (`rw`: a throw-away overlay), and what they show is part of the step's cache
//! key. Mount points the RUN had to create are dropped from its layer.

use super::*;
use crate::dockerfile::{CommandLine, Heredoc, Mount, MountType, RunArgs, Sharing};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use swarm_runtime::spec::MountSpec;

/// The mounts of one RUN, ready for its container, and what they hold until it ends.
pub(super) struct Extras {
    pub mounts: Vec<MountSpec>,
    /// The digests of what bind mounts show and of the heredocs, for the step's cache key.
    pub inputs: String,
    /// Mount points (image paths) to drop from the layer when the RUN created them empty.
    pub targets: Vec<String>,
    /// `NAME=value` of secrets exposed as environment variables (not in the cache key).
    pub env: Vec<String>,
    /// Locks of cache mounts, overlay views, private scratch directories: released on drop.
    _held: Vec<Held>,
}

enum Held {
    Lock(#[allow(dead_code)] fs::File),
    View(#[allow(dead_code)] view::RootView),
    Dir(#[allow(dead_code)] tempfile::TempDir),
}

impl Builder<'_> {
    /// Prepares every `--mount` of `r` (values expanded with `x`) and the heredoc script.
    pub(super) fn run_extras(
        &self,
        req: &Request,
        cur: &Current,
        earlier: &Earlier,
        r: &RunArgs,
        x: &mut dyn FnMut(&str) -> Result<String, crate::shell::ExpandError>,
    ) -> Result<Extras, String> {
        let mut e = Extras {
            mounts: Vec::new(),
            inputs: String::new(),
            targets: Vec::new(),
            env: Vec::new(),
            _held: Vec::new(),
        };
        let wd = cur.config.working_dir.clone().unwrap_or_else(|| "/".into());
        for rm in &r.mounts {
            let m = match &rm.mount {
                Some(m) => m.clone(),
                None => rm
                    .resolve(&mut *x)
                    .map_err(|err| format!("--mount={}: {err}", rm.spec))?,
            };
            let fail = |why: String| format!("--mount={}: {why}", rm.spec);
            match m.kind {
                MountType::Ssh => return Err(fail(
                    "type=ssh mounts are not supported by this builder yet (swarmctl image build cannot forward an ssh agent): pass what the step needs with --secret and RUN --mount=type=secret".into(),
                )),
                MountType::Secret => {
                    self.secret_mount(req, &m, &wd, &mut e).map_err(fail)?;
                    continue;
                }
                _ => {}
            }
            let target = match &m.target {
                Some(t) => absolute(t, &wd),
                None => return Err(fail("needs target=<path>".into())),
            };
            if target == "/" {
                return Err(fail("cannot mount over the root directory".into()));
            }
            match m.kind {
                MountType::Cache => self.cache_mount(&m, &target, &mut e).map_err(fail)?,
                MountType::Tmpfs => e.mounts.push(MountSpec::Tmpfs {
                    destination: target.clone().into(),
                    size_bytes: m.size,
                    mode: None,
                }),
                MountType::Bind => self
                    .bind_mount(req, earlier, &m, &target, &mut e)
                    .map_err(fail)?,
                MountType::Secret | MountType::Ssh => {} // handled above
            }
            e.targets.push(target);
        }
        for h in &r.heredocs {
            e.inputs.push_str(&format!(
                "heredoc {} {} {}\n",
                h.name,
                h.fd,
                hex(&Sha256::digest(h.content.as_bytes()))
            ));
        }
        Ok(e)
    }

    /// `type=secret`: a `--secret` of the build as a read-only file (default
    /// `/run/secrets/ID`) written to a tmpfs of the host, and/or as an environment variable
    /// (`env=`) of this RUN only. A secret the build was not given is skipped unless
    /// `required`.
    fn secret_mount(
        &self,
        req: &Request,
        m: &Mount,
        wd: &str,
        e: &mut Extras,
    ) -> Result<(), String> {
        let id = match (&m.id, &m.target) {
            (Some(id), _) => id.clone(),
            (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
            (None, None) => return Err("a secret mount needs id= (or target=)".into()),
        };
        let Some(value) = req.secrets.0.get(&id) else {
            if m.required {
                return Err(format!(
                    "secret {id} is required but the build has none: pass --secret id={id},src=FILE"
                ));
            }
            return Ok(());
        };
        if let Some(var) = &m.env {
            let v = String::from_utf8(value.clone())
                .map_err(|_| format!("secret {id} is not text, so it cannot be env={var}"))?;
            e.env.push(format!("{var}={v}"));
            if m.target.is_none() {
                return Ok(());
            }
        }
        let target = match &m.target {
            Some(t) => absolute(t, wd),
            None => format!("/run/secrets/{id}"),
        };
        // On a tmpfs when the host has one: a secret never reaches a disk.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            self.dir.as_path()
        };
        let dir = tempfile::Builder::new()
            .prefix("swarm-build-secret-")
            .tempdir_in(base)
            .map_err(|err| format!("secret {id}: {err}"))?;
        let file = dir.path().join("secret");
        let write = || -> std::io::Result<()> {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
            fs::write(&file, value)?;
            fs::set_permissions(&file, fs::Permissions::from_mode(m.mode.unwrap_or(0o400)))?;
            std::os::unix::fs::chown(&file, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
        };
        write().map_err(|err| format!("secret {id}: {err}"))?;
        e._held.push(Held::Dir(dir));
        e.mounts.push(MountSpec::Bind {
            source: file,
            destination: target.clone().into(),
            readonly: true,
            propagation: Default::default(),
            copy_up: false,
        });
        e.targets.push(target);
        Ok(())
    }

    /// `type=cache`: a directory kept in the image store per id (default: the target).
    fn cache_mount(&self, m: &Mount, target: &str, e: &mut Extras) -> Result<(), String> {
        if m.from.is_some() {
            return Err(
                "cache mounts seeded from a stage (from=) are not supported by this builder yet"
                    .into(),
            );
        }
        let id = m.id.clone().unwrap_or_else(|| target.to_string());
        let name = hex(&Sha256::digest(id.as_bytes()))[..32].to_string();
        let base = cache_mounts_dir(self.store.root());
        let dir = base.join(&name);
        let io = |what: &str, p: &Path, err: std::io::Error| {
            format!("cache mount {id:?}: {what} {}: {err}", p.display())
        };
        fs::create_dir_all(&base).map_err(|err| io("create", &base, err))?;
        let lock_path = base.join(format!("{name}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| io("open", &lock_path, err))?;
        let mut source = dir.clone();
        match m.sharing.unwrap_or(Sharing::Shared) {
            Sharing::Shared => lock
                .lock_shared()
                .map_err(|err| io("lock", &lock_path, err))?,
            Sharing::Locked => lock.lock().map_err(|err| io("lock", &lock_path, err))?,
            Sharing::Private => {
                if lock.try_lock().is_err() {
                    // In use elsewhere: this step gets an empty one of its own.
                    let t = tempfile::Builder::new()
                        .prefix("cache-private-")
                        .tempdir_in(&self.dir)
                        .map_err(|err| io("create", &self.dir, err))?;
                    source = t.path().join("d");
                    e._held.push(Held::Dir(t));
                }
            }
        }
        e._held.push(Held::Lock(lock));
        if !source.exists() {
            fs::create_dir(&source).map_err(|err| io("create", &source, err))?;
            let mode = m.mode.unwrap_or(0o755);
            fs::set_permissions(&source, fs::Permissions::from_mode(mode))
                .map_err(|err| io("chmod", &source, err))?;
            std::os::unix::fs::chown(&source, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                .map_err(|err| io("chown", &source, err))?;
        }
        e.mounts.push(MountSpec::Bind {
            source,
            destination: target.into(),
            readonly: m.read_only,
            propagation: Default::default(),
            copy_up: false,
        });
        Ok(())
    }

    /// `type=bind`: a path of the context (default) or of `from=` (a stage or an image).
    fn bind_mount(
        &self,
        req: &Request,
        earlier: &Earlier,
        m: &Mount,
        target: &str,
        e: &mut Extras,
    ) -> Result<(), String> {
        let root = match &m.from {
            None => req.context.clone(),
            Some(f) => {
                let layers = match earlier.image(self.store, f)? {
                    Some(d) => {
                        self.store
                            .prepare(d.as_str())
                            .map_err(|err| err.to_string())?
                            .layers
                    }
                    None => Vec::new(),
                };
                let v = view::RootView::open(&layers, &self.dir)
                    .map_err(|err| format!("cannot mount the filesystem of from={f}: {err}"))?;
                let p = v.path().to_path_buf();
                e._held.push(Held::View(v));
                p
            }
        };
        let rel = m.source.as_deref().unwrap_or("/").trim_start_matches('/');
        let src = context::resolve_in(&root, Path::new(rel)).map_err(|err| {
            let origin = m
                .from
                .as_deref()
                .map_or("the build context".to_string(), |f| format!("from={f}"));
            format!(
                "source {:?} in {origin}: {err}",
                m.source.as_deref().unwrap_or("/")
            )
        })?;
        let digest = tree_digest(&src).map_err(|err| format!("read {}: {err}", src.display()))?;
        e.inputs.push_str(&format!("bind {target} {digest}\n"));
        let source = if m.read_only {
            src
        } else {
            let v = view::RootView::writable(&src, &self.dir)
                .map_err(|err| format!("cannot make a writable copy of the source: {err}"))?;
            let p = v.path().to_path_buf();
            e._held.push(Held::View(v));
            p
        };
        e.mounts.push(MountSpec::Bind {
            source,
            destination: target.into(),
            readonly: m.read_only,
            propagation: Default::default(),
            copy_up: false,
        });
        Ok(())
    }
}

/// Where cache mounts live in an image store.
pub(crate) fn cache_mounts_dir(store_root: &Path) -> PathBuf {
    store_root.join("cache-mounts")
}

/// Removes every cache mount no build uses now (`image prune --build-cache`); returns how
/// many were removed.
pub fn clear_cache_mounts(store_root: &Path) -> std::io::Result<usize> {
    let base = cache_mounts_dir(store_root);
    let Ok(rd) = fs::read_dir(&base) else {
        return Ok(0);
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let p = ent.path();
        if !p.is_dir() {
            continue;
        }
        let lock_path = p.with_extension("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        if lock.try_lock().is_err() {
            continue; // a build is using it
        }
        fs::remove_dir_all(&p)?;
        let _ = fs::remove_file(&lock_path);
        n += 1;
    }
    Ok(n)
}

/// `t` as an absolute image path (relative to the working directory).
fn absolute(t: &str, wd: &str) -> String {
    let joined = if t.starts_with('/') {
        t.to_string()
    } else {
        format!("{}/{t}", wd.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A digest of a file tree: every entry's relative path, type, mode, owner and content (or
/// link target), in a fixed order; a plain file is its own tree.
fn tree_digest(root: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        // `root.join("")` would add a slash, which a plain file refuses.
        let p = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let md = fs::symlink_metadata(&p)?;
        // The root's own attributes are the node's scratch directory's, not the source's.
        if !rel.as_os_str().is_empty() {
            h.update(format!(
                "{}\0{:o}\0{}:{}\0",
                rel.display(),
                md.mode(),
                md.uid(),
                md.gid()
            ));
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            h.update(fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            h.update(super::context::file_digest(&p)?);
        } else if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            // Popped in reverse: pushed in reverse order, visited in name order.
            names.sort();
            for n in names.into_iter().rev() {
                stack.push(rel.join(n));
            }
        }
        h.update(b"\n");
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Drops from a RUN's upper directory the mount points it created and left empty (the
/// image had nothing there): a cache or bind target is not part of the image.
pub(super) fn drop_created_mount_points(upper: &Path, lower: &[PathBuf], targets: &[String]) {
    let in_image = |rel: &Path| {
        lower
            .iter()
            .any(|l| fs::symlink_metadata(l.join(rel)).is_ok())
    };
    for t in targets {
        let mut rel = Path::new(t.trim_start_matches('/'));
        if in_image(rel) {
            continue;
        }
        let p = upper.join(rel);
        let removed = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir(&p).is_ok(), // only when empty
            Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(&p).is_ok(),
            _ => false,
        };
        if !removed {
            continue;
        }
        // And the directories made only to hold it (`/in` for a target `/in/file`).
        while let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            if in_image(parent) || fs::remove_dir(upper.join(parent)).is_err() {
                break;
            }
            rel = parent;
        }
    }
}

/// The command a RUN executes, heredocs included: `RUN <<EOF` alone runs the heredoc as its
/// script (directly when it starts with `#!`, through the shell otherwise); a command with
/// heredocs goes to the shell with their bodies after it, as a shell script would hold them.
/// Returns the argv and, for a `#!` script, the file to write it to (`/dev/pipes/NAME`).
pub(super) fn command(
    cl: &CommandLine,
    heredocs: &[Heredoc],
    shell: &[String],
) -> Result<(Vec<String>, Option<Script>), String> {
    let with_shell = |script: String| {
        let mut v = shell.to_vec();
        v.push(script);
        v
    };
    match (cl, heredocs) {
        (CommandLine::Exec(v), []) => Ok((v.clone(), None)),
        (CommandLine::Exec(_), _) => Err("heredocs need the shell form of RUN".into()),
        (CommandLine::Shell(s), []) => Ok((with_shell(s.clone()), None)),
        (CommandLine::Shell(s), [h]) if only_heredoc(s, h) => {
            if h.content.starts_with("#!") {
                let path = format!("/dev/pipes/{}", h.name);
                Ok((vec![path.clone()], Some((path, h.content.clone()))))
            } else {
                Ok((with_shell(h.content.clone()), None))
            }
        }
        (CommandLine::Shell(s), hs) => {
            let mut script = s.clone();
            script.push('\n');
            for h in hs {
                script.push_str(&h.content);
                script.push_str(&h.name);
                script.push('\n');
            }
            Ok((with_shell(script), None))
        }
    }
}

/// A `#!` heredoc: where it goes in the container, and its body.
pub(super) type Script = (String, String);

/// `<<EOF`, `<<-EOF`, `<< "EOF"`: the command is the heredoc and nothing else.
fn only_heredoc(cmd: &str, h: &Heredoc) -> bool {
    if h.fd != 0 {
        return false;
    }
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    let unquoted = rest.trim_matches(|c| c == '"' || c == '\'');
    unquoted == h.name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            fd: 0,
            chomp: false,
            expand: true,
            content: content.into(),
        }
    }

    #[test]
    fn heredoc_commands_are_built_as_buildkit_builds_them() {
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        let script = doc("EOF", "echo a\necho b\n");
        let (argv, file) = command(
            &CommandLine::Shell("<<EOF".into()),
            std::slice::from_ref(&script),
            &sh,
        )
        .unwrap();
        assert_eq!(argv, ["/bin/sh", "-c", "echo a\necho b\n"]);
        assert!(file.is_none());
        let (argv, _) = command(
            &CommandLine::Shell("<<-'EOF'".into()),
            std::slice::from_ref(&script),
            &sh,
        )
        .unwrap();
        assert_eq!(argv[2], "echo a\necho b\n");

        let py = doc("EOF", "#!/bin/sh\necho hi\n");
        let (argv, file) = command(&CommandLine::Shell("<<EOF".into()), &[py], &sh).unwrap();
        assert_eq!(argv, ["/dev/pipes/EOF"]);
        assert_eq!(file.unwrap().1, "#!/bin/sh\necho hi\n");

        let (argv, _) = command(
            &CommandLine::Shell("cat <<A > /a && cat <<B > /b".into()),
            &[doc("A", "one\n"), doc("B", "two\n")],
            &sh,
        )
        .unwrap();
        assert_eq!(argv[2], "cat <<A > /a && cat <<B > /b\none\nA\ntwo\nB\n");
        assert!(command(&CommandLine::Exec(vec!["x".into()]), &[script], &sh).is_err());
    }

    #[test]
    fn mount_targets_are_absolute_image_paths() {
        assert_eq!(absolute("cache", "/src"), "/src/cache");
        assert_eq!(absolute("/root/.cache/", "/src"), "/root/.cache");
        assert_eq!(absolute("../../x", "/a"), "/x");
        assert_eq!(absolute(".", "/"), "/");
    }

    #[test]
    fn a_tree_digest_changes_with_content_names_and_modes() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/a"), "1").unwrap();
        let d1 = tree_digest(t.path()).unwrap();
        assert_eq!(d1, tree_digest(t.path()).unwrap());
        fs::write(t.path().join("d/a"), "2").unwrap();
        let d2 = tree_digest(t.path()).unwrap();
        assert_ne!(d1, d2);
        fs::set_permissions(t.path().join("d/a"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(d2, tree_digest(t.path()).unwrap());
        fs::rename(t.path().join("d/a"), t.path().join("d/b")).unwrap();
        assert_ne!(d2, tree_digest(t.path()).unwrap());
    }
}
