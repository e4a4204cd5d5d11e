//! Unpacked layers: an image prepared for a container (each layer unpacked once under
//! `layers/`, by one process at a time), and garbage collection of blobs and layers.

use super::*;

impl ImageStore {
    /// Unpacks (once) every layer of `name` and returns its config and lower dirs, lowest first.
    pub fn prepare(&self, name: &str) -> Result<PreparedImage, ImageError> {
        let md = self.resolve(name)?;
        let m = self.manifest(&md)?;
        let cf: ConfigFile = self.read_json(&m.config.digest)?;
        let diff_ids = &cf.rootfs.diff_ids;
        let mut layers = Vec::new();
        for (i, l) in m.layers.iter().enumerate() {
            let diff = diff_ids.get(i).cloned();
            layers.push(self.unpack_layer(l, diff.as_ref())?);
        }
        Ok(PreparedImage {
            manifest_digest: md,
            config: cf.config.unwrap_or_default(),
            layers,
        })
    }

    /// The directories `prepare` unpacks a manifest's layers into, lowest first, whether or not
    /// they exist yet (nothing is unpacked).
    pub fn layer_dirs(&self, manifest: &Digest) -> Result<Vec<PathBuf>, ImageError> {
        let m = self.manifest(manifest)?;
        let cf: ConfigFile = self.read_json(&m.config.digest)?;
        Ok(m.layers
            .iter()
            .enumerate()
            .map(|(i, l)| self.layer_dir_for(l, cf.rootfs.diff_ids.get(i)))
            .collect())
    }

    /// Directory holding the unpacked form of a layer.
    pub(super) fn layer_dir_for(&self, layer: &Descriptor, diff_id: Option<&Digest>) -> PathBuf {
        let key = diff_id.unwrap_or(&layer.digest);
        self.root.join("layers").join(key.hex())
    }

    pub(super) fn unpack_layer(
        &self,
        layer: &Descriptor,
        diff_id: Option<&Digest>,
    ) -> Result<PathBuf, ImageError> {
        let dst = self.layer_dir_for(layer, diff_id);
        if dst.is_dir() {
            return Ok(dst);
        }
        // Once per layer: concurrent preparations of a fresh image (50 tasks starting at once)
        // wait for the first unpack instead of each unpacking the layer and keeping one.
        let lock_path = self.root.join("tmp").join(format!(
            "unpack-{}.lock",
            dst.file_name().and_then(|n| n.to_str()).unwrap_or("layer")
        ));
        let _unpacking = self.lock_file(&lock_path)?;
        if dst.is_dir() {
            return Ok(dst);
        }
        let res = self.unpack_layer_locked(layer, diff_id, &dst);
        // The next preparation finds the directory (or, after a failure, tries again).
        let _ = fs::remove_file(&lock_path);
        res
    }

