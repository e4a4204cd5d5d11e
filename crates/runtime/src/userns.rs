//! User namespaces (`swarmd --userns-remap`): the id maps, the subordinate-id files they come
//! from, the namespace a container's workload runs in, and idmapped mounts that show image
//! layers owned by the mapped ids without copying them. It owns no container lifecycle: the
//! init helpers call it.
//!
//! Model (see ARCHITECTURE.md, "User namespaces"): the create helper makes the namespace from
//! a short-lived holder process and keeps a descriptor of it; the container init sets the
//! container up as host root, mounting each image layer idmapped through that namespace, and
//! only the workload (and every `exec`) enters it before it takes its user. Container root is
//! then host uid `map(0)`, unprivileged on the host, and what it writes lands on disk under the
//! mapped ids.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of a uid or gid map: `size` ids from `container` on map onto `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The uid and gid maps of a container's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

/// Errors of id maps and subordinate-id files.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespace {which} map: {reason}")]
    Map { which: &'static str, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "no subordinate {kind} range for {user:?} in {path}; add one (e.g. `usermod --add-sub{kind}s 100000-165535 {user}`) or use --userns-remap default"
    )]
    NoRange {
        kind: &'static str,
        user: String,
        path: String,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The kernel takes at most this many lines per map.
const MAX_LINES: usize = 340;

fn check_ranges(which: &'static str, ranges: &[IdRange]) -> Result<(), UsernsError> {
    let bad = |reason: String| Err(UsernsError::Map { which, reason });
    if ranges.is_empty() {
        return bad("empty; map at least container id 0".into());
    }
    if ranges.len() > MAX_LINES {
        return bad(format!(
            "{} lines, the kernel takes at most {MAX_LINES}",
            ranges.len()
        ));
    }
    let end = |start: u32, size: u32| start as u64 + size as u64;
    for (i, r) in ranges.iter().enumerate() {
        if r.size == 0 {
            return bad(format!("line {} has size 0", i + 1));
        }
        if end(r.container, r.size) > u32::MAX as u64 || end(r.host, r.size) > u32::MAX as u64 {
            return bad(format!("line {} runs past the last id", i + 1));
        }
        for o in &ranges[..i] {
            let overlap =
                |a: u32, b: u32| (a as u64) < end(b, o.size) && (b as u64) < end(a, r.size);
            if overlap(r.container, o.container) || overlap(r.host, o.host) {
                return bad(format!("line {} overlaps an earlier line", i + 1));
            }
        }
    }
    Ok(())
}

fn lookup(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.container && (id - r.container) < r.size)
        .map(|r| r.host + (id - r.container))
}

fn proc_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

impl IdMap {
    /// Checks what the kernel would refuse, with a message that says which line.
    pub fn validate(&self) -> Result<(), UsernsError> {
        check_ranges("uid", &self.uids)?;
        check_ranges("gid", &self.gids)
    }

    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        lookup(&self.uids, id)
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        lookup(&self.gids, id)
    }

    /// Maps the given subordinate ranges onto container ids 0, 1, … in order (Docker's
    /// `--userns-remap`: several ranges of a user are concatenated).
    pub fn from_subordinate(uids: &[(u32, u32)], gids: &[(u32, u32)]) -> IdMap {
        let concat = |ranges: &[(u32, u32)]| {
            let mut next = 0u32;
            ranges
                .iter()
                .map(|&(host, size)| {
                    let r = IdRange {
                        container: next,
                        host,
                        size,
                    };
                    next = next.saturating_add(size);
                    r
                })
                .collect()
        };
        IdMap {
            uids: concat(uids),
            gids: concat(gids),
        }
    }
}

/// The ranges `/etc/subuid` or `/etc/subgid` (`name:start:count` lines) gives `name` or `id`.
pub fn subordinate_ranges(
    path: &str,
    text: &str,
    name: &str,
    id: Option<u32>,
) -> Result<Vec<(u32, u32)>, UsernsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parse_err = |reason: &str| UsernsError::Parse {
            path: path.into(),
            line: i + 1,
            reason: reason.into(),
        };
        let mut f = line.split(':');
        let (Some(who), Some(start), Some(count), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(parse_err("expected name:start:count"));
        };
        let matches = who == name || id.is_some_and(|id| who == id.to_string());
        if !matches {
            continue;
        }
        let start: u32 = start
            .parse()
            .map_err(|_| parse_err("start is not a number"))?;
        let count: u32 = count
            .parse()
            .map_err(|_| parse_err("count is not a number"))?;
        if count == 0 || start as u64 + count as u64 > u32::MAX as u64 {
            return Err(parse_err("count is 0 or the range runs past the last id"));
        }
        out.push((start, count));
    }
    Ok(out)
}

/// The first `count` ids at or above 100000 that no line of a subordinate-id file uses (what
/// `useradd` would hand a new user).
pub fn free_range(text: &str, count: u32) -> u32 {
    let mut used: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let _ = f.next()?;
            let s: u64 = f.next()?.parse().ok()?;
            let c: u64 = f.next()?.parse().ok()?;
            Some((s, s + c))
        })
        .collect();
    used.sort_unstable();
    let mut start = 100_000u64;
    for (s, e) in used {
        if s < start + count as u64 && start < e {
            start = start.max(e);
        }
    }
    start as u32
}

