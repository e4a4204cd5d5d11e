//! COPY and ADD of plain files from the build context: the sources (globs with Go's
//! `filepath.Match` rules, `.dockerignore` applied, never outside the context) written as a
//! layer at the destination, owned by root unless `--chown`, with `--chmod`. Parent
//! directories the layer needs carry the attributes they have in the image (a layer entry for
//! `/tmp` must not turn its 1777 into 0755), or 0755 root when the image has none.

use super::*;
use crate::dockerfile::{Source, Transfer};
use crate::ignore::IgnoreMatcher;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Component;

mod layer;
use layer::LayerWriter;

/// One entry of the layer: where it goes in the image and where it comes from.
/// What a COPY or ADD copies.
pub(super) struct Sources<'a> {
    /// The sources and the destination.
    pub t: &'a Transfer,
    /// `--from`: its name and image (`None`: a stage on scratch with nothing in it).
    pub from: Option<(&'a str, Option<&'a Digest>)>,
    /// ADD: local tar archives (plain or gzip) are unpacked at the destination.
    pub unpack: bool,
    /// `COPY --parents`: sources keep their paths under the destination.
    pub parents: bool,
    /// `ADD --checksum=sha256:HEX` of a URL source.
    pub checksum: Option<&'a str>,
}

enum Item {
    Path {
        src: PathBuf,
        dest: String,
    },
    Data {
        bytes: Vec<u8>,
        dest: String,
    },
    /// A tar archive whose entries go under the destination.
    Archive {
        src: PathBuf,
        gzip: bool,
    },
}

struct Owner {
    uid: u64,
    gid: u64,
    /// `--chown` was given (archive entries keep their own owners otherwise).
    chown: bool,
    mode: Option<u32>,
}

