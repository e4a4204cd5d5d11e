//! Paths inside a container: normalizing an absolute container path. A leaf: the spec, the
//! options and the mount plan use it; it uses nothing of the crate.

use std::path::{Component, Path, PathBuf};

/// Normalizes an absolute container path (no `..`); `None` when it is not one.
pub fn clean_container_path(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}
