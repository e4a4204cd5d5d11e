//! Image store in OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) under a root
//! directory, plus the unpacked-layer cache used as overlayfs lower dirs.
//!
//! Layout under `root`:
//! ```text
//! oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! index.json                 OCI index; each manifest carries org.opencontainers.image.ref.name = NAME:TAG
//! blobs/sha256/<hex>         content-addressed blobs (manifests, configs, layers)
//! layers/<diffid-hex>/       each layer unpacked once, shared read-only by every container
//! tmp/                       staging area (same filesystem, so renames are atomic)
//! .lock                      flock serializing index.json updates and GC across processes
//! ```
//! Invariants: a blob file's name is the sha256 of its bytes (verified when written, and again
//! when read through [`ImageStore::read_blob`] / [`ImageStore::open_blob`]); a `layers/<hex>` dir
//! only appears complete (it is unpacked into `tmp/` and renamed); tags live only in `index.json`.

pub mod archive;
mod cache;
pub mod commit;
pub mod diff;
mod format;
mod layers;
mod remap;
pub mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use format::*;
pub use unpack::{UnpackError, UnpackOptions};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid digest {digest:?}: expected sha256:<64 hex digits>")]
    InvalidDigest { digest: String },
    #[error("blob {expected} failed verification: got {actual} ({size} bytes, expected {expected_size:?} bytes); the content is corrupt or was tampered with, re-import the image")]
    DigestMismatch {
        expected: String,
        actual: String,
        size: u64,
        expected_size: Option<u64>,
    },
    #[error("blob {digest} not found in the image store; re-import or pull the image")]
    BlobNotFound { digest: String },
    #[error("image {name:?} not found; import or pull it first")]
    ImageNotFound { name: String },
    #[error("invalid json in {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("unsupported archive: {reason}")]
    UnsupportedArchive { reason: String },
    #[error("cannot unpack layer {digest}: {source}")]
    Unpack {
        digest: String,
        source: unpack::UnpackError,
    },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}

/// A resolved image ready to run: its config and its unpacked layers, lowest first.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<PathBuf>,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub blobs_removed: usize,
    pub layers_removed: usize,
    /// Size of the removed blobs plus the files of the removed unpacked layers.
    pub bytes_freed: u64,
}

