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
        // Leftovers of an interrupted run: partial copies, and uploads whose state (kept in
        // memory) died with the process.
        for d in ["tmp", "uploads"] {
            if let Ok(rd) = std::fs::read_dir(root.join(d)) {
                for e in rd.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
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
