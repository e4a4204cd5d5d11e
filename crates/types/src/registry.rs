//! What the cluster registry replicates through Raft: repositories (tags → manifest digests and
//! the manifests themselves, which are small) and each manager's registry endpoint. Blobs are
//! not here: managers keep them on disk and copy them between themselves.
//!
//! Also the pure syntax rules of the OCI Distribution spec (repository names, tags, digests)
//! and of image references, so that the manager, the agent and the CLI agree on them.

use crate::meta::Meta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest manifest or index the registry accepts (the Distribution spec suggests 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest total of manifest bytes one repository may hold: a repository is one replicated
/// object, written whole at every push, and must fit a Raft entry.
pub const MAX_REPOSITORY_BYTES: usize = 8 * 1024 * 1024;
/// Longest repository name (the spec lets registries limit it; Docker Hub uses 255).
pub const MAX_NAME_LEN: usize = 255;

/// A repository of the cluster registry. `id` is the repository name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Repository {
    pub id: String,
    pub meta: Meta,
    /// Tag → manifest digest.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Manifest digest → the manifest as pushed.
    #[serde(default)]
    pub manifests: BTreeMap<String, ManifestRecord>,
}

impl Repository {
    /// Removes a tag, or a manifest by digest with every tag naming it; whether it was here.
    pub fn remove_reference(&mut self, reference: &str) -> bool {
        if valid_digest(reference) {
            let had = self.manifests.remove(reference).is_some();
            self.tags.retain(|_, d| d != reference);
            had
        } else {
            self.tags.remove(reference).is_some()
        }
    }

    /// Total manifest bytes held.
    pub fn manifest_bytes(&self) -> usize {
        self.manifests.values().map(|m| m.content.len()).sum()
    }
}

/// A manifest or index exactly as pushed (byte for byte: its digest is of these bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ManifestRecord {
    pub media_type: String,
    /// The manifest's JSON text (manifests are UTF-8 JSON; anything else is refused).
    pub content: String,
    /// Blobs it references (config, layers), so collection and peers know what it needs.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Manifests an index references.
    #[serde(default)]
    pub children: Vec<String>,
    /// The `subject` digest (referrers), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Where a manager serves the registry; `id` is the manager's node id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistryEndpoint {
    pub id: String,
    pub meta: Meta,
    /// `host:port` other nodes reach it on.
    pub addr: String,
}

/// Whether `name` is a valid repository name: path components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most [`MAX_NAME_LEN`] bytes. This
/// also refuses `..`, empty components and anything that could leave a directory.
pub fn valid_repo_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Whether `t` is a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Whether `d` is a sha256 digest we accept: `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// An image reference split into registry host, repository and tag or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` when the reference names a registry; None = the cluster registry.
    pub registry: Option<String>,
    pub repository: String,
    /// A tag or a digest (`sha256:...`).
    pub reference: String,
}

impl ImageRef {
    /// Parses `[host[:port]/]repo[:tag][@digest]`. The first component names a registry when
    /// it contains `.` or `:` or is `localhost` (Docker's rule); otherwise the whole name is a
    /// repository of the cluster registry. No tag means `latest`.
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(format!(
                        "invalid digest {d:?} in image reference {s:?}: expected sha256: and 64 hex digits"
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, p))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), p)
            }
            _ => (None, rest),
        };
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t)),
            _ => (path, None),
        };
        if !valid_repo_name(repo) {
            return Err(format!(
                "invalid repository name {repo:?} in image reference {s:?}: use lowercase letters, digits and separators (. _ __ -) in /-separated components"
            ));
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(format!(
                    "invalid tag {t:?} in image reference {s:?}: use letters, digits, _ . - (at most 128)"
                ));
            }
        }
        Ok(ImageRef {
            registry,
            repository: repo.to_string(),
            reference: digest.unwrap_or_else(|| tag.unwrap_or("latest").to_string()),
        })
    }

    pub fn is_digest(&self) -> bool {
        self.reference.starts_with("sha256:")
    }
}

/// What `sealed` reads in answers to clients: the credentials exist, their bytes are not
/// shown. A spec sent back with it keeps the credentials the service has.
pub const SEALED_MARKER: &str = "(sealed)";

/// Credentials a node uses to pull a service's image from another registry
/// (`--with-registry-auth`). `clear` is Docker's `auth` of `config.json` (base64 of
/// `user:password`); the client sends it, the manager seals it into `sealed` (encrypted under
/// a key only managers hold) and clears it before the spec is stored, and the dispatcher
/// opens it again only into the assignment of a node that runs the task. Debug output never
/// shows either.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistryAuth {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clear: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
}

crate::shared_default!(RegistryAuth);

impl RegistryAuth {
    pub fn is_empty(&self) -> bool {
        self.clear.is_empty() && self.sealed.is_empty()
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("clear", &(!self.clear.is_empty()).then_some("***"))
            .field("sealed", &(!self.sealed.is_empty()).then_some("***"))
            .finish()
    }
}

/// How `service create|update` pins an image tag to a manifest digest (Docker's
/// `--resolve-image`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveImage {
    /// Resolve the tag at every create and update.
    Always,
    /// Resolve only when the image reference changes.
    Changed,
    /// Never: every node uses the tag as it finds it.
    Never,
}

