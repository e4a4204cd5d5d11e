//! What `COPY --from` reads: an image's filesystem as one directory, read-only. One layer is
//! its unpacked directory as it is; more are stacked with a read-only overlay mount (lower
//! directories only) that is unmounted when the view is dropped. Views live under the
//! builder's directory as `view-*`; [`RootView::clean_stale`] removes what a crash left.

use std::path::{Path, PathBuf};
use swarm_runtime::sys;

pub struct RootView {
    path: PathBuf,
    /// The overlay mount point (and directory) to remove on drop.
    mounted: Option<PathBuf>,
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
                })
            }
            [one] => Ok(RootView {
                path: one.clone(),
                mounted: None,
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
                })
            }
        }
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
                let _ = sys::umount2(&p, libc::MNT_DETACH);
                let _ = std::fs::remove_dir(&p);
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
    }
}

fn scratch_dir(dir: &Path) -> std::io::Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("view-{}-{seq}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