    /// Holds an exclusive flock on `p` (created if needed) until the guard drops.
    pub(super) fn lock_file(&self, p: &Path) -> Result<Lock, ImageError> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .map_err(io_err(p))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ImageError::Io {
                path: p.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Lock(f))
    }

    pub(super) fn unpack_layer_locked(
        &self,
        layer: &Descriptor,
        diff_id: Option<&Digest>,
        dst: &Path,
    ) -> Result<PathBuf, ImageError> {
        let dst = dst.to_path_buf();
        // Unique per call: concurrent preparations in one process (the agent starts many
        // tasks of a fresh image at once) must not unpack into the same directory.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!(
            "layer-{}-{}-{n}",
            layer.digest.hex(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let res = (|| -> Result<(), ImageError> {
            let blob = self.open_blob(&layer.digest, Some(layer.size))?;
            let mut br = io::BufReader::new(blob);
            let gz = is_gzip(&mut br).map_err(io_err(self.blob_path(&layer.digest)))?;
            let wrap = |source| ImageError::Unpack {
                digest: layer.digest.to_string(),
                source,
            };
            let decoded: Box<dyn Read> = if gz {
                Box::new(flate2::read::GzDecoder::new(br))
            } else {
                Box::new(br)
            };
            // Verify the uncompressed stream against the diff id when we know it.
            let mut rd: Box<dyn Read> = match diff_id {
                Some(d) if gz || *d != layer.digest => {
                    Box::new(VerifyingReader::new(decoded, d.clone(), None))
                }
                _ => decoded,
            };
            unpack::unpack_layer(&mut rd, &tmp, UnpackOptions::default()).map_err(wrap)?;
            drain(&mut rd).map_err(|source| ImageError::Unpack {
                digest: layer.digest.to_string(),
                source: UnpackError::Archive { source },
            })?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&tmp);
            // A corrupt blob often breaks the tar parser before the digest check at EOF runs:
            // report the corruption, not the parse error.
            if let Ok(f) = File::open(self.blob_path(&layer.digest)) {
                let mut h = Sha256::new();
                if io::copy(&mut io::BufReader::new(f), &mut HashWriter(&mut h)).is_ok() {
                    let actual = Digest::from_hasher(h);
                    if actual != layer.digest {
                        return Err(ImageError::DigestMismatch {
                            expected: layer.digest.to_string(),
                            actual: actual.to_string(),
                            size: layer.size,
                            expected_size: Some(layer.size),
                        });
                    }
                }
            }
            return Err(e);
        }
        #[cfg(test)]
        UNPACKED.lock().expect("unpacked lock").push(dst.clone());
        match fs::rename(&tmp, &dst) {
            Ok(()) => Ok(dst),
            Err(_) if dst.is_dir() => {
                // Someone else unpacked it concurrently.
                let _ = fs::remove_dir_all(&tmp);
                Ok(dst)
            }
            Err(e) => Err(ImageError::Io {
                path: dst,
                source: e,
            }),
        }
    }

    /// Removes blobs unreachable from any tag or build cache entry and unpacked layers that
    /// are neither reachable nor in `in_use` (lower dirs of existing containers).
    pub fn gc(&self, in_use: &HashSet<PathBuf>) -> Result<GcStats, ImageError> {
        let _l = self.lock()?;
        let idx = self.index()?;
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_layers: HashSet<PathBuf> = in_use.clone();
        let roots = idx
            .manifests
            .iter()
            .map(|md| md.digest.clone())
            .chain(self.cache_roots());
        for digest in roots {
            keep_blobs.insert(digest.hex().to_string());
            let Ok(m) = self.manifest(&digest) else {
                continue;
            };
            keep_blobs.insert(m.config.digest.hex().to_string());
            let cf: Option<ConfigFile> = self.read_json(&m.config.digest).ok();
            for (i, l) in m.layers.iter().enumerate() {
                keep_blobs.insert(l.digest.hex().to_string());
                let diff = cf.as_ref().and_then(|c| c.rootfs.diff_ids.get(i));
                keep_layers.insert(self.layer_dir_for(l, diff));
            }
        }
        let mut stats = GcStats::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir).map_err(io_err(&bdir))?.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !keep_blobs.contains(&n) {
                stats.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err(e.path()))?;
                stats.blobs_removed += 1;
            }
        }
        let ldir = self.root.join("layers");
        for e in fs::read_dir(&ldir).map_err(io_err(&ldir))?.flatten() {
            if !keep_layers.contains(&e.path()) {
                stats.bytes_freed += disk_usage(&e.path());
                fs::remove_dir_all(e.path()).map_err(io_err(e.path()))?;
                stats.layers_removed += 1;
            }
        }
        let (copies, bytes) = self.gc_remapped(&keep_layers);
        stats.layers_removed += copies;
        stats.bytes_freed += bytes;
        Ok(stats)
    }
}

/// Bytes of the regular files under `p` (symlinks not followed); best effort.
pub(super) fn disk_usage(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return if md.is_file() { md.len() } else { 0 };
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}
