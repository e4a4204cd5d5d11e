//! Chowned copies of unpacked layers for user namespaces where idmapped mounts do not work
//! (kernels before 5.12, filesystems without them): `layers-remap/<map key>/<layer>`, made
//! once per layer and map with every owner shifted through the map (Docker's
//! `--userns-remap` keeps such a copy of every image), and collected with their layer.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::userns::IdMap;

/// `security.capability` revisions (linux/capability.h).
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;

/// The directory name of a map's copies: its first host ids when it is one range each (as
/// Docker's `/var/lib/docker/<uid>.<gid>`), else a digest of the whole map.
pub(super) fn map_key(map: &IdMap) -> String {
    match (map.uids.as_slice(), map.gids.as_slice()) {
        ([u], [g]) if u.container == 0 && g.container == 0 => {
            format!("{}.{}-{}", u.host, g.host, u.size.min(g.size))
        }
        _ => {
            let json = serde_json::to_vec(map).expect("an id map serializes");
            hex::encode(&Sha256::digest(&json)[..8])
        }
    }
}

impl ImageStore {
    /// Chowned copies of `layers` (directories `prepare` returned) for a user namespace with
    /// `map`, lowest first; each made once (under a lock per copy) and reused after.
    pub fn remapped_layers(
        &self,
        layers: &[PathBuf],
        map: &IdMap,
    ) -> Result<Vec<PathBuf>, ImageError> {
        let dir = self.root.join("layers-remap").join(map_key(map));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        layers
            .iter()
            .map(|l| {
                let name = l.file_name().ok_or_else(|| ImageError::Io {
                    path: l.clone(),
                    source: io::Error::other("not a layer directory"),
                })?;
                let dst = dir.join(name);
                if dst.is_dir() {
                    return Ok(dst);
                }
                let lock = self.root.join("tmp").join(format!(
                    "remap-{}-{}.lock",
                    dir.file_name().and_then(|n| n.to_str()).unwrap_or("map"),
                    name.to_string_lossy()
                ));
                let _copying = self.lock_file(&lock)?;
                if !dst.is_dir() {
                    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let tmp = self.root.join("tmp").join(format!(
                        "remap-{}-{}-{n}",
                        name.to_string_lossy(),
                        std::process::id()
                    ));
                    let _ = fs::remove_dir_all(&tmp);
                    let res = copy_shifted(l, &tmp, map, &mut HashMap::new())
                        .and_then(|()| fs::rename(&tmp, &dst));
                    if let Err(e) = res {
                        let _ = fs::remove_dir_all(&tmp);
                        let _ = fs::remove_file(&lock);
                        return Err(ImageError::Io {
                            path: l.clone(),
                            source: e,
                        });
                    }
                }
                let _ = fs::remove_file(&lock);
                Ok(dst)
            })
            .collect()
    }

    /// Removes the chowned copies whose layer is gone and that no container uses (GC, with
    /// the store locked). Returns (copies removed, bytes freed).
    pub(super) fn gc_remapped(&self, keep: &HashSet<PathBuf>) -> (usize, u64) {
        let (mut removed, mut freed) = (0, 0);
        let root = self.root.join("layers-remap");
        for map_dir in fs::read_dir(&root).into_iter().flatten().flatten() {
            for e in fs::read_dir(map_dir.path()).into_iter().flatten().flatten() {
                let layer = self.root.join("layers").join(e.file_name());
                if keep.contains(&e.path()) || keep.contains(&layer) {
                    continue;
                }
                freed += layers::disk_usage(&e.path());
                if fs::remove_dir_all(e.path()).is_ok() {
                    removed += 1;
                }
            }
            // Only once empty.
            let _ = fs::remove_dir(map_dir.path());
        }
        (removed, freed)
    }
}

fn shift(what: &str, path: &Path, id: u32, to: Option<u32>) -> io::Result<u32> {
    to.ok_or_else(|| {
        io::Error::other(format!(
            "{} is owned by {what} {id}, which the user namespace does not map; use a wider --userns-remap range",
            path.display()
        ))
    })
}