impl Builder<'_> {
    pub(super) fn copy(
        &self,
        (df, node): (&Dockerfile, &Node),
        req: &Request,
        cur: &mut Current,
        Sources {
            t,
            from,
            unpack,
            parents,
            checksum,
        }: Sources<'_>,
        x: &dyn Fn(&str) -> Result<String, BuildError>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        let fail = |m: String| step_err(df, node, m);
        // --exclude: .dockerignore patterns over the paths of the sources (from the context
        // or --from root) and of the files inside a copied directory.
        let excluded: Vec<String> = t.exclude.iter().map(|e| x(e)).collect::<Result<_, _>>()?;
        let exclude = IgnoreMatcher::from_patterns(excluded.iter().map(String::as_str))
            .map_err(|e| fail(format!("--exclude: {e}")))?;
        // Names in --chown are looked up in the image the files are copied into.
        let image_file = |rel: &str| -> Result<String, String> {
            let layers = match &cur.image {
                Some(d) => {
                    self.store
                        .prepare(d.as_str())
                        .map_err(|e| e.to_string())?
                        .layers
                }
                None => Vec::new(),
            };
            let v = view::RootView::open(&layers, &self.dir).map_err(|e| e.to_string())?;
            let p = resolve_in(v.path(), Path::new(rel.trim_start_matches('/')))
                .map_err(|e| e.to_string())?;
            fs::read_to_string(p).map_err(|e| e.to_string())
        };
        let owner = owner(t, x, &image_file).map_err(fail)?;
        let mut dest = x(&t.dest)?;
        if !dest.starts_with('/') {
            let wd = cur.config.working_dir.clone().unwrap_or_else(|| "/".into());
            dest = format!("{}/{dest}", wd.trim_end_matches('/'));
        }
        // Where the sources come from: the context (with .dockerignore), or the filesystem
        // of an earlier stage or an image (`--from`, nothing ignored).
        let view;
        let (root, ignore, origin) = match from {
            None => (
                req.context.clone(),
                context_ignore(&req.context).map_err(fail)?,
                Origin::Context,
            ),
            Some((name, image)) => {
                let layers = match image {
                    Some(d) => self.store.prepare(d.as_str())?.layers,
                    None => Vec::new(),
                };
                view = view::RootView::open(&layers, &self.dir).map_err(|e| {
                    fail(format!("cannot mount the filesystem of --from={name}: {e}"))
                })?;
                (
                    view.path().to_path_buf(),
                    IgnoreMatcher::default(),
                    Origin::From(name),
                )
            }
        };
        let root = root
            .canonicalize()
            .map_err(|e| fail(format!("{}: {e}", root.display())))?;
        // Downloads of ADD's URLs, removed when the step ends.
        let downloads = tempfile::Builder::new()
            .prefix("add-")
            .tempdir_in(&self.dir)
            .map_err(|source| BuildError::Io {
                path: self.dir.clone(),
                source,
            })?;
        let items = self.items(
            (t, unpack, parents, checksum),
            (&root, &ignore, &exclude, &origin),
            &dest,
            downloads.path(),
            x,
            &fail,
        )?;
        let into_dir = dest.ends_with('/')
            || parents
            || items.len() > 1
            || items.iter().any(|i| match i {
                Item::Path { src, .. } => src.is_dir(),
                Item::Archive { .. } => true,
                Item::Data { .. } => false,
            });
        let dest = dest.trim_end_matches('/');
        self.commit_items(
            node,
            req,
            cur,
            &items,
            (dest, into_dir),
            (&ignore, &exclude, parents, &root, &owner),
            out,
        )
    }

    /// The entries a COPY/ADD writes: each source expanded (globs, directories), ADD's URLs
    /// downloaded into `downloads`, local archives marked for unpacking (ADD).
    fn items(
        &self,
        (t, unpack, parents, checksum): (&Transfer, bool, bool, Option<&str>),
        (root, ignore, exclude, origin): (&Path, &IgnoreMatcher, &IgnoreMatcher, &Origin<'_>),
        dest: &str,
        downloads: &Path,
        x: &dyn Fn(&str) -> Result<String, BuildError>,
        fail: &dyn Fn(String) -> BuildError,
    ) -> Result<Vec<Item>, BuildError> {
        let mut items = Vec::new();
        for s in &t.sources {
            match s {
                Source::Heredoc(h) => items.push(Item::Data {
                    bytes: h.content.as_bytes().to_vec(),
                    dest: h.name.clone(),
                }),
                Source::Path(p) if p.contains("://") => {
                    let url = x(p)?;
                    let (src, name) = self
                        .download(&url, checksum, downloads, items.len())
                        .map_err(fail)?;
                    if name.is_empty() && dest.ends_with('/') {
                        return Err(fail(format!(
                            "{url}: the URL names no file: give the destination as a file path"
                        )));
                    }
                    items.push(Item::Path { src, dest: name });
                }
                Source::Path(p) => {
                    let found =
                        sources(root, &x(p)?, (ignore, exclude), origin, parents).map_err(fail)?;
                    for (src, name) in found {
                        let archive = match unpack && src.is_file() {
                            true => archive_kind(&src).map_err(|e| fail(format!("{p}: {e}")))?,
                            false => None,
                        };
                        items.push(match archive {
                            Some(gzip) => Item::Archive { src, gzip },
                            None => Item::Path { dest: name, src },
                        });
                    }
                }
            }
        }
        if items.is_empty() {
            return Err(fail(format!(
                "no source files were specified or matched in {origin}"
            )));
        }
        Ok(items)
    }

    /// Writes `items` as one layer at `dest` (a directory when `into_dir`) and commits it on
    /// `cur` under the step's cache key (the layer's digest stands for the sources).
    #[allow(clippy::too_many_arguments)]
    fn commit_items(
        &self,
        node: &Node,
        req: &Request,
        cur: &mut Current,
        items: &[Item],
        (dest, into_dir): (&str, bool),
        w: (&IgnoreMatcher, &IgnoreMatcher, bool, &Path, &Owner),
        out: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        let (ignore, exclude, parents, root, owner) = w;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let layer = self
            .dir
            .join(format!("copy-{}-{seq}.tar", std::process::id()));
        let lower = match &cur.image {
            Some(d) => self.store.prepare(d.as_str())?.layers,
            None => Vec::new(),
        };
        let io = |source| BuildError::Io {
            path: layer.clone(),
            source,
        };
        let mut tb = tar::Builder::new(fs::File::create(&layer).map_err(io)?);
        let mut w = LayerWriter {
            tar: &mut tb,
            ignore,
            exclude,
            parents,
            context: root,
            owner,
        };
        w.parents(dest, into_dir, &lower).map_err(io)?;
        for item in items {
            w.item(item, dest, into_dir).map_err(io)?;
        }
        tb.into_inner().map_err(io)?;
        let digest = file_digest(&layer).map_err(io)?;
        let key = cache_key(cur, node.original.trim(), &digest);
        let created_by = node.original.trim().to_string();
        let res = self.commit(cur, Some(&layer), &created_by, &key, req);
        let _ = fs::remove_file(&layer);
        if res? {
            out(Event::Cached);
        }
        let diff = Digest::parse(&format!("sha256:{digest}"))?;
        cur.follow(&created_by, Some(&diff));
        Ok(())
    }
}

