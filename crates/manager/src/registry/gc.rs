//! Garbage collection of registry blobs on this manager's disk: mark every blob a manifest in
//! the replicated repositories references (config, layers, and the manifests an index
//! lists), then delete what is unmarked and older than the grace period. The grace period
//! protects uploads in flight (a client pushes blobs first and the manifest last) and blobs a
//! client just found by HEAD or mounted before pushing the manifest that uses them.
//!
//! Each manager collects its own disk from its own copy of the store, after a read barrier
//! (so a manifest committed on the leader is seen before its blobs are judged). Deleting a
//! manifest or tag (`DELETE /v2/<name>/manifests/<ref>`) is what makes blobs collectable.

use super::Registry;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime};
use swarm_types::registry::{valid_digest, Repository};

/// When collection runs and what it spares.
#[derive(Clone, Copy, Debug)]
pub struct GcConfig {
    /// Time between two collections; zero disables collection.
    pub interval: Duration,
    /// Blobs written or used more recently than this are kept even when unreferenced.
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Duration::from_secs(3600),
            grace: Duration::from_secs(3600),
        }
    }
}

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub kept: usize,
    pub removed: usize,
    pub bytes_freed: u64,
    /// Abandoned uploads removed.
    pub uploads_removed: usize,
}

/// Every blob digest the repositories' manifests reference.
pub fn referenced(repos: &BTreeMap<String, Repository>) -> HashSet<String> {
    let mut set = HashSet::new();
    for r in repos.values() {
        for (digest, m) in &r.manifests {
            set.insert(digest.clone());
            set.extend(m.blobs.iter().cloned());
            set.extend(m.children.iter().cloned());
        }
    }
    set
}

/// Which of the blobs on disk (digest, last modified) are garbage: unreferenced, and neither
/// written nor used within `grace` of `now`.
pub fn garbage<'a>(
    on_disk: &'a [(String, SystemTime, u64)],
    referenced: &HashSet<String>,
    recently_used: impl Fn(&str) -> bool,
    now: SystemTime,
    grace: Duration,
) -> Vec<&'a (String, SystemTime, u64)> {
    on_disk
        .iter()
        .filter(|(d, modified, _)| {
            !referenced.contains(d)
                && !recently_used(d)
                && now.duration_since(*modified).unwrap_or_default() >= grace
        })
        .collect()
}

impl Registry {
    /// Notes that a client used `digest` (found it, mounted it, uploaded it): it is spared by
    /// collection for the grace period even before a manifest references it.
    pub(super) fn touch(&self, digest: &str) {
        self.inner
            .used
            .lock()
            .expect("used lock")
            .insert(digest.to_string(), Instant::now());
    }

    /// One collection on this manager.
    pub async fn collect(&self, grace: Duration) -> Result<GcStats, String> {
        self.manager()
            .read_barrier(false)
            .await
            .map_err(|e| format!("the store is not current: {e}"))?;
        let marked = self.manager().store().read(|s| referenced(&s.repositories));
        let blobs = self.inner.blobs.clone();
        let on_disk = tokio::task::spawn_blocking(move || blobs.list())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("list blobs: {e}"))?;
        let recent = {
            let mut used = self.inner.used.lock().expect("used lock");
            used.retain(|_, at| at.elapsed() < grace);
            used.keys().cloned().collect::<HashSet<String>>()
        };
        let now = SystemTime::now();
        let doomed = garbage(&on_disk, &marked, |d| recent.contains(d), now, grace);
        let mut stats = GcStats {
            kept: on_disk.len() - doomed.len(),
            ..Default::default()
        };
        for (d, _, size) in doomed {
            debug_assert!(valid_digest(d));
            match tokio::fs::remove_file(self.inner.blobs.path(d)).await {
                Ok(()) => {
                    stats.removed += 1;
                    stats.bytes_freed += size;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "registry gc: cannot remove a blob")
                }
            }
        }
        // Uploads nobody finished within the grace period.
        let stale: Vec<String> = {
            let uploads = self.inner.uploads.lock().expect("uploads lock");
            uploads
                .keys()
                .filter(|id| {
                    std::fs::metadata(self.inner.blobs.upload_path(id))
                        .and_then(|m| m.modified())
                        .map(|m| now.duration_since(m).unwrap_or_default() >= grace)
                        .unwrap_or(true)
                })
                .cloned()
                .collect()
        };
        for id in stale {
            self.inner.uploads.lock().expect("uploads lock").remove(&id);
            self.inner.blobs.end_upload(&id);
            stats.uploads_removed += 1;
        }
        Ok(stats)
    }

    /// Collects every `cfg.interval` until shutdown.
    pub(super) async fn collect_periodically(
        self,
        cfg: GcConfig,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if cfg.interval.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = shutdown.changed() => return,
            }
            match self.collect(cfg.grace).await {
                Ok(s) if s.removed + s.uploads_removed > 0 => tracing::info!(
                    removed = s.removed,
                    bytes_freed = s.bytes_freed,
                    kept = s.kept,
                    uploads_removed = s.uploads_removed,
                    "registry gc: unreferenced blobs removed"
                ),
                Ok(s) => tracing::debug!(kept = s.kept, "registry gc: nothing to remove"),
                Err(e) => tracing::warn!(error = %e, "registry gc skipped; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::registry::ManifestRecord;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn marks_configs_layers_and_index_children() {
        let mut r = Repository {
            id: "a".into(),
            ..Default::default()
        };
        r.manifests.insert(
            d('1'),
            ManifestRecord {
                blobs: vec![d('2'), d('3')],
                ..Default::default()
            },
        );
        r.manifests.insert(
            d('4'),
            ManifestRecord {
                children: vec![d('1')],
                ..Default::default()
            },
        );
        let repos = BTreeMap::from([("a".to_string(), r)]);
        let m = referenced(&repos);
        for c in ['1', '2', '3', '4'] {
            assert!(m.contains(&d(c)), "{c}");
        }
        assert!(!m.contains(&d('5')));
    }

    #[test]
    fn only_old_unreferenced_unused_blobs_are_garbage() {
        let now = SystemTime::now();
        let old = now - Duration::from_secs(7200);
        let young = now - Duration::from_secs(10);
        let disk = vec![
            (d('1'), old, 10),   // referenced
            (d('2'), old, 20),   // garbage
            (d('3'), young, 30), // within grace (upload in flight)
            (d('4'), old, 40),   // used recently (HEAD before a manifest push)
        ];
        let marked = HashSet::from([d('1')]);
        let g = garbage(
            &disk,
            &marked,
            |x| x == d('4'),
            now,
            Duration::from_secs(3600),
        );
        assert_eq!(
            g.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
            vec![d('2')]
        );
    }
}
