//! A new image from a parent and one build step: the step's layer (a tar from `diff.rs`, or
//! none for a step that only changes the config, like ENV) on top of the parent's layers, the
//! new config, and the step in the image's history as Docker records it (`created_by`,
//! `empty_layer`). What `docker commit` and each step of `docker build` do.

use super::*;

/// One entry of an image's history (OCI image config `history`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// How an image came to be: its layers (descriptor, diff id), lowest first, and its history.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    pub layers: Vec<(Descriptor, Digest)>,
    pub history: Vec<History>,
}

/// One build step to commit.
#[derive(Debug, Clone, Default)]
pub struct Step<'a> {
    /// The parent image (a name or digest); `None` for `FROM scratch`.
    pub parent: Option<&'a str>,
    /// The step's layer, an uncompressed tar file; `None` for a config-only step.
    pub layer: Option<&'a Path>,
    /// Or a layer already in the store (its descriptor and diff id), e.g. taken from a
    /// `--cache-from` image; used instead of `layer`.
    pub reuse: Option<(Descriptor, Digest)>,
    /// The image config after the step.
    pub config: ImageConfig,
    /// What the history shows for the step (`RUN /bin/sh -c make`).
    pub created_by: String,
}

impl ImageStore {
    /// Stores the image `step` makes and returns its manifest digest (tagged `tag` if given).
    pub fn commit(&self, step: &Step<'_>, tag: Option<&str>) -> Result<Digest, ImageError> {
        let (mut layers, mut cf) = match step.parent {
            Some(p) => {
                let m = self.manifest(&self.resolve(p)?)?;
                let cf: ConfigFile = self.read_json(&m.config.digest)?;
                (m.layers, cf)
            }
            None => (Vec::new(), ConfigFile::default()),
        };
        // Docker counts the non-empty history entries against the layers: an imported
        // parent without history gets one entry per layer.
        if cf.history.is_empty() {
            cf.history = layers
                .iter()
                .map(|_| History {
                    created_by: "imported".into(),
                    ..Default::default()
                })
                .collect();
        }
        let now = crate::timefmt::rfc3339_now();
        if let Some((d, diff_id)) = &step.reuse {
            cf.rootfs.diff_ids.push(diff_id.clone());
            layers.push(d.clone());
        } else if let Some(path) = step.layer {
            let f = File::open(path).map_err(io_err(path))?;
            let (digest, size) = self.put_blob_reader(f, None)?;
            cf.rootfs.diff_ids.push(digest.clone());
            layers.push(Descriptor {
                media_type: MEDIA_LAYER_TAR.into(),
                digest,
                size,
                annotations: BTreeMap::new(),
            });
        }
        cf.history.push(History {
            created: Some(now.clone()),
            created_by: step.created_by.clone(),
            comment: String::new(),
            empty_layer: step.layer.is_none() && step.reuse.is_none(),
        });
        cf.created = Some(now);
        cf.architecture = go_arch().into();
        cf.os = "linux".into();
        cf.rootfs.kind = "layers".into();
        cf.config = Some(step.config.clone());
        self.store_image(&cf, layers, tag)
    }

    /// Writes the config and the manifest of an image; tags it.
    pub(super) fn store_image(
        &self,
        cf: &ConfigFile,
        layers: Vec<Descriptor>,
        tag: Option<&str>,
    ) -> Result<Digest, ImageError> {
        let cbytes = serde_json::to_vec(cf).expect("config serializes");
        let cdig = self.put_blob(&cbytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.into()),
            config: Descriptor {
                media_type: MEDIA_CONFIG.into(),
                digest: cdig,
                size: cbytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers,
        };
        let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let mdig = self.put_blob(&mbytes)?;
        if let Some(t) = tag {
            self.tag(t, &mdig)?;
        }
        Ok(mdig)
    }

    /// The layers of image `name` (with their diff ids) and its history (an imported image
    /// without history gets one "imported" entry per layer, as [`ImageStore::commit`] counts).
    pub fn lineage(&self, name: &str) -> Result<Lineage, ImageError> {
        let m = self.manifest(&self.resolve(name)?)?;
        let cf: ConfigFile = self.read_json(&m.config.digest)?;
        let layers = m
            .layers
            .into_iter()
            .zip(cf.rootfs.diff_ids.iter().cloned())
            .collect::<Vec<_>>();
        let history = if cf.history.is_empty() {
            layers
                .iter()
                .map(|_| History {
                    created_by: "imported".into(),
                    ..Default::default()
                })
                .collect()
        } else {
            cf.history
        };
        Ok(Lineage { layers, history })
    }

    /// The history of image `name` (oldest first).
    pub fn history(&self, name: &str) -> Result<Vec<History>, ImageError> {
        let m = self.manifest(&self.resolve(name)?)?;
        let cf: ConfigFile = self.read_json(&m.config.digest)?;
        Ok(cf.history)
    }
}