/// Normalizes an image reference: `busybox` → `busybox:latest`.
pub fn normalize_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Layers unpacked by this process (tests check that a layer is unpacked once).
#[cfg(test)]
pub(crate) static UNPACKED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Content-addressed image store rooted at a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// A reader that hashes what passes through it and fails with `InvalidData` at EOF when the
/// digest or size does not match.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    expected: Digest,
    expected_size: Option<u64>,
    read: u64,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Sha256::new()),
            expected,
            expected_size,
            read: 0,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        if n == 0 && !buf.is_empty() {
            if let Some(h) = self.hasher.take() {
                let actual = Digest::from_hasher(h);
                let size_ok = self.expected_size.is_none_or(|s| s == self.read);
                if actual != self.expected || !size_ok {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        ImageError::DigestMismatch {
                            expected: self.expected.to_string(),
                            actual: actual.to_string(),
                            size: self.read,
                            expected_size: self.expected_size,
                        }
                        .to_string(),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Drains a reader to EOF so that a [`VerifyingReader`] gets to check the digest even when the
/// consumer (e.g. a tar parser) stops early.
pub fn drain<R: Read>(mut r: R) -> io::Result<()> {
    io::copy(&mut r, &mut io::sink()).map(|_| ())
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking an fd we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl ImageStore {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for d in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err(&layout))?;
        }
        let store = ImageStore { root };
        if !store.root.join("index.json").exists() {
            store.write_index(&Index::default())?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Lock, ImageError> {
        let p = self.root.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ImageError::Io {
                path: p,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Lock(f))
    }

    /// Path of a blob file.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    fn tmp_file(&self) -> Result<(PathBuf, File), ImageError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self
            .root
            .join("tmp")
            .join(format!("blob-{}-{n}", std::process::id()));
        let f = File::create(&p).map_err(io_err(&p))?;
        Ok((p, f))
    }

    /// Streams a blob into the store, verifying `expected` (digest and size) when given.
    pub fn put_blob_reader<R: Read>(
        &self,
        mut reader: R,
        expected: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Digest, u64), ImageError> {
        let (tmp, mut f) = self.tmp_file()?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        let res = (|| -> Result<(), ImageError> {
            loop {
                let n = reader.read(&mut buf).map_err(io_err(&tmp))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err(&tmp))?;
                size += n as u64;
            }
            f.sync_all().map_err(io_err(&tmp))
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let actual = Digest::from_hasher(h);
        if let Some((exp, exp_size)) = expected {
            if &actual != exp || exp_size.is_some_and(|s| s != size) {
                let _ = fs::remove_file(&tmp);
                return Err(ImageError::DigestMismatch {
                    expected: exp.to_string(),
                    actual: actual.to_string(),
                    size,
                    expected_size: exp_size,
                });
            }
        }
        let dst = self.blob_path(&actual);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        Ok((actual, size))
    }

    /// Stores a small blob from memory.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        Ok(self.put_blob_reader(bytes, None)?.0)
    }

    /// Opens a blob for streaming; the returned reader fails at EOF if the content does not hash
    /// to `d` (or has the wrong size).
    pub fn open_blob(
        &self,
        d: &Digest,
        size: Option<u64>,
    ) -> Result<VerifyingReader<io::BufReader<File>>, ImageError> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::BlobNotFound {
                    digest: d.to_string(),
                }
            } else {
                ImageError::Io {
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        Ok(VerifyingReader::new(
            io::BufReader::with_capacity(256 * 1024, f),
            d.clone(),
            size,
        ))
    }

    /// Reads a whole blob, verified.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(d);
        let v = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::BlobNotFound {
                    digest: d.to_string(),
                }
            } else {
                ImageError::Io {
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        let actual = Digest::of(&v);
        if &actual != d {
            return Err(ImageError::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
                size: v.len() as u64,
                expected_size: None,
            });
        }
        Ok(v)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, d: &Digest) -> Result<T, ImageError> {
        let b = self.read_blob(d)?;
        serde_json::from_slice(&b).map_err(|source| ImageError::Json {
            what: d.to_string(),
            source,
        })
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<Index, ImageError> {
        let p = self.root.join("index.json");
        let b = fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&b).map_err(|source| ImageError::Json {
            what: p.display().to_string(),
            source,
        })
    }

    fn write_index(&self, idx: &Index) -> Result<(), ImageError> {
        let p = self.root.join("index.json");
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .root
            .join(format!("tmp/index.json.{}-{n}.tmp", std::process::id()));
        let b = serde_json::to_vec_pretty(idx).expect("index serializes");
        fs::write(&tmp, b).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// Points `name` (normalized to NAME:TAG) at a manifest already in the store.
    pub fn tag(&self, name: &str, manifest: &Digest) -> Result<(), ImageError> {
        let name = normalize_name(name);
        let size = fs::metadata(self.blob_path(manifest))
            .map_err(|_| ImageError::BlobNotFound {
                digest: manifest.to_string(),
            })?
            .len();
        let _l = self.lock()?;
        let mut idx = self.index()?;
        idx.manifests
            .retain(|m| m.annotations.get(REF_NAME) != Some(&name));
        let mut annotations = BTreeMap::new();
        annotations.insert(REF_NAME.to_string(), name);
        idx.manifests.push(Descriptor {
            media_type: MEDIA_MANIFEST.into(),
            digest: manifest.clone(),
            size,
            annotations,
        });
        self.write_index(&idx)
    }

    /// Removes a tag (the blobs stay until [`ImageStore::gc`]).
    pub fn untag(&self, name: &str) -> Result<(), ImageError> {
        let name = normalize_name(name);
        let _l = self.lock()?;
        let mut idx = self.index()?;
        let before = idx.manifests.len();
        idx.manifests
            .retain(|m| m.annotations.get(REF_NAME) != Some(&name));
        if idx.manifests.len() == before {
            return Err(ImageError::ImageNotFound { name });
        }
        self.write_index(&idx)
    }

    /// Lists `(name, manifest digest)` for every tag.
    pub fn list(&self) -> Result<Vec<(String, Digest)>, ImageError> {
        Ok(self
            .index()?
            .manifests
            .into_iter()
            .filter_map(|m| Some((m.annotations.get(REF_NAME)?.clone(), m.digest)))
            .collect())
    }

    /// Resolves a name (or a `sha256:` manifest digest) to a manifest digest.
    pub fn resolve(&self, name: &str) -> Result<Digest, ImageError> {
        if name.starts_with("sha256:") {
            let d = Digest::parse(name)?;
            if self.has_blob(&d) {
                return Ok(d);
            }
        }
        // A reference pinned to a manifest digest (`name:tag@sha256:…`) is that manifest,
        // whatever this store calls it.
        if let Some(d) = name
            .rsplit_once('@')
            .and_then(|(_, d)| Digest::parse(d).ok())
        {
            if self.has_blob(&d) && self.manifest(&d).is_ok() {
                return Ok(d);
            }
        }
        let n = normalize_name(name);
        self.list()?
            .into_iter()
            .find(|(k, _)| *k == n)
            .map(|(_, d)| d)
            .ok_or(ImageError::ImageNotFound { name: n })
    }

    /// Reads a verified manifest.
    pub fn manifest(&self, d: &Digest) -> Result<Manifest, ImageError> {
        self.read_json(d)
    }

    /// Returns the image config of `name`.
    pub fn config(&self, name: &str) -> Result<ImageConfig, ImageError> {
        let m = self.manifest(&self.resolve(name)?)?;
        let c: ConfigFile = self.read_json(&m.config.digest)?;
        Ok(c.config.unwrap_or_default())
    }

    /// Creates a single-layer image from a rootfs tarball (plain or gzip), like `docker import`.
    pub fn import_rootfs_tar<R: Read>(
        &self,
        reader: R,
        name: &str,
        config: ImageConfig,
    ) -> Result<Digest, ImageError> {
        let mut br = io::BufReader::new(reader);
        let gz = is_gzip(&mut br).map_err(io_err(&self.root))?;
        let (layer, size, media) = if gz {
            let (d, s) = self.put_blob_reader(&mut br, None)?;
            (d, s, MEDIA_LAYER_GZIP)
        } else {
            let (d, s) = self.put_blob_reader(&mut br, None)?;
            (d, s, MEDIA_LAYER_TAR)
        };
        let diff_id = if gz {
            let r = flate2::read::GzDecoder::new(self.open_blob(&layer, Some(size))?);
            let mut h = Sha256::new();
            let mut w = HashWriter(&mut h);
            io::copy(&mut { r }, &mut w).map_err(io_err(self.blob_path(&layer)))?;
            Digest::from_hasher(h)
        } else {
            layer.clone()
        };
        let mut cfg = config;
        if !cfg.env.iter().any(|e| e.starts_with("PATH=")) {
            cfg.env.insert(0, format!("PATH={}", DEFAULT_PATH));
        }
        let cf = ConfigFile {
            created: Some(crate::timefmt::rfc3339_now()),
            architecture: go_arch().into(),
            os: "linux".into(),
            config: Some(cfg),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: Vec::new(),
        };
        let layers = vec![Descriptor {
            media_type: media.into(),
            digest: layer,
            size,
            annotations: BTreeMap::new(),
        }];
        self.store_image(&cf, layers, Some(name))
    }

    /// Stores a manifest with its config and layers taken from `blob_source` (a function that
    /// opens a blob by digest), verifying everything. Used by the archive importers.
    pub(crate) fn ingest_manifest_bytes(
        &self,
        manifest_bytes: &[u8],
        mut open: impl FnMut(&Digest) -> Result<Box<dyn Read>, ImageError>,
    ) -> Result<Digest, ImageError> {
        let m: Manifest =
            serde_json::from_slice(manifest_bytes).map_err(|source| ImageError::Json {
                what: "manifest".into(),
                source,
            })?;
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            if !self.has_blob(&d.digest) {
                let r = open(&d.digest)?;
                self.put_blob_reader(r, Some((&d.digest, Some(d.size))))?;
            }
        }
        self.put_blob(manifest_bytes)
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_gzip<R: io::BufRead>(r: &mut R) -> io::Result<bool> {
    let b = r.fill_buf()?;
    Ok(b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b)
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests;
