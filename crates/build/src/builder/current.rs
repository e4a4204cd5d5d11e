//! The image a stage has built so far (config, build arguments, where it stands in each
//! `--cache-from` image) and the cache key of a step on top of it. It runs nothing and
//! touches no store.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use swarm_runtime::image::commit::Lineage;
use swarm_runtime::image::Digest;
use swarm_runtime::ImageConfig;

/// The image a stage has built so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Current {
    /// `None` before anything is committed on `FROM scratch`.
    pub(super) image: Option<Digest>,
    pub(super) config: ImageConfig,
    /// Build arguments declared in this stage, with their values.
    pub(super) args: BTreeMap<String, String>,
    /// Whether CMD was set in this stage (ENTRYPOINT resets an inherited one).
    pub(super) cmd_set: bool,
    /// Where this stage stands in each `--cache-from` image that matched it so far.
    pub(super) cache_from: Vec<CacheFrom>,
}

/// A `--cache-from` image followed step by step: its next layer and history entry.
#[derive(Debug, Clone)]
pub(super) struct CacheFrom {
    lineage: std::sync::Arc<Lineage>,
    layer: usize,
    hist: usize,
}

impl Current {
    /// The `--cache-from` images whose layers and history start like this stage's base.
    pub(super) fn start_cache_from(&mut self, sources: &[std::sync::Arc<Lineage>], base: &Lineage) {
        self.cache_from = sources
            .iter()
            .filter(|l| {
                l.layers.len() >= base.layers.len()
                    && l.history.len() >= base.history.len()
                    && l.layers.iter().zip(&base.layers).all(|(a, b)| a.1 == b.1)
            })
            .map(|l| CacheFrom {
                lineage: l.clone(),
                layer: base.layers.len(),
                hist: base.history.len(),
            })
            .collect();
    }

    /// Moves past a step that wrote history `created_by` and layer `diff` (None: no layer);
    /// the images whose next step was another stop matching.
    pub(super) fn follow(&mut self, created_by: &str, diff: Option<&Digest>) {
        self.cache_from.retain_mut(|c| {
            let Some(h) = c.lineage.history.get(c.hist) else {
                return false;
            };
            if h.created_by != created_by || h.empty_layer != diff.is_none() {
                return false;
            }
            if let Some(d) = diff {
                if c.lineage.layers.get(c.layer).map(|l| &l.1) != Some(d) {
                    return false;
                }
                c.layer += 1;
            }
            c.hist += 1;
            true
        });
    }

    /// The layer a `--cache-from` image made with the step `created_by` next (a RUN whose
    /// every step before matched).
    pub(super) fn reusable(
        &self,
        created_by: &str,
    ) -> Option<(swarm_runtime::image::Descriptor, Digest)> {
        self.cache_from.iter().find_map(|c| {
            let h = c.lineage.history.get(c.hist)?;
            (h.created_by == created_by && !h.empty_layer)
                .then(|| c.lineage.layers.get(c.layer).cloned())
                .flatten()
        })
    }
}

/// A step's cache key: the parent image, the instruction, and what else decides its result.
pub(super) fn cache_key(cur: &Current, instruction: &str, inputs: &str) -> String {
    let mut h = Sha256::new();
    h.update(cur.image.as_ref().map(|d| d.as_str()).unwrap_or("scratch"));
    h.update([0]);
    h.update(instruction);
    h.update([0]);
    h.update(inputs);
    h.update([0]);
    // The config the step starts from (a config-only step's result depends on it).
    h.update(serde_json::to_vec(&cur.config).unwrap_or_default());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