/// Makes a user namespace with `map` and returns a descriptor of it. A holder child enters a
/// new namespace, this process (root in the parent namespace) writes its maps, opens it, and
/// lets the child go; the descriptor keeps the namespace alive. Call only from a
/// single-threaded process (it forks).
pub fn create_namespace(map: &IdMap) -> io::Result<OwnedFd> {
    map.validate().map_err(io::Error::other)?;
    let (ready_r, ready_w) = crate::sys::pipe()?;
    let (go_r, go_w) = crate::sys::pipe()?;
    // SAFETY: the callers are the runtime's single-threaded helper processes; the child only
    // makes async-signal-safe calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(ready_r);
        drop(go_w);
        // SAFETY: unshare with a flag; then a byte to a pipe and a blocking read.
        unsafe {
            let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
            let b = [if ok { b'1' } else { b'0' }];
            libc::write(ready_w.as_raw_fd(), b.as_ptr().cast(), 1);
            let mut x = [0u8; 1];
            libc::read(go_r.as_raw_fd(), x.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(go_r);
    let result = (|| {
        let mut b = [0u8; 1];
        fs::File::from(ready_r).read_exact(&mut b)?;
        if b[0] != b'1' {
            return Err(io::Error::other(
                "the kernel refused a new user namespace (user.max_user_namespaces is 0?)",
            ));
        }
        let write = |file: &str, text: String| {
            fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/{file}"))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| io::Error::new(e.kind(), format!("write {file}: {e}")))
        };
        write("uid_map", proc_text(&map.uids))?;
        write("gid_map", proc_text(&map.gids))?;
        let ns = fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    drop(go_w);
    let mut st = 0;
    // SAFETY: reap our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    result
}

/// Enters the user namespace `ns` (single-threaded callers only); the caller then holds every
/// capability inside it and none outside.
pub fn enter(ns: RawFd) -> io::Result<()> {
    // SAFETY: setns with a descriptor the caller holds.
    if unsafe { libc::setns(ns, libc::CLONE_NEWUSER) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Mounts `source` on `target` idmapped through the user namespace `ns`: a file owned by host
/// id `h` shows as owned by the host id that container id `h` maps to, and writes go the other
/// way. Nothing on disk changes.
pub fn idmapped_bind(source: &Path, target: &Path, ns: RawFd) -> io::Result<()> {
    let tree = clone_tree(source)?;
    if let Err(e) = set_idmap(&tree, ns) {
        return Err(io::Error::new(
            e.kind(),
            format!("idmapped mount of {} (the filesystem must support idmapped mounts, Linux 5.12+): {e}", source.display()),
        ));
    }
    let dst = crate::sys::cstr(target)?;
    // SAFETY: move our detached tree onto a valid target path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached copy of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`); closing the
/// descriptor drops it unless it was moved somewhere.
fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let c = crate::sys::cstr(path)?;
    // SAFETY: open_tree with a valid C path; returns a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// Whether directories on `dir`'s filesystem can be mounted idmapped through a namespace with
/// `map` (the kernel ≥ 5.12 and the filesystem must support it); the error says why not. Makes
/// a namespace and a detached idmapped copy of `dir`'s mount, and drops both.
pub fn check_idmapped_mounts(dir: &Path, map: &IdMap) -> io::Result<()> {
    let ns = create_namespace(map)?;
    set_idmap(&clone_tree(dir)?, ns.as_raw_fd())
}

fn set_idmap(tree: &OwnedFd, ns: RawFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns as u64,
    };
    // SAFETY: mount_setattr on a detached tree with a live, correctly sized struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(container: u32, host: u32, size: u32) -> IdRange {
        IdRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn maps_translate_and_refuse_what_the_kernel_would() {
        let m =
            IdMap::from_subordinate(&[(100_000, 1000), (300_000, 64_536)], &[(200_000, 65_536)]);
        assert_eq!(m.uids, vec![r(0, 100_000, 1000), r(1000, 300_000, 64_536)]);
        assert!(m.validate().is_ok());
        assert_eq!(m.host_uid(0), Some(100_000));
        assert_eq!(m.host_uid(999), Some(100_999));
        assert_eq!(m.host_uid(1000), Some(300_000));
        assert_eq!(m.host_uid(65_536), None);
        assert_eq!(m.host_gid(5), Some(200_005));
        let bad = |uids: Vec<IdRange>| {
            IdMap {
                uids,
                gids: vec![r(0, 1, 1)],
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(bad(vec![]).contains("empty"));
        assert!(bad(vec![r(0, 1, 0)]).contains("size 0"));
        assert!(bad(vec![r(0, 100, 10), r(5, 500, 10)]).contains("overlaps"));
        assert!(bad(vec![r(0, 100, 10), r(50, 105, 10)]).contains("overlaps"));
        assert!(bad(vec![r(0, u32::MAX - 2, 10)]).contains("past the last id"));
        assert!(IdMap {
            uids: vec![r(0, 100, 10), r(10, 110, 10)],
            gids: vec![r(0, 1, 1)]
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn subordinate_files_by_name_or_uid_and_free_ranges() {
        let text = "# comment\nalice:100000:65536\n1001:165536:65536\nalice:300000:10\n";
        assert_eq!(
            subordinate_ranges("/etc/subuid", text, "alice", Some(1000)).unwrap(),
            vec![(100_000, 65_536), (300_000, 10)]
        );
        assert_eq!(
            subordinate_ranges("/etc/subuid", text, "bob", Some(1001)).unwrap(),
            vec![(165_536, 65_536)]
        );
        assert!(subordinate_ranges("/etc/subuid", text, "carol", None)
            .unwrap()
            .is_empty());
        let e = subordinate_ranges("/etc/subuid", "x:1\n", "x", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/subuid line 1: expected name:start:count"
        );
        assert_eq!(free_range("", 65_536), 100_000);
        assert_eq!(free_range(text, 65_536), 231_072);
        assert_eq!(free_range("a:100000:10\nb:200000:5\n", 65_536), 100_010);
        assert_eq!(free_range("a:100000:10\nb:150000:5\n", 65_536), 150_005);
    }
}
