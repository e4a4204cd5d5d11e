//! Blobs on a manager's disk: `<state>/registry/blobs/sha256/<hex>`, content-addressed. A blob
//! enters only through `commit`, which hashes the bytes written to a temporary file and renames
//! it into place when (and only when) the digest matches, so a blob file is always complete
//! and correct when written. Reads check the digest again (`verified`), so corruption on disk
//! is detected: the bad copy is removed and the caller fetches a good one from a peer. A
//! verification is remembered per (size, mtime) so a hot blob is not rehashed on every pull.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use swarm_types::registry::valid_digest;

#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    verified: Arc<Mutex<HashMap<String, (u64, SystemTime)>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "digest mismatch: the uploaded content hashes to {actual} ({size} bytes), not {expected}"
    )]
    Mismatch {
        expected: String,
        actual: String,
        size: u64,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// sha256 digest of a file, and its size.
pub fn hash_file(p: &Path) -> io::Result<(String, u64)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let n = io::copy(&mut f, &mut h)?;
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

impl BlobStore {
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        for d in ["blobs/sha256", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Leftovers of an interrupted run: partial copies. Uploads in progress survive a
        // restart (`uploads()`); their clients resume from the size on disk.
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
            verified: Arc::default(),
        })
    }

    /// The file of a blob. `digest` must be valid (callers check), so no path can escape.
    pub fn path(&self, digest: &str) -> PathBuf {
        debug_assert!(valid_digest(digest));
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Starts an upload: its (empty) data file and the repository it is for, on disk so that
    /// the upload can be resumed after a restart.
    pub fn begin_upload(&self, id: &str, repo: &str) -> io::Result<()> {
        std::fs::File::create(self.upload_path(id))?;
        let meta = self.upload_path(id).with_extension("repo");
        std::fs::write(&meta, repo)
    }

    /// Forgets an upload (finished, cancelled or abandoned): its files go.
    pub fn end_upload(&self, id: &str) {
        let _ = std::fs::remove_file(self.upload_path(id));
        let _ = std::fs::remove_file(self.upload_path(id).with_extension("repo"));
    }

    /// Uploads in progress on disk: (upload id, repository). Files of an upload that lost
    /// its other half are removed.
    pub fn uploads(&self) -> Vec<(String, String)> {
        let dir = self.root.join("uploads");
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let (id, is_meta) = match name.strip_suffix(".repo") {
                Some(id) => (id.to_string(), true),
                None => (name.clone(), false),
            };
            let valid = !id.is_empty() && id.bytes().all(|c| c.is_ascii_hexdigit());
            let other = if is_meta {
                dir.join(&id)
            } else {
                dir.join(format!("{id}.repo"))
            };
            if !valid || !other.is_file() {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if is_meta {
                if let Ok(repo) = std::fs::read_to_string(e.path()) {
                    out.push((id, repo));
                }
            }
        }
        out
    }

    /// A fresh temporary file path (same filesystem as the blobs, for rename).
    pub fn tmp_path(&self) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("blob-{}-{n}", std::process::id()))
    }

    /// Every blob on disk: (digest, last modified, size).
    pub fn list(&self) -> io::Result<Vec<(String, SystemTime, u64)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            if !valid_digest(&d) {
                continue;
            }
            let md = e.metadata()?;
            if md.is_file() {
                out.push((d, md.modified()?, md.len()));
            }
        }
        Ok(out)
    }

    /// Size of a blob present on disk (not verified).
    pub fn size(&self, digest: &str) -> Option<u64> {
        std::fs::metadata(self.path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Whether the blob is on disk with the right content. A corrupt copy is removed (and
    /// logged) so that it is fetched again.
    pub async fn verified(&self, digest: &str) -> io::Result<bool> {
        let p = self.path(digest);
        let Ok(md) = tokio::fs::metadata(&p).await else {
            return Ok(false);
        };
        let stamp = (md.len(), md.modified()?);
        if self.verified.lock().expect("verified lock").get(digest) == Some(&stamp) {
            return Ok(true);
        }
        let p2 = p.clone();
        let (actual, _) = tokio::task::spawn_blocking(move || hash_file(&p2))
            .await
            .map_err(io::Error::other)??;
        if actual == digest {
            self.verified
                .lock()
                .expect("verified lock")
                .insert(digest.to_string(), stamp);
            Ok(true)
        } else {
            tracing::warn!(%digest, %actual, path = %p.display(), "registry blob corrupt on disk; removing it (it will be fetched again from a peer)");
            self.verified.lock().expect("verified lock").remove(digest);
            let _ = tokio::fs::remove_file(&p).await;
            Ok(false)
        }
    }

    /// Moves the file at `tmp` into the store as `digest` if its content has that digest;
    /// otherwise removes it and fails. Returns the size.
    pub async fn commit(&self, tmp: &Path, digest: &str) -> Result<u64, CommitError> {
        let t = tmp.to_path_buf();
        let res = tokio::task::spawn_blocking(move || hash_file(&t))
            .await
            .map_err(io::Error::other)?;
        let (actual, size) = match res {
            Ok(x) => x,
            Err(e) => {
                let _ = tokio::fs::remove_file(tmp).await;
                return Err(e.into());
            }
        };
        if actual != digest {
            let _ = tokio::fs::remove_file(tmp).await;
            return Err(CommitError::Mismatch {
                expected: digest.to_string(),
                actual,
                size,
            });
        }
        // Durable before it is acknowledged: data, then the rename.
        let f = tokio::fs::File::open(tmp).await?;
        f.sync_all().await?;
        let dst = self.path(digest);
        tokio::fs::rename(tmp, &dst).await?;
        if let Ok(md) = tokio::fs::metadata(&dst).await {
            if let Ok(m) = md.modified() {
                self.verified
                    .lock()
                    .expect("verified lock")
                    .insert(digest.to_string(), (md.len(), m));
            }
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_in_progress_survive_a_reopen_and_orphans_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        store.begin_upload("ab12", "team/app").unwrap();
        std::fs::write(store.upload_path("ab12"), b"first chunk").unwrap();
        store.begin_upload("cd34", "other").unwrap();
        store.end_upload("cd34");
        // Half of an upload (a crash between the two files), and a stray name.
        std::fs::write(dir.path().join("uploads/ef56"), b"x").unwrap();
        std::fs::write(dir.path().join("uploads/../uploads/not-hex.repo"), b"x").unwrap();
        std::fs::write(dir.path().join("tmp/blob-1-1"), b"partial").unwrap();

        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(
            store.uploads(),
            vec![("ab12".to_string(), "team/app".to_string())]
        );
        assert_eq!(
            std::fs::read(store.upload_path("ab12")).unwrap(),
            b"first chunk"
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["ab12", "ab12.repo"]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
