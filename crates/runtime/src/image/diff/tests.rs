//! Round trip through a real overlay mount (root, as in CI): changes made in a merged view are
//! diffed from the upper directory, the layer is unpacked on its own, and the lower layers plus
//! that layer show exactly the merged view again.

use super::*;
use crate::image::unpack::{unpack_layer, UnpackOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "overlay round trips need root (CI runs as root)");
}

/// Unmounts (lazily) when dropped, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn overlay(lowers: &[&Path], upper: Option<(&Path, &Path)>, at: &Path) -> Mounted {
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let mut data = format!("lowerdir={}", lower.join(":"));
        if let Some((u, w)) = upper {
            data.push_str(&format!(
                ",upperdir={},workdir={},metacopy=off,redirect_dir=off",
                u.display(),
                w.display()
            ));
        }
        sys::mount(
            Some(Path::new("overlay")),
            at,
            Some("overlay"),
            0,
            Some(&data),
        )
        .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = sys::umount2(&self.0, libc::MNT_DETACH);
    }
}

/// Every entry under `root`: kind, permission bits, owner and content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(n);
            let full = root.join(&r);
            let md = fs::symlink_metadata(&full).unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link {}", fs::read_link(&full).unwrap().display())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                format!("file {:?} links {}", fs::read(&full).unwrap(), md.nlink())
            };
            let perm = if ft.is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            };
            out.insert(
                r.display().to_string(),
                format!("{what} {perm:o} {}:{}", md.uid(), md.gid()),
            );
            if ft.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

/// The lower layer: a few files and directories the step changes.
fn lower(dir: &Path) {
    write(&dir.join("edit.txt"), "old");
    write(&dir.join("del.txt"), "bye");
    write(&dir.join("keep/k.txt"), "kept");
    write(&dir.join("gone/inner/x"), "x");
    write(&dir.join("replaced/a.txt"), "a");
}

/// What a build step does in the merged view.
fn changes(m: &Path) {
    write(&m.join("edit.txt"), "new");
    fs::remove_file(m.join("del.txt")).unwrap();
    fs::remove_dir_all(m.join("gone")).unwrap();
    fs::remove_dir_all(m.join("replaced")).unwrap();
    write(&m.join("replaced/b.txt"), "b");
    write(&m.join("new/dir/f"), "secret");
    fs::set_permissions(m.join("new/dir/f"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.join("new/dir/f"), Some(1000), Some(1000)).unwrap();
    write(&m.join("new/h1"), "linked");
    fs::hard_link(m.join("new/h1"), m.join("new/h2")).unwrap();
    symlink("../edit.txt", m.join("new/s")).unwrap();
    let fifo = std::ffi::CString::new(m.join("new/p").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
}

fn tar_entries(bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
            )
        })
        .collect()
}

#[test]
fn a_containers_changes_become_a_layer_that_unpacks_to_the_same_view() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = tmp.path().join(n);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let (low, up, work, merged) = (d("lower"), d("upper"), d("work"), d("merged"));
    lower(&low);
    let want = {
        let _m = Mounted::overlay(&[&low], Some((&up, &work)), &merged);
        changes(&merged);
        snapshot(&merged)
    };

    let mut layer = Vec::new();
    let stats = write_layer(&up, &mut layer).unwrap();
    let entries = tar_entries(&layer);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        ".wh.del.txt",
        ".wh.gone",
        "replaced/.wh..wh..opq",
        "replaced/b.txt",
        "new/",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("keep")),
        "unchanged: {names:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(n, k)| n == "new/h2" && *k == tar::EntryType::Link),
        "the second name of a hard link is a tar link: {entries:?}"
    );
    assert_eq!(stats.whiteouts, 3, "{stats:?}");

    // The same upper directory gives the same bytes (a layer's digest is its cache key).
    let mut again = Vec::new();
    write_layer(&up, &mut again).unwrap();
    assert!(layer == again, "two diffs of one upper directory differ");

    let unpacked = d("unpacked");
    unpack_layer(&layer[..], &unpacked, UnpackOptions::default()).unwrap();
    let view = d("view");
    let got = {
        let _m = Mounted::overlay(&[&unpacked, &low], None, &view);
        snapshot(&view)
    };
    assert_eq!(
        got, want,
        "lower + the diffed layer differ from the merged view"
    );
}

#[test]
fn entries_that_need_their_lower_layers_are_refused() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("meta");
    fs::write(&f, "").unwrap();
    let fd = fs::File::open(&f).unwrap();
    use std::os::fd::AsRawFd;
    sys::fsetxattr(fd.as_raw_fd(), "trusted.overlay.metacopy", b"").unwrap();
    let e = write_layer(tmp.path(), io::sink()).unwrap_err().to_string();
    assert!(e.contains("metacopy") && e.contains("metacopy=off"), "{e}");
}

#[test]
fn capabilities_and_user_xattrs_go_into_the_layer_and_overlay_ones_do_not() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("ping");
    fs::write(&f, "binary").unwrap();
    let fd = fs::File::open(&f).unwrap();
    use std::os::fd::AsRawFd;
    if let Err(e) = sys::fsetxattr(fd.as_raw_fd(), "user.origin", b"build") {
        // tmpfs before 6.6 has no user.* xattrs: the check below then has nothing to see.
        panic!("cannot set a user xattr in {}: {e}", tmp.path().display());
    }
    sys::fsetxattr(fd.as_raw_fd(), "trusted.overlay.origin", b"x").unwrap();
    let mut layer = Vec::new();
    write_layer(tmp.path(), &mut layer).unwrap();
    let mut a = tar::Archive::new(&layer[..]);
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    let pax: Vec<(String, Vec<u8>)> = e
        .pax_extensions()
        .unwrap()
        .expect("a PAX header")
        .map(|x| {
            let x = x.unwrap();
            (x.key().unwrap().to_string(), x.value_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        pax,
        vec![("SCHILY.xattr.user.origin".to_string(), b"build".to_vec())]
    );
}
