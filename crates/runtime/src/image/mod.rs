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
pub mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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

/// A validated `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let ok = s
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Digest(s.to_ascii_lowercase()))
        } else {
            Err(ImageError::InvalidDigest {
                digest: s.to_string(),
            })
        }
    }
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }
    fn from_hasher(h: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }
    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Digest::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// OCI image manifest (subset we need; unknown fields ignored on read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// OCI image index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.into()),
            manifests: Vec::new(),
        }
    }
}

/// The runtime-relevant part of an image config (`config` section of the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    /// Docker's `HEALTHCHECK` (absent from OCI-only configs; old stores load without it).
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<ImageHealthcheck>,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `"80/tcp": {}` as Docker writes them.
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// `ONBUILD` triggers, as Docker stores them: run by a build that starts FROM this image.
    #[serde(
        rename = "OnBuild",
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
}

/// Docker writes `"OnBuild": null` for an image without triggers.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The `Healthcheck` of a docker image config; durations in nanoseconds, 0 = default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHealthcheck {
    /// `["CMD", args...]`, `["CMD-SHELL", command]`, `["NONE"]` or empty (inherit).
    #[serde(rename = "Test", default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ImageHealthcheck {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.interval)
    }
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.timeout)
    }
    pub fn start_period(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.start_period)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RootFs {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// OCI image config file (subset).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<ImageConfig>,
    #[serde(default)]
    rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<commit::History>,
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
            cfg.env
                .insert(0, format!("PATH={}", crate::spec::DEFAULT_PATH));
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
    fn layer_dir_for(&self, layer: &Descriptor, diff_id: Option<&Digest>) -> PathBuf {
        let key = diff_id.unwrap_or(&layer.digest);
        self.root.join("layers").join(key.hex())
    }

    fn unpack_layer(
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
    fn lock_file(&self, p: &Path) -> Result<Lock, ImageError> {
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

    fn unpack_layer_locked(
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
        Ok(stats)
    }
}

/// Bytes of the regular files under `p` (symlinks not followed); best effort.
fn disk_usage(p: &Path) -> u64 {
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