impl Builder<'_> {
    /// ADD's URL source: downloaded into `dir` (mode 0600 and the server's Last-Modified
    /// time, as Docker does; never unpacked), checked against `--checksum`. Returns the file
    /// and the name it takes under a directory destination (the URL path's last segment).
    fn download(
        &self,
        url: &str,
        checksum: Option<&str>,
        dir: &Path,
        seq: usize,
    ) -> Result<(PathBuf, String), String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        if !matches!(scheme, "http" | "https") {
            return Err(format!(
                "{url}: ADD fetches http and https URLs only (git and other sources are not supported)"
            ));
        }
        let fetch = self
            .fetch
            .ok_or_else(|| format!("{url}: this builder cannot download (no HTTP client)"))?;
        let path = rest.split(['?', '#']).next().unwrap_or("");
        let name = path
            .split_once('/')
            .map(|(_, p)| p.rsplit('/').next().unwrap_or(""))
            .unwrap_or("")
            .to_string();
        let file = dir.join(format!("{seq}"));
        let modified = fetch.fetch(url, &file, crate::MAX_CONTEXT_BYTES)?;
        if let Some(want) = checksum {
            let hex = want.strip_prefix("sha256:").ok_or_else(|| {
                format!(
                    "--checksum={want}: expected sha256:HEX (other algorithms are not supported)"
                )
            })?;
            let got = file_digest(&file).map_err(|e| e.to_string())?;
            if !got.eq_ignore_ascii_case(hex) {
                return Err(format!(
                    "{url}: checksum mismatch: --checksum says sha256:{hex}, the download is sha256:{got}"
                ));
            }
        }
        let set = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
            if let Some(t) = modified {
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                fs::File::options()
                    .write(true)
                    .open(&file)?
                    .set_modified(when)?;
            }
            Ok(())
        };
        set().map_err(|e| format!("{url}: {e}"))?;
        Ok((file, name))
    }
}

/// `--chown=user[:group]` (ids, or names from the image's `/etc/passwd` and `/etc/group`,
/// which `file` reads; without a group the gid is the uid, as Docker does) and `--chmod`
/// (octal).
fn owner(
    t: &Transfer,
    x: &dyn Fn(&str) -> Result<String, BuildError>,
    file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Owner, String> {
    let (mut uid, mut gid) = (0, 0);
    if let Some(c) = &t.chown {
        let c = x(c).map_err(|e| e.to_string())?;
        let (u, g) = match c.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (c.as_str(), None),
        };
        let id = |name: &str, db: &str| -> Result<u64, String> {
            if let Ok(n) = name.parse::<u64>() {
                return Ok(n);
            }
            if name.is_empty() {
                return Err(format!("--chown={c}: expected user[:group]"));
            }
            let text = file(db).map_err(|e| {
                format!("--chown={c}: {name} is a name, and the image has no readable {db} ({e}): use numeric ids")
            })?;
            lookup_id(&text, name)
                .ok_or_else(|| format!("--chown={c}: no {name} in the image's {db}"))
        };
        uid = id(u, "/etc/passwd")?;
        gid = match g {
            Some(g) => id(g, "/etc/group")?,
            None => uid,
        };
    }
    let mode = match &t.chmod {
        Some(m) => Some(
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("--chmod={m}: expected an octal mode like 0644"))?,
        ),
        None => None,
    };
    Ok(Owner {
        uid,
        gid,
        chown: t.chown.is_some(),
        mode,
    })
}

/// The id of `name` in a passwd or group file (`name:x:ID:...`).
fn lookup_id(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name)).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Whether a file ADD would unpack: `Some(false)` a plain tar, `Some(true)` a gzip'd one,
/// `None` anything else (copied as a file). Other compressions are refused by name.
fn archive_kind(p: &Path) -> Result<Option<bool>, String> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(p).map_err(|e| e.to_string())?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(e.to_string()),
        }
    }
    let h = &head[..n];
    if h.starts_with(&[0x1f, 0x8b]) {
        return Ok(Some(true));
    }
    if h.len() >= 262 && &h[257..262] == b"ustar" {
        return Ok(Some(false));
    }
    let other = [
        (&b"BZh"[..], "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0][..], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd"),
    ];
    match other.iter().find(|(m, _)| h.starts_with(m)) {
        Some((_, name)) => Err(format!(
            "a {name}-compressed archive: this builder unpacks plain and gzip tar archives only so far (recompress it, or ADD --unpack=false and unpack it in a RUN step)"
        )),
        None => Ok(None),
    }
}