impl ResolveImage {
    /// Parses the flag's value; empty means Docker's default, `always`.
    pub fn parse(s: &str) -> Result<ResolveImage, String> {
        match s {
            "" | "always" => Ok(ResolveImage::Always),
            "changed" => Ok(ResolveImage::Changed),
            "never" => Ok(ResolveImage::Never),
            other => Err(format!(
                "invalid --resolve-image {other:?}: use always, changed or never"
            )),
        }
    }
}

/// The image reference as shown in lists: a pinned `name:tag@sha256:…` shows as `name:tag`
/// (as Docker does); a reference by digest alone keeps its digest.
pub fn display_image(image: &str) -> &str {
    match image.split_once('@') {
        Some((named, _)) if named.rsplit('/').next().is_some_and(|l| l.contains(':')) => named,
        _ => image,
    }
}

/// Resolves `image` to `name:tag@digest` from the cluster registry's replicated repositories.
/// `Ok(None)`: nothing to do (already pinned by digest). `Err`: why it cannot be pinned (an
/// external registry, or a tag the cluster registry does not hold, e.g. an image imported on
/// the nodes); the caller keeps the tag and warns, as Docker does.
pub fn pin_image<'a>(
    repos: impl Fn(&str) -> Option<&'a Repository>,
    image: &str,
) -> Result<Option<String>, String> {
    let r = ImageRef::parse(image)?;
    if r.is_digest() {
        return Ok(None);
    }
    if let Some(host) = &r.registry {
        return Err(format!(
            "{host} is not the cluster registry; managers resolve only images of the cluster registry"
        ));
    }
    let digest = repos(&r.repository)
        .and_then(|repo| repo.tags.get(&r.reference))
        .ok_or_else(|| {
            format!(
                "the cluster registry has no {}:{} (push it with `swarmctl image push`)",
                r.repository, r.reference
            )
        })?;
    Ok(Some(format!("{}:{}@{digest}", r.repository, r.reference)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec() {
        for ok in ["busybox", "a/b", "library/busybox", "a.b_c__d--e/f-1", "0"] {
            assert!(valid_repo_name(ok), "{ok}");
        }
        for bad in [
            "", "..", "a/../b", "../etc", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-",
            "a b", "a%2f..", ".a", "a/.", "a\0",
        ] {
            assert!(!valid_repo_name(bad), "{bad:?}");
        }
        assert!(!valid_repo_name(&"a".repeat(256)));
    }

    #[test]
    fn tags_and_digests() {
        assert!(valid_tag("latest") && valid_tag("v1.2_3-x") && valid_tag("_x"));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129))
        );
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!valid_digest("sha256:abc"));
        assert!(!valid_digest(&format!("sha512:{}", "a".repeat(64))));
    }

    #[test]
    fn references() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            (r.registry, r.repository.as_str(), r.reference.as_str()),
            (None, "busybox", "latest")
        );
        let r = ImageRef::parse("team/app:v2").unwrap();
        assert_eq!(
            (r.registry, r.repository.as_str(), r.reference.as_str()),
            (None, "team/app", "v2")
        );
        let r = ImageRef::parse("127.0.0.1:5000/app:v2").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!((r.repository.as_str(), r.reference.as_str()), ("app", "v2"));
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&format!("localhost/app@{d}")).unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost"));
        assert!(r.is_digest());
        assert!(ImageRef::parse("App").is_err());
        assert!(ImageRef::parse("a/../b").is_err());
        assert!(ImageRef::parse("a@sha256:zz").is_err());
    }

    #[test]
    fn images_pin_to_the_cluster_registry_digest() {
        let d = format!("sha256:{}", "c".repeat(64));
        let mut repo = Repository {
            id: "team/web".into(),
            ..Default::default()
        };
        repo.tags.insert("v2".into(), d.clone());
        let repos = |n: &str| (n == "team/web").then_some(&repo);
        assert_eq!(
            pin_image(repos, "team/web:v2").unwrap(),
            Some(format!("team/web:v2@{d}"))
        );
        // Already pinned: left as it is.
        assert_eq!(pin_image(repos, &format!("team/web:v2@{d}")).unwrap(), None);
        assert_eq!(pin_image(repos, &format!("team/web@{d}")).unwrap(), None);
        // No such tag, no such repository, another registry: a reason, no pin.
        assert!(pin_image(repos, "team/web:v3")
            .unwrap_err()
            .contains("no team/web:v3"));
        assert!(pin_image(repos, "busybox")
            .unwrap_err()
            .contains("no busybox:latest"));
        assert!(pin_image(repos, "example.com/web:v2")
            .unwrap_err()
            .contains("not the cluster registry"));
        assert!(pin_image(repos, "Bad").is_err());
    }

    #[test]
    fn pinned_images_display_by_tag() {
        let d = format!("sha256:{}", "c".repeat(64));
        assert_eq!(display_image(&format!("web:2@{d}")), "web:2");
        assert_eq!(
            display_image(&format!("host:5000/web:2@{d}")),
            "host:5000/web:2"
        );
        assert_eq!(
            display_image(&format!("host:5000/web@{d}")),
            format!("host:5000/web@{d}")
        );
        assert_eq!(display_image("web"), "web");
        assert_eq!(ResolveImage::parse("").unwrap(), ResolveImage::Always);
        assert_eq!(
            ResolveImage::parse("changed").unwrap(),
            ResolveImage::Changed
        );
        assert!(ResolveImage::parse("sometimes")
            .unwrap_err()
            .contains("always, changed or never"));
    }
}