/// Copies the tree `src` to `dst` (which must not exist) with every owner shifted through
/// `map`: directories, files (hard links kept as links), symlinks, device nodes (overlay
/// whiteouts), fifos, modes with their set-id bits, and extended attributes — a file
/// capability rewritten for the namespace's root, as the kernel would store one set inside.
fn copy_shifted(
    src: &Path,
    dst: &Path,
    map: &IdMap,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let m = fs::symlink_metadata(src)?;
    let ft = m.file_type();
    let uid = shift("uid", src, m.uid(), map.host_uid(m.uid()))?;
    let gid = shift("gid", src, m.gid(), map.host_gid(m.gid()))?;
    if ft.is_dir() {
        fs::create_dir(dst)?;
        for e in fs::read_dir(src)? {
            let e = e?;
            copy_shifted(&e.path(), &dst.join(e.file_name()), map, links)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        return std::os::unix::fs::lchown(dst, Some(uid), Some(gid));
    } else if ft.is_file() {
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                return fs::hard_link(first, dst);
            }
            links.insert((m.dev(), m.ino()), dst.to_path_buf());
        }
        fs::copy(src, dst)?;
    } else {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            return Ok(());
        }
        // Device nodes (an overlay whiteout is char 0:0) and fifos, as they are.
        let c = crate::sys::cstr(dst)?;
        // SAFETY: valid C path; mode and device numbers from the source's metadata.
        if unsafe {
            libc::mknod(
                c.as_ptr(),
                m.mode() as libc::mode_t,
                m.rdev() as libc::dev_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // Owner first: chown clears set-id bits, which the mode then restores.
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    if ft.is_dir() || ft.is_file() {
        for name in crate::sys::llistxattr(src)? {
            let Some(value) = crate::sys::lgetxattr(src, &name)? else {
                continue;
            };
            let value = if name == "security.capability" {
                match shift_capability(&value, map) {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                value
            };
            crate::sys::lsetxattr(dst, &name, &value)?;
        }
    }
    Ok(())
}

/// A file capability (`security.capability`) for the namespace: revision 3 with the host id
/// of the namespace's root (revision 2, or 3 with root id 0, only applies to the host's
/// root). `None` when it cannot be read or its root is not mapped (the copy then has none).
fn shift_capability(v: &[u8], map: &IdMap) -> Option<Vec<u8>> {
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(v.get(i..i + 4)?.try_into().ok()?)) };
    let magic = word(0)?;
    let root = match magic & VFS_CAP_REVISION_MASK {
        VFS_CAP_REVISION_2 if v.len() >= 20 => 0,
        VFS_CAP_REVISION_3 if v.len() >= 24 => word(20)?,
        _ => return None,
    };
    let host_root = map.host_uid(root)?;
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&((magic & !VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_3).to_le_bytes());
    out.extend_from_slice(&v[4..20]);
    out.extend_from_slice(&host_root.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userns::IdRange;

    fn map(host: u32) -> IdMap {
        let r = vec![IdRange {
            container: 0,
            host,
            size: 65_536,
        }];
        IdMap {
            uids: r.clone(),
            gids: r,
        }
    }

    #[test]
    fn file_capabilities_are_rewritten_for_the_namespace_root() {
        let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec(); // revision 2, effective
        v2.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let v3 = shift_capability(&v2, &map(100_000)).unwrap();
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[0..4], &0x0300_0001u32.to_le_bytes());
        assert_eq!(&v3[4..20], &v2[4..20]);
        assert_eq!(&v3[20..24], &100_000u32.to_le_bytes());
        assert_eq!(shift_capability(&[1, 2, 3], &map(1)), None);
        let mut unmapped = v3.clone();
        unmapped[20..24].copy_from_slice(&70_000u32.to_le_bytes());
        assert_eq!(shift_capability(&unmapped, &map(1)), None);
    }

    #[test]
    fn map_keys_name_simple_maps_and_digest_the_rest() {
        assert_eq!(map_key(&map(100_000)), "100000.100000-65536");
        let mut m = map(100_000);
        m.uids.push(IdRange {
            container: 65_536,
            host: 300_000,
            size: 10,
        });
        assert_eq!(map_key(&m).len(), 16);
    }
}
