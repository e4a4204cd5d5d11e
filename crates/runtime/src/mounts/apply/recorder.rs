//! The recording test double of [`MountSys`]: a fake rootfs (directories, files and symlinks
//! by container path, symlinks never followed) that writes every call, with its outcome, as
//! one line, and fails the calls matching a pattern. It only imitates the kernel; what to
//! expect of the executor belongs to the tests, never here.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;

/// What the fake rootfs holds at a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File,
    Link(PathBuf),
}

/// A fake descriptor: its number (unique for the run) and the container path it was opened at.
#[derive(Debug)]
pub(super) struct Fd {
    pub(super) n: RawFd,
    pub(super) path: PathBuf,
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.n
    }
}

/// Calls whose line contains `pattern` fail with `errno`, `left` more times.
struct Fail {
    pattern: String,
    errno: i32,
    left: usize,
}

/// Every call as one line, e.g. `open(/proc) = 4`, `mkdir(/run, 755)`,
/// `mount(tmpfs, <4:/proc>, tmpfs, nosuid|nodev, size=0)` (`<N:path>` is the
/// `/proc/self/fd/N` of a descriptor opened at `path`, `-` a NULL argument), a failure as
/// ` = ERRNO` after it.
pub(super) struct Recorder {
    pub(super) calls: Vec<String>,
    fs: BTreeMap<PathBuf, Node>,
    fds: HashMap<RawFd, PathBuf>,
    next_fd: RawFd,
    fails: Vec<Fail>,
}

impl Recorder {
    /// An empty rootfs (only `/`).
    pub(super) fn new() -> Recorder {
        Recorder {
            calls: Vec::new(),
            fs: BTreeMap::from([(PathBuf::from("/"), Node::Dir)]),
            fds: HashMap::new(),
            next_fd: 3,
            fails: Vec::new(),
        }
    }
    pub(super) fn dir(mut self, p: &str) -> Recorder {
        self.fs.insert(p.into(), Node::Dir);
        self
    }
    pub(super) fn file(mut self, p: &str) -> Recorder {
        self.fs.insert(p.into(), Node::File);
        self
    }
    pub(super) fn link(mut self, p: &str, target: &str) -> Recorder {
        self.fs.insert(p.into(), Node::Link(target.into()));
        self
    }
    /// Every call whose line contains `pattern` fails with `errno`.
    pub(super) fn fail(self, pattern: &str, errno: i32) -> Recorder {
        self.fail_n(pattern, errno, usize::MAX)
    }
    /// The next `n` calls whose line contains `pattern` fail with `errno`.
    pub(super) fn fail_n(mut self, pattern: &str, errno: i32, n: usize) -> Recorder {
        self.fails.push(Fail {
            pattern: pattern.into(),
            errno,
            left: n,
        });
        self
    }
    /// [`apply_with`] on this double, the rootfs at `/rootfs`.
    pub(super) fn run(
        &mut self,
        ops: &[MountOp],
        owner: Option<(u32, u32)>,
    ) -> Result<(), MountError> {
        apply_with(self, Path::new("/rootfs"), ops, owner)
    }
    /// The calls that change the rootfs or read a link (not the opens nor stats), with the
    /// descriptor numbers left out: `<4:/proc>` reads `</proc>`.
    pub(super) fn effects(&self) -> Vec<String> {
        const KEEP: &[&str] = &[
            "mkdir(",
            "create(",
            "chown(",
            "symlink(",
            "readlink(",
            "mount(",
            "copy_up(",
        ];
        self.calls
            .iter()
            .filter(|c| KEEP.iter().any(|k| c.starts_with(k)))
            .map(|c| unnumbered(c))
            .collect()
    }

    /// Records `line`; fails it when it matches a failure pattern.
    fn call(&mut self, line: String) -> io::Result<()> {
        let errno = self
            .fails
            .iter_mut()
            .find(|f| f.left > 0 && line.contains(&f.pattern))
            .map(|f| {
                f.left -= 1;
                f.errno
            });
        self.calls.push(line);
        errno.map_or(Ok(()), |e| Err(io::Error::from_raw_os_error(e)))
    }
    /// Appends the outcome to the last line: ` = ERRNO`, or ` = what` when `ok` says something.
    fn outcome<T>(&mut self, r: io::Result<T>, ok: impl FnOnce(&T) -> String) -> io::Result<T> {
        let said = match &r {
            Ok(v) => ok(v),
            Err(e) => errno_name(e),
        };
        if !said.is_empty() {
            let last = self.calls.last_mut().expect("a call was recorded");
            last.push_str(" = ");
            last.push_str(&said);
        }
        r
    }
    fn lookup(&self, p: &Path) -> io::Result<&Node> {
        self.fs.get(p).ok_or_else(|| errno(libc::ENOENT))
    }
    /// Adds `node` at `p`, whose parent must be a directory.
    fn make(&mut self, p: PathBuf, node: Node) -> io::Result<()> {
        if self.fs.contains_key(&p) {
            return Err(errno(libc::EEXIST));
        }
        match self.lookup(p.parent().unwrap_or(Path::new("/")))? {
            Node::Dir => {}
            _ => return Err(errno(libc::ENOTDIR)),
        }
        self.fs.insert(p, node);
        Ok(())
    }
    fn open_fd(&mut self, path: &Path) -> Fd {
        let n = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(n, path.to_path_buf());
        Fd {
            n,
            path: path.to_path_buf(),
        }
    }
    /// `<N:path>` for a `/proc/self/fd/N` of ours, the path itself otherwise.
    fn show(&self, p: &Path) -> String {
        let fd = p
            .to_str()
            .and_then(|s| s.strip_prefix("/proc/self/fd/"))
            .and_then(|n| n.parse::<RawFd>().ok());
        match fd.and_then(|n| Some((n, self.fds.get(&n)?))) {
            Some((n, at)) => format!("<{n}:{}>", at.display()),
            None => p.display().to_string(),
        }
    }
}

