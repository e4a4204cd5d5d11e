//! Import and export of image archives: OCI image layouts (directory or tar) and `docker save`
//! archives (`manifest.json` + `<config>.json` + `<layer>/layer.tar`).
//!
//! Archives are untrusted: they are first extracted with the same safe extractor as layers
//! (no `..`, no absolute paths, no devices) into a private staging dir, then every blob is
//! re-hashed on its way into the store. Exports write an OCI layout that also carries a
//! docker-style `manifest.json`, so `docker load` accepts it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    io_err, normalize_name, unpack, Descriptor, Digest, ImageError, ImageStore, Index, Manifest,
    MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_MANIFEST, REF_NAME,
};

#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl ImageStore {
    /// Imports an image archive (tar, optionally gzip): an OCI layout or a `docker save`
    /// archive. `name` renames the (single) image; otherwise the archive's tags are used.
    /// Returns the names imported.
    pub fn import_archive<R: Read>(
        &self,
        reader: R,
        name: Option<&str>,
    ) -> Result<Vec<String>, ImageError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self
            .root()
            .join("tmp")
            .join(format!("archive-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let staging = Staging(dir);
        let mut br = io::BufReader::new(reader);
        let gz = super::is_gzip(&mut br).map_err(io_err(&staging.0))?;
        let r: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(br))
        } else {
            Box::new(br)
        };
        unpack::unpack_layer(r, &staging.0, unpack::UnpackOptions::default()).map_err(
            |source| ImageError::Unpack {
                digest: "archive".into(),
                source,
            },
        )?;
        self.import_dir(&staging.0, name)
    }

    /// Imports from an extracted OCI layout or `docker save` directory.
    pub fn import_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        // `docker save` (all versions) writes manifest.json with RepoTags; docker >= 25 also
        // writes an OCI layout whose ref names are bare tags, so prefer manifest.json.
        if dir.join("manifest.json").is_file() {
            self.import_docker_dir(dir, name)
        } else if dir.join("index.json").is_file() && dir.join("oci-layout").is_file() {
            self.import_oci_dir(dir, name)
        } else {
            Err(ImageError::UnsupportedArchive {
                reason: "neither an OCI layout (index.json + oci-layout) nor a docker save archive (manifest.json)".into(),
            })
        }
    }

    fn import_oci_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        let ip = dir.join("index.json");
        let idx: Index =
            serde_json::from_slice(&fs::read(&ip).map_err(io_err(&ip))?).map_err(|source| {
                ImageError::Json {
                    what: ip.display().to_string(),
                    source,
                }
            })?;
        let open_blob = |d: &Digest| -> Result<Box<dyn Read>, ImageError> {
            let p = dir.join("blobs/sha256").join(d.hex());
            let f = File::open(&p).map_err(|_| ImageError::BlobNotFound {
                digest: d.to_string(),
            })?;
            Ok(Box::new(io::BufReader::new(f)))
        };
        let mut names = Vec::new();
        let manifests: Vec<&Descriptor> = idx
            .manifests
            .iter()
            .filter(|m| m.media_type == MEDIA_MANIFEST || m.media_type.contains("manifest.v2"))
            .collect();
        if name.is_some() && manifests.len() != 1 {
            return Err(ImageError::UnsupportedArchive {
                reason: format!(
                    "a name can only be given for a single-image archive, this one has {}",
                    manifests.len()
                ),
            });
        }
        for m in manifests {
            let mut mb = Vec::new();
            open_blob(&m.digest)?
                .read_to_end(&mut mb)
                .map_err(io_err(dir))?;
            if Digest::of(&mb) != m.digest {
                return Err(ImageError::DigestMismatch {
                    expected: m.digest.to_string(),
                    actual: Digest::of(&mb).to_string(),
                    size: mb.len() as u64,
                    expected_size: Some(m.size),
                });
            }
            let md = self.ingest_manifest_bytes(&mb, open_blob)?;
            let tag = name
                .map(str::to_string)
                .or_else(|| m.annotations.get(REF_NAME).cloned())
                .or_else(|| {
                    m.annotations
                        .get("io.containerd.image.name")
                        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
                });
            if let Some(t) = tag {
                self.tag(&t, &md)?;
                names.push(normalize_name(&t));
            }
        }
        Ok(names)
    }

    fn import_docker_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        let mp = dir.join("manifest.json");
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&fs::read(&mp).map_err(io_err(&mp))?).map_err(|source| {
                ImageError::Json {
                    what: mp.display().to_string(),
                    source,
                }
            })?;
        if name.is_some() && entries.len() != 1 {
            return Err(ImageError::UnsupportedArchive {
                reason: format!(
                    "a name can only be given for a single-image archive, this one has {}",
                    entries.len()
                ),
            });
        }
        let mut names = Vec::new();
        for e in entries {
            let rel = |s: &str| -> Result<PathBuf, ImageError> {
                match unpack::sanitize_entry_path(Path::new(s)) {
                    Ok(Some(p)) => Ok(dir.join(p)),
                    _ => Err(ImageError::UnsupportedArchive {
                        reason: format!("manifest.json references an unsafe path {s:?}"),
                    }),
                }
            };
            let cpath = rel(&e.config)?;
            let cfile = File::open(&cpath).map_err(io_err(&cpath))?;
            let (cdig, csize) = self.put_blob_reader(cfile, None)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let lp = rel(l)?;
                let f = File::open(&lp).map_err(io_err(&lp))?;
                let mut br = io::BufReader::new(f);
                let gz = super::is_gzip(&mut br).map_err(io_err(&lp))?;
                let (d, s) = self.put_blob_reader(br, None)?;
                layers.push(Descriptor {
                    media_type: if gz {
                        MEDIA_LAYER_GZIP
                    } else {
                        MEDIA_LAYER_TAR
                    }
                    .into(),
                    digest: d,
                    size: s,
                    annotations: BTreeMap::new(),
                });
            }
            let m = Manifest {
                schema_version: 2,
                media_type: Some(MEDIA_MANIFEST.into()),
                config: Descriptor {
                    media_type: MEDIA_CONFIG.into(),
                    digest: cdig,
                    size: csize,
                    annotations: BTreeMap::new(),
                },
                layers,
            };
            let md = self.put_blob(&serde_json::to_vec(&m).expect("manifest serializes"))?;
            let tags: Vec<String> = match name {
                Some(n) => vec![n.to_string()],
                None => e.repo_tags.unwrap_or_default(),
            };
            for t in tags {
                self.tag(&t, &md)?;
                names.push(normalize_name(&t));
            }
        }
        Ok(names)
    }

    /// Writes `names` as an OCI layout directory (plus a docker `manifest.json`).
    pub fn export_dir(&self, names: &[&str], dir: &Path) -> Result<(), ImageError> {
        let files = self.export_files(names)?;
        for (rel, src) in files {
            let dst = dir.join(&rel);
            if let Some(p) = dst.parent() {
                fs::create_dir_all(p).map_err(io_err(p))?;
            }
            match src {
                ExportSrc::Bytes(b) => fs::write(&dst, b).map_err(io_err(&dst))?,
                ExportSrc::Blob(d) => {
                    let mut r = self.open_blob(&d, None)?;
                    let mut f = File::create(&dst).map_err(io_err(&dst))?;
                    io::copy(&mut r, &mut f).map_err(io_err(&dst))?;
                }
            }
        }
        Ok(())
    }

    /// Writes `names` as a tar archive of an OCI layout (plus a docker `manifest.json`).
    pub fn export_archive<W: Write>(&self, names: &[&str], w: W) -> Result<(), ImageError> {
        let files = self.export_files(names)?;
        let mut b = tar::Builder::new(w);
        let terr = |source| ImageError::Io {
            path: PathBuf::from("<archive>"),
            source,
        };
        let mut dirs_done = std::collections::HashSet::new();
        for (rel, src) in files {
            if let Some(parent) = Path::new(&rel).parent() {
                let mut cur = PathBuf::new();
                for c in parent.components() {
                    cur.push(c);
                    if dirs_done.insert(cur.clone()) {
                        let mut h = tar::Header::new_ustar();
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(0o755);
                        h.set_size(0);
                        b.append_data(&mut h, &cur, io::empty()).map_err(terr)?;
                    }
                }
            }
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            match src {
                ExportSrc::Bytes(bytes) => {
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, &rel, &bytes[..]).map_err(terr)?;
                }
                ExportSrc::Blob(d) => {
                    let len = fs::metadata(self.blob_path(&d))
                        .map_err(io_err(self.blob_path(&d)))?
                        .len();
                    h.set_size(len);
                    let r = self.open_blob(&d, Some(len))?;
                    b.append_data(&mut h, &rel, r).map_err(terr)?;
                }
            }
        }
        b.into_inner().map_err(terr)?.flush().map_err(terr)
    }

    fn export_files(&self, names: &[&str]) -> Result<Vec<(String, ExportSrc)>, ImageError> {
        let mut files: BTreeMap<String, ExportSrc> = BTreeMap::new();
        let mut idx = Index::default();
        let mut docker = Vec::new();
        for n in names {
            let name = normalize_name(n);
            let md = self.resolve(&name)?;
            let mbytes = self.read_blob(&md)?;
            let m = self.manifest(&md)?;
            let mut annotations = BTreeMap::new();
            annotations.insert(REF_NAME.to_string(), name.clone());
            idx.manifests.push(Descriptor {
                media_type: MEDIA_MANIFEST.into(),
                digest: md.clone(),
                size: mbytes.len() as u64,
                annotations,
            });
            let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
            files.insert(path(&md), ExportSrc::Blob(md.clone()));
            files.insert(
                path(&m.config.digest),
                ExportSrc::Blob(m.config.digest.clone()),
            );
            for l in &m.layers {
                files.insert(path(&l.digest), ExportSrc::Blob(l.digest.clone()));
            }
            docker.push(DockerManifestEntry {
                config: path(&m.config.digest),
                repo_tags: Some(vec![name]),
                layers: m.layers.iter().map(|l| path(&l.digest)).collect(),
            });
        }
        files.insert(
            "oci-layout".into(),
            ExportSrc::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        );
        files.insert(
            "index.json".into(),
            ExportSrc::Bytes(serde_json::to_vec(&idx).expect("index serializes")),
        );
        files.insert(
            "manifest.json".into(),
            ExportSrc::Bytes(serde_json::to_vec(&docker).expect("manifest serializes")),
        );
        Ok(files.into_iter().collect())
    }
}

enum ExportSrc {
    Bytes(Vec<u8>),
    Blob(Digest),
}
