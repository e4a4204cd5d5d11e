//! The build cache: step keys (`swarm_build` computes them) → the image a step made. An entry
//! is a file `cache/<key>` holding a manifest digest; it keeps that image from garbage
//! collection like a tag does, without being one (`image ls` does not show it), so a
//! rebuild finds its steps after containers came and went. `image prune --build-cache`
//! clears it.

use super::*;

impl ImageStore {
    fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The image remembered for `key`, if it is still complete in the store.
    pub fn cache_get(&self, key: &str) -> Option<Digest> {
        if !valid_key(key) {
            return None;
        }
        let s = fs::read_to_string(self.cache_dir().join(key)).ok()?;
        let d = Digest::parse(s.trim()).ok()?;
        self.manifest(&d).is_ok().then_some(d)
    }

    /// Remembers `digest` as the result of step `key` (atomically: a crash leaves the old
    /// entry or the new one).
    pub fn cache_put(&self, key: &str, digest: &Digest) -> Result<(), ImageError> {
        if !valid_key(key) {
            return Err(ImageError::Io {
                path: self.cache_dir().join(key),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a build cache key is 64 hex digits",
                ),
            });
        }
        let dir = self.cache_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // A name of its own per call: two stages of one build can finish the same step (same
        // key) at the same time, and a shared temporary name made one rename fail.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{key}.{}.{seq}", std::process::id()));
        fs::write(&tmp, digest.as_str()).map_err(io_err(&tmp))?;
        let dst = dir.join(key);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// The manifests the cache keeps (for garbage collection).
    pub(super) fn cache_roots(&self) -> Vec<Digest> {
        let Ok(rd) = fs::read_dir(self.cache_dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|s| Digest::parse(s.trim()).ok())
            .collect()
    }

    /// Forgets every entry (`image prune --build-cache`); the next collection frees what
    /// only the cache kept. Returns how many entries there were.
    pub fn cache_clear(&self) -> Result<usize, ImageError> {
        let dir = self.cache_dir();
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for e in rd.flatten() {
            fs::remove_file(e.path()).map_err(io_err(e.path()))?;
            n += 1;
        }
        Ok(n)
    }
}

fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}