/// The context's `.dockerignore` (none: nothing excluded).
fn context_ignore(context: &Path) -> Result<IgnoreMatcher, String> {
    match fs::read_to_string(context.join(".dockerignore")) {
        Ok(s) => IgnoreMatcher::parse(&s).map_err(|e| e.to_string()),
        Err(_) => Ok(IgnoreMatcher::default()),
    }
}

/// `rest` under the layer directory `dir` ("" is the root: no leading slash in a tar path).
fn under(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

/// Where COPY/ADD sources are read from, as errors name it.
enum Origin<'a> {
    Context,
    From(&'a str),
    /// Entries of an archive ADD unpacks.
    Archive,
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Context => f.write_str("the build context"),
            Origin::From(n) => write!(f, "--from={n}"),
            Origin::Archive => f.write_str("the archive's destination"),
        }
    }
}

/// A source path cleaned and kept inside its root (`..` may not leave it).
fn clean(p: &str, origin: &Origin) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            // The guard pops: a `..` that has nothing left to pop leaves the root.
            Component::ParentDir if !out.pop() => {
                return Err(format!("{p} is outside {origin}"));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// How many symbolic links one source path may go through.
const MAX_LINKS: usize = 40;

/// `rel` under `root` with every symbolic link on the way followed *inside* `root`: an
/// absolute target starts again at `root`, and `..` stops at `root` (as Docker resolves
/// COPY sources in a context or a stage's filesystem), so no link reaches a host file.
pub(super) fn resolve_in(root: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        match fs::symlink_metadata(root.join(&next)) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(std::io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        rel.display()
                    )));
                }
                let target = fs::read_link(root.join(&next))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => cur = next,
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(cur))
}

/// The files source `p` names under `root`: itself, or what its glob matches (top-most
/// matches), each with symbolic links resolved inside `root` and the name it is copied as.
fn sources(
    root: &Path,
    p: &str,
    (ignore, exclude): (&IgnoreMatcher, &IgnoreMatcher),
    origin: &Origin,
    parents: bool,
) -> Result<Vec<(PathBuf, String)>, String> {
    let rel = clean(p, origin)?;
    let rel_s = rel.to_string_lossy().into_owned();
    let named = |r: &Path| {
        let real = resolve_in(root, r).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{p}: not found in {origin}"),
            _ => format!("{p}: {e}"),
        })?;
        // With --parents a source keeps its whole path, else its last name.
        let name = match parents {
            true => r.to_string_lossy().into_owned(),
            false => r
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Ok::<_, String>((real, name))
    };
    if !p.contains(['*', '?', '[']) {
        if !rel_s.is_empty() && ignore.excluded(&rel_s) {
            return Err(format!("{p}: excluded by .dockerignore"));
        }
        if !rel_s.is_empty() && exclude.excluded(&rel_s) {
            return Ok(Vec::new());
        }
        return Ok(vec![named(&rel)?]);
    }
    let glob = IgnoreMatcher::from_patterns([rel_s.as_str()]).map_err(|e| e.to_string())?;
    let mut matched = Vec::new();
    walk(root, Path::new(""), &mut |r, _| {
        let s = r.to_string_lossy();
        if ignore.excluded(&s) || exclude.excluded(&s) {
            return false;
        }
        if glob.excluded(&s) {
            matched.push(r.to_path_buf());
            return false;
        }
        true
    })
    .map_err(|e| e.to_string())?;
    matched.iter().map(|r| named(r)).collect()
}

/// Visits `root/rel`'s entries in name order; `f` says whether to descend into a directory.
fn walk(
    root: &Path,
    rel: &Path,
    f: &mut dyn FnMut(&Path, &fs::Metadata) -> bool,
) -> std::io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let r = rel.join(n);
        let md = fs::symlink_metadata(root.join(&r))?;
        if f(&r, &md) && md.is_dir() {
            walk(root, &r, f)?;
        }
    }
    Ok(())
}

pub(super) fn file_digest(p: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