impl MountSys for Recorder {
    type Fd = Fd;
    fn open_root(&mut self, dir: &Path) -> io::Result<Fd> {
        let r = self
            .call(format!("open_root({})", dir.display()))
            .map(|()| self.open_fd(Path::new("/")));
        self.outcome(r, |fd| fd.n.to_string())
    }
    fn open_in_root(&mut self, root: &Fd, path: &Path, flags: i32) -> io::Result<Fd> {
        assert_eq!(root.path, Path::new("/"), "resolved in the root only");
        let how = match flags {
            libc::O_PATH => "",
            f if f == libc::O_PATH | libc::O_DIRECTORY => ", dir",
            f => panic!("unexpected open flags {f:#x}"),
        };
        let r = self
            .call(format!("open({}{how})", path.display()))
            .and_then(|()| match self.lookup(path)? {
                Node::File | Node::Link(_) if flags & libc::O_DIRECTORY != 0 => {
                    Err(errno(libc::ENOTDIR))
                }
                _ => Ok(self.open_fd(path)),
            });
        self.outcome(r, |fd| fd.n.to_string())
    }
    fn mkdir(&mut self, dir: &Fd, name: &OsStr, mode: u32) -> io::Result<()> {
        let p = dir.path.join(name);
        let r = self
            .call(format!("mkdir({}, {mode:o})", p.display()))
            .and_then(|()| self.make(p, Node::Dir));
        self.outcome(r, |_| String::new())
    }
    fn create_file(&mut self, dir: &Fd, name: &OsStr, mode: u32) -> io::Result<()> {
        let p = dir.path.join(name);
        let r = self
            .call(format!("create({}, {mode:o})", p.display()))
            .and_then(|()| self.make(p, Node::File));
        self.outcome(r, |_| String::new())
    }
    fn chown(&mut self, dir: &Fd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let p = dir.path.join(name);
        let r = self.call(format!("chown({}, {uid}:{gid})", p.display()));
        self.outcome(r, |_| String::new())
    }
    fn symlink(&mut self, target: &str, dir: &Fd, name: &OsStr) -> io::Result<()> {
        let p = dir.path.join(name);
        let r = self
            .call(format!("symlink({} -> {target})", p.display()))
            .and_then(|()| self.make(p, Node::Link(target.into())));
        self.outcome(r, |_| String::new())
    }
    fn readlink(&mut self, dir: &Fd, name: &OsStr) -> io::Result<PathBuf> {
        let p = dir.path.join(name);
        let r = self
            .call(format!("readlink({})", p.display()))
            .and_then(|()| match self.lookup(&p)? {
                Node::Link(t) => Ok(t.clone()),
                _ => Err(errno(libc::EINVAL)),
            });
        self.outcome(r, |t| t.display().to_string())
    }
    fn file_type(&mut self, fd: &Fd) -> io::Result<libc::mode_t> {
        let line = format!("stat({})", self.show(&fd_path(fd)));
        let r = self.call(line).and_then(|()| {
            Ok(match self.lookup(&fd.path)? {
                Node::Dir => libc::S_IFDIR,
                Node::File => libc::S_IFREG,
                Node::Link(_) => libc::S_IFLNK,
            })
        });
        self.outcome(r, |t| {
            match *t {
                libc::S_IFDIR => "dir",
                libc::S_IFREG => "file",
                _ => "link",
            }
            .into()
        })
    }
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        let line = format!(
            "mount({}, {}, {}, {}, {})",
            source.map_or("-".into(), |s| self.show(s)),
            self.show(target),
            fstype.unwrap_or("-"),
            flag_names(flags),
            data.unwrap_or("-"),
        );
        let r = self.call(line);
        self.outcome(r, |_| String::new())
    }
    fn copy_up(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let line = format!("copy_up({} -> {})", self.show(from), to.display());
        let r = self.call(line);
        self.outcome(r, |_| String::new())
    }
}

pub(super) fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

fn errno_name(e: &io::Error) -> String {
    let n = e.raw_os_error().unwrap_or(0);
    let name = match n {
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ELOOP => "ELOOP",
        libc::EIO => "EIO",
        libc::EROFS => "EROFS",
        _ => return format!("errno {n}"),
    };
    name.into()
}

/// `bind|rec|nosuid`, in a fixed order; unknown bits in hex at the end.
pub(super) fn flag_names(flags: libc::c_ulong) -> String {
    const NAMES: &[(libc::c_ulong, &str)] = &[
        (libc::MS_BIND, "bind"),
        (libc::MS_REC, "rec"),
        (libc::MS_REMOUNT, "remount"),
        (libc::MS_RDONLY, "rdonly"),
        (libc::MS_NOSUID, "nosuid"),
        (libc::MS_NODEV, "nodev"),
        (libc::MS_NOEXEC, "noexec"),
        (libc::MS_STRICTATIME, "strictatime"),
        (libc::MS_PRIVATE, "private"),
        (libc::MS_SLAVE, "slave"),
        (libc::MS_SHARED, "shared"),
        (libc::MS_UNBINDABLE, "unbindable"),
    ];
    let mut out: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let rest = NAMES.iter().fold(flags, |f, (bit, _)| f & !bit);
    if rest != 0 || out.is_empty() {
        out.push(format!("{rest:#x}"));
    }
    out.join("|")
}

/// `line` without descriptor numbers: `<4:/proc>` reads `</proc>`.
fn unnumbered(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && rest[digits..].starts_with(':') {
            rest = &rest[digits + 1..];
        }
    }
    out.push_str(rest);
    out
}
