//! The container's root filesystem: an overlay of image layers (idmapped, or chowned copies,
//! for a user namespace) or a bind of a bundle's directory; it mounts nothing but the rootfs
//! and the layers' idmapped mount points, and never a mount inside the rootfs (that is the plan).

use super::*;

/// How image layers are shown to a container in a user namespace.
pub struct Idmap<'a> {
    /// The container's user namespace.
    pub ns: RawFd,
    pub map: &'a crate::userns::IdMap,
    /// A directory (in the container's state dir) for one idmapped mount per layer; the mounts
    /// live in the init's mount namespace only and go with it.
    pub mountpoints: PathBuf,
}

/// Mounts the rootfs at `rootfs_dir` (overlay of layers or a bind of a directory). With
/// `idmap`, each layer is mounted idmapped first (so the image's root-owned files belong to
/// the container's root) and the upper dir, the root directory's owner, is the mapped root's.
/// A directory rootfs is never idmapped: whoever made the bundle owns its ids (as with runc).
pub fn mount_rootfs(
    spec: &ContainerSpec,
    rootfs_dir: &Path,
    upper: &Path,
    work: &Path,
    idmap: Option<&Idmap>,
) -> Result<(), MountError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| MountError::Mount {
            what,
            target: rootfs_dir.to_path_buf(),
            source,
        }
    };
    match &spec.rootfs {
        RootfsSpec::Layers { lower } => {
            let lower = match idmap {
                Some(m) => idmap_layers(lower, m, upper, spec.layers_remapped)
                    .map_err(err("idmapped layer"))?,
                None => lower.clone(),
            };
            // Overlay wants the topmost lower first.
            let lowers: Vec<String> = lower
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            sys::mount(
                Some(Path::new("overlay")),
                rootfs_dir,
                Some("overlay"),
                NODEV,
                Some(&data),
            )
            .map_err(err("overlay"))?;
        }
        RootfsSpec::Directory { path, .. } => {
            sys::mount(
                Some(path),
                rootfs_dir,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(err("rootfs bind"))?;
            sys::mount(
                None,
                rootfs_dir,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | NODEV,
                None,
            )
            .map_err(err("rootfs nodev"))?;
        }
    }
    Ok(())
}

/// The lower dirs to mount for a container in a user namespace (idmapped mounts of `lower`,
/// or `lower` itself when the layers are chowned copies already); the upper dir, whose owner
/// is the rootfs root's, goes to the namespace's root.
fn idmap_layers(
    lower: &[PathBuf],
    m: &Idmap,
    upper: &Path,
    remapped: bool,
) -> io::Result<Vec<PathBuf>> {
    let (uid, gid) = (m.map.host_uid(0), m.map.host_gid(0));
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(upper, uid, gid)?;
    }
    if remapped {
        return Ok(lower.to_vec());
    }
    std::fs::create_dir_all(&m.mountpoints)?;
    let mut out = Vec::with_capacity(lower.len());
    for (i, l) in lower.iter().enumerate() {
        let at = m.mountpoints.join(i.to_string());
        match std::fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        crate::userns::idmapped_bind(l, &at, m.ns)?;
        out.push(at);
    }
    Ok(out)
}
