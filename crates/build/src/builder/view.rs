//! What `COPY --from` and `RUN --mount=type=bind` read: an image's filesystem as one
//! directory, read-only (or a throw-away writable copy of a directory, for `rw` binds). One layer is
//! its unpacked directory as it is; more are stacked with a read-only overlay mount (lower
//! directories only) that is unmounted when the view is dropped. Views live under the
//! builder's directory as `view-*`; [`RootView::clean_stale`] removes what a crash left.

use std::path::{Path, PathBuf};
use swarm_runtime::sys;

pub struct RootView {
    path: PathBuf,
    /// The overlay mount point (and directory) to remove on drop.
    mounted: Option<PathBuf>,
    /// A writable view's directory (mount point, upper and work directories), removed whole
    /// after the unmount.
    scratch: Option<PathBuf>,
}

impl RootView {
    /// The filesystem of the image whose unpacked layers (lowest first) are `layers`.
    pub fn open(layers: &[PathBuf], dir: &Path) -> std::io::Result<RootView> {
        match layers {
            [] => {
                let p = scratch_dir(dir)?;
                Ok(RootView {
                    path: p.clone(),
                    mounted: Some(p),
                    scratch: None,
                })
            }
            [one] => Ok(RootView {
                path: one.clone(),
                mounted: None,
                scratch: None,
            }),
            many => {
                let at = scratch_dir(dir)?;
                // Overlay wants the topmost lower first; no upper directory: read-only.
                let lowers: Vec<String> =
                    many.iter().rev().map(|p| p.display().to_string()).collect();
                let data = format!("lowerdir={}", lowers.join(":"));
                let flags = libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID;
                if let Err(e) = sys::mount(
                    Some(Path::new("overlay")),
                    &at,
                    Some("overlay"),
                    flags,
                    Some(&data),
                ) {
                    let _ = std::fs::remove_dir(&at);
                    return Err(e);
                }
                Ok(RootView {
                    path: at.clone(),
                    mounted: Some(at),
                    scratch: None,
                })
            }
        }
    }

    /// `dir` as a writable copy (`RUN --mount=type=bind,rw`): an overlay with `dir` as its
    /// only lower directory and an upper directory that is thrown away with the view, so
    /// writes never reach `dir`.
    pub fn writable(lower: &Path, dir: &Path) -> std::io::Result<RootView> {
        let scratch = scratch_dir(dir)?;
        let (at, upper, work) = (scratch.join("m"), scratch.join("u"), scratch.join("w"));
        let made = [&at, &upper, &work]
            .iter()
            .try_for_each(std::fs::create_dir);
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let mounted = made.and_then(|()| {
            sys::mount(
                Some(Path::new("overlay")),
                &at,
                Some("overlay"),
                libc::MS_NODEV | libc::MS_NOSUID,
                Some(&data),
            )
        });
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        Ok(RootView {
            path: at.clone(),
            mounted: Some(at),
            scratch: Some(scratch),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts and removes the views a killed builder left in `dir`.
    pub fn clean_stale(dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("view-") {
                let p = e.path();
                if p.join("u").is_dir() {
                    // A writable view: its overlay is at m, over nothing of ours.
                    if sys::umount2(&p.join("m"), libc::MNT_DETACH).is_ok()
                        || !is_mount_point(&p.join("m"))
                    {
                        let _ = std::fs::remove_dir_all(&p);
                    }
                } else {
                    let _ = sys::umount2(&p, libc::MNT_DETACH);
                    let _ = std::fs::remove_dir(&p);
                }
            }
        }
    }
}

impl Drop for RootView {
    fn drop(&mut self) {
        if let Some(p) = &self.mounted {
            // An empty view was never mounted: umount fails with EINVAL and that is fine.
            let _ = sys::umount2(p, libc::MNT_DETACH);
            let _ = std::fs::remove_dir(p);
        }
        if let Some(s) = &self.scratch {
            let _ = std::fs::remove_dir_all(s);
        }
    }
}

fn scratch_dir(dir: &Path) -> std::io::Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("view-{}-{seq}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

/// Whether `p` is a mount point (its device differs from its parent's).
fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}
