//! Pulling images into the node's store before a task starts. An image reference without a
//! registry host means the cluster registry (the managers' `--registry-addr`, learned from
//! heartbeat answers), reached over mutual TLS with the node's certificate; a reference naming
//! a registry goes there, over HTTPS, or plain HTTP for loopback registries and those given as
//! `swarmd --insecure-registry HOST:PORT`. Anonymous bearer tokens are fetched when a registry
//! asks for one (Docker's token flow).
//!
//! Each image is pulled once per host however many tasks want it: concurrent callers share
//! one pull (`inflight`). Layers download in parallel (at most [`PARALLEL_BLOBS`]), each
//! streamed into the store through its digest check, so a bad byte fails the pull and nothing
//! unverified is kept. Unpacking happens later, once per layer (`ImageStore::prepare`).
//!
//! Hand-written over reqwest rather than `oci-client`: we need the node's own TLS
//! configuration (client certificate, cluster CA, manager-only server check) and streaming
//! straight into our verifying image store; the protocol part (manifest negotiation, blob GET,
//! anonymous token) is a few small functions.

use crate::managers::Managers;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_runtime::image::{normalize_name, Digest, ImageStore};
use swarm_types::registry::ImageRef;

/// How a pull error begins when no registry could be reached from this node.
pub const UNREACHABLE: &str = "no registry reachable";

mod push;

/// Whether a pull error is this node's (no registry reachable from here, nothing learned of
/// the cluster registry yet, the image store failing), as opposed to the registry's answer
/// (no such image, refused credentials, a bad manifest), which any node would get.
pub fn is_node_local(err: &str) -> bool {
    err.starts_with(UNREACHABLE) || err.starts_with(STORING) || err.starts_with(NO_CLUSTER_REGISTRY)
}

const STORING: &str = "storing ";
const NO_CLUSTER_REGISTRY: &str = "no cluster registry is known yet";

/// Blobs downloaded at once per pull.
pub const PARALLEL_BLOBS: usize = 4;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

type PullFuture = Shared<BoxFuture<'static, Result<(), String>>>;

pub struct Puller {
    images: Arc<ImageStore>,
    managers: Managers,
    insecure: Vec<String>,
    /// The cluster registry: the node certificate, the cluster CA.
    cluster: Option<reqwest::Client>,
    /// Other registries over HTTPS (system roots) or HTTP.
    public: reqwest::Client,
    inflight: Mutex<HashMap<String, PullFuture>>,
    /// Pulls downloading layers: image name → (bytes received, bytes to receive).
    progress: Mutex<HashMap<String, (Arc<AtomicU64>, u64)>>,
}

/// Decimal units as Docker prints sizes (kB, MB, GB).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if b < 1000 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1000.0;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// How a pull authenticates: the service's credentials, and the Authorization header in use
/// once the registry asked for one.
#[derive(Clone, Default)]
struct Creds {
    basic: Option<String>,
    header: Option<String>,
}

/// Why a pull from one registry address failed.
enum PullError {
    /// The registry answered with an error: final, it is the answer.
    Registry(String),
    /// Could not talk to it: another manager's registry may do.
    Transport(String),
}

fn system_roots() -> rustls::RootCertStore {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for f in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(pem) = std::fs::read(f) {
            for c in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(c);
            }
            break;
        }
    }
    roots
}

/// The OCI architecture name of this host.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Puller {
    /// The client for public servers (system roots), which `ADD https://...` downloads with.
    pub fn http_client(&self) -> reqwest::Client {
        self.public.clone()
    }

    pub fn new(
        images: Arc<ImageStore>,
        managers: Managers,
        insecure: Vec<String>,
    ) -> Result<Arc<Puller>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cluster = match managers.tls() {
            Some(cfg) => Some(
                reqwest::Client::builder()
                    .use_preconfigured_tls((*cfg).clone())
                    .connect_timeout(Duration::from_secs(3))
                    .build()
                    .map_err(|e| format!("registry client: {e}"))?,
            ),
            None => None,
        };
        let mut public_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(system_roots())
            .with_no_client_auth();
        public_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let public = reqwest::Client::builder()
            .use_preconfigured_tls(public_tls)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("registry client: {e}"))?;
        Ok(Arc::new(Puller {
            images,
            managers,
            insecure,
            cluster,
            public,
            inflight: Mutex::default(),
            progress: Mutex::default(),
        }))
    }

    /// Makes sure `image` is in the node's store, pulling it when missing. Concurrent calls
    /// for one image share a single pull.
    /// `auth`: the service's registry credentials (`--with-registry-auth`), base64 of
    /// `user:password`, sent to a registry that asks for them.
    pub async fn ensure(self: &Arc<Self>, image: &str, auth: Option<&str>) -> Result<(), String> {
        let name = normalize_name(image);
        if self.images.resolve(&name).is_ok() {
            return Ok(());
        }
        self.shared_pull(&name, auth.map(str::to_string)).await
    }

    /// Joins the pull of `name` in flight, or starts it: one pull per image per host.
    async fn shared_pull(self: &Arc<Self>, name: &str, auth: Option<String>) -> Result<(), String> {
        let fut = {
            let mut m = self.inflight.lock().expect("inflight lock");
            m.entry(name.to_string())
                .or_insert_with(|| {
                    let (me, n) = (self.clone(), name.to_string());
                    async move {
                        let r = me.pull(&n, auth).await;
                        me.inflight.lock().expect("inflight lock").remove(&n);
                        r
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        fut.await
    }

    /// Pulls `image` now (even when present: its tag may have moved), sharing a pull in
    /// flight. Returns the manifest digest now tagged.
    pub async fn pull_now(self: &Arc<Self>, image: &str) -> Result<String, String> {
        let name = normalize_name(image);
        self.shared_pull(&name, None).await?;
        self.images
            .resolve(&name)
            .map(|d| d.to_string())
            .map_err(|e| e.to_string())
    }

    /// How far the pull of `image` got while its layers download: "pulling image: 12.0 MB
    /// of 212.3 MB". None when no download of it is under way.
    pub fn progress(&self, image: &str) -> Option<String> {
        let name = normalize_name(image);
        let m = self.progress.lock().expect("progress lock");
        let (done, total) = m.get(&name)?;
        Some(format!(
            "pulling image: {} of {}",
            human_bytes(done.load(Ordering::Relaxed).min(*total)),
            human_bytes(*total)
        ))
    }

    /// Where an image reference's registry is: (client, base URL) per address to try.
    fn targets(&self, r: &ImageRef) -> Result<Vec<(reqwest::Client, String)>, String> {
        Ok(match &r.registry {
            None => {
                let client = self.cluster.clone().ok_or(
                    "this node has no certificate (plaintext test setup): it cannot use the cluster registry",
                )?;
                let regs = self.managers.registries();
                if regs.is_empty() {
                    return Err(format!("{NO_CLUSTER_REGISTRY} (the managers announce theirs in heartbeat answers); import the image with `swarmctl image import` or retry"));
                }
                regs.into_iter()
                    .map(|a| (client.clone(), format!("https://{a}")))
                    .collect()
            }
            Some(h) if self.insecure.iter().any(|i| i == h) || is_loopback(h) => {
                vec![(self.public.clone(), format!("http://{h}"))]
            }
            Some(h) => vec![(self.public.clone(), format!("https://{h}"))],
        })
    }

    async fn pull(&self, name: &str, auth: Option<String>) -> Result<(), String> {
        let r = ImageRef::parse(name)?;
        let started = std::time::Instant::now();
        let targets = self.targets(&r)?;
        let mut errors = Vec::new();
        for (client, base) in targets {
            // The cluster registry knows the node by its certificate; credentials are for
            // the registry the image names.
            let creds = Creds {
                basic: auth.clone().filter(|_| r.registry.is_some()),
                header: None,
            };
            match self.pull_from(&client, &base, &r, name, creds).await {
                Ok(bytes) => {
                    tracing::info!(image = %name, registry = %base, bytes, ms = started.elapsed().as_millis() as u64, "image pulled");
                    return Ok(());
                }
                Err(PullError::Registry(m)) => return Err(m),
                Err(PullError::Transport(m)) => {
                    tracing::warn!(image = %name, registry = %base, error = %m, "pull failed; trying the next registry");
                    errors.push(format!("{base}: {m}"));
                }
            }
        }
        Err(format!("{UNREACHABLE}: {}", errors.join("; ")))
    }

    /// GET, answering the registry's challenge: basic auth with the service's credentials,
    /// or Docker's token flow (with those credentials, or anonymously).
    async fn get(
        &self,
        client: &reqwest::Client,
        url: &str,
        accept: Option<&str>,
        token: &mut Creds,
    ) -> Result<reqwest::Response, PullError> {
        for _ in 0..2 {
            let mut req = client.get(url);
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            if let Some(h) = token.header.as_ref() {
                req = req.header("authorization", h);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| PullError::Transport(swarm_api::error_chain(&e)))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && token.header.is_none() {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if challenge.to_ascii_lowercase().starts_with("basic") {
                    match &token.basic {
                        Some(b) => {
                            token.header = Some(format!("Basic {b}"));
                            continue;
                        }
                        None => {
                            let e = registry_error(resp).await;
                            return Err(match e {
                                PullError::Registry(m) => PullError::Registry(format!("{m} (the registry wants credentials: create or update the service with --with-registry-auth after docker login)")),
                                other => other,
                            });
                        }
                    }
                }
                match bearer_token(client, &challenge, token.basic.as_deref()).await {
                    Some(t) => {
                        token.header = Some(format!("Bearer {t}"));
                        continue;
                    }
                    None => return Err(registry_error(resp).await),
                }
            }
            if !resp.status().is_success() {
                return Err(registry_error(resp).await);
            }
            return Ok(resp);
        }
        Err(PullError::Registry(
            "the registry refused the credentials (check the service's --with-registry-auth login)"
                .into(),
        ))
    }

    /// Pulls `r` from `base` into the store and tags it `name`; returns the bytes downloaded.
    async fn pull_from(
        &self,
        client: &reqwest::Client,
        base: &str,
        r: &ImageRef,
        name: &str,
        creds: Creds,
    ) -> Result<u64, PullError> {
        let repo = &r.repository;
        let mut token = creds;
        let (mut bytes, mut media_type) = self
            .manifest(client, base, repo, &r.reference, &mut token)
            .await?;
        let parse = |b: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(b).map_err(|e| {
                PullError::Registry(format!("the registry sent an invalid manifest: {e}"))
            })
        };
        let mut v = parse(&bytes)?;
        if media_type.is_empty() {
            media_type = v["mediaType"].as_str().unwrap_or_default().to_string();
        }
        if media_type.contains("index")
            || media_type.contains("manifest.list")
            || v.get("manifests").is_some()
        {
            let list = v["manifests"].as_array().cloned().unwrap_or_default();
            let pick = list
                .iter()
                .find(|m| {
                    m["platform"]["os"].as_str() == Some("linux")
                        && m["platform"]["architecture"].as_str() == Some(arch())
                })
                .or(if list.len() == 1 { list.first() } else { None })
                .ok_or_else(|| {
                    PullError::Registry(format!(
                        "{name} has no image for linux/{} (index of {} manifests)",
                        arch(),
                        list.len()
                    ))
                })?;
            let d = pick["digest"].as_str().unwrap_or_default().to_string();
            let (b, _) = self.manifest(client, base, repo, &d, &mut token).await?;
            bytes = b;
            v = parse(&bytes)?;
        }
        let mut blobs: Vec<(Digest, Option<u64>)> = Vec::new();
        for desc in std::iter::once(&v["config"]).chain(
            v["layers"]
                .as_array()
                .map(|a| a.iter().collect::<Vec<_>>())
                .unwrap_or_default(),
        ) {
            let d = desc["digest"]
                .as_str()
                .and_then(|d| Digest::parse(d).ok())
                .ok_or_else(|| {
                    PullError::Registry(format!("{name}: manifest has a missing or invalid digest"))
                })?;
            blobs.push((d, desc["size"].as_u64()));
        }
        let missing: Vec<_> = blobs
            .into_iter()
            .filter(|(d, _)| !self.images.has_blob(d))
            .collect();
        let done = Arc::new(AtomicU64::new(0));
        let expected: u64 = missing.iter().filter_map(|(_, s)| *s).sum();
        self.progress
            .lock()
            .expect("progress lock")
            .insert(name.to_string(), (done.clone(), expected));
        let downloaded = futures::stream::iter(missing.into_iter().map(|(d, size)| {
            let (token, done) = (token.clone(), done.clone());
            async move { self.blob(client, base, repo, d, size, token, done).await }
        }))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await;
        self.progress.lock().expect("progress lock").remove(name);
        let total = downloaded?;
        let images = self.images.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let d = images.put_blob(&bytes).map_err(|e| e.to_string())?;
            images.tag(&n, &d).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| PullError::Registry(e.to_string()))?
        .map_err(|e| PullError::Registry(format!("{STORING}{name}: {e}")))?;
        Ok(total)
    }

    /// A manifest by tag or digest, verified against the digest asked for or announced.
    async fn manifest(
        &self,
        client: &reqwest::Client,
        base: &str,
        repo: &str,
        reference: &str,
        token: &mut Creds,
    ) -> Result<(Vec<u8>, String), PullError> {
        let url = format!("{base}/v2/{repo}/manifests/{reference}");
        let resp = self.get(client, &url, Some(ACCEPT), token).await?;
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PullError::Transport(swarm_api::error_chain(&e)))?;
        if bytes.len() > swarm_types::registry::MAX_MANIFEST_BYTES {
            return Err(PullError::Registry(format!(
                "{repo}:{reference}: manifest larger than 4 MiB"
            )));
        }
        let actual = Digest::of(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            announced
        };
        if let Some(e) = expected {
            if actual.as_str() != e {
                return Err(PullError::Registry(format!(
                    "{repo}:{reference}: manifest digest mismatch: got {actual}, expected {e}"
                )));
            }
        }
        Ok((bytes.to_vec(), media_type))
    }

    /// Streams one blob into the store through its digest (and size) check, counting the
    /// bytes received into `done`.
    #[allow(clippy::too_many_arguments)]
    async fn blob(
        &self,
        client: &reqwest::Client,
        base: &str,
        repo: &str,
        d: Digest,
        size: Option<u64>,
        mut token: Creds,
        done: Arc<AtomicU64>,
    ) -> Result<u64, PullError> {
        let url = format!("{base}/v2/{repo}/blobs/{d}");
        let resp = self.get(client, &url, None, &mut token).await?;
        let stream = resp
            .bytes_stream()
            .inspect_ok(move |chunk| {
                done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            })
            .map_err(std::io::Error::other);
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let images = self.images.clone();
        let d2 = d.clone();
        tokio::task::spawn_blocking(move || images.put_blob_reader(reader, Some((&d2, size))))
            .await
            .map_err(|e| PullError::Transport(e.to_string()))?
            .map(|(_, n)| n)
            .map_err(|e| {
                let m = e.to_string();
                if m.contains("digest") {
                    PullError::Registry(format!("blob {d}: {m}"))
                } else {
                    PullError::Transport(format!("blob {d}: {m}"))
                }
            })
    }
}

/// The registry's own error: the codes and messages of an OCI error body, else the status.
async fn registry_error(resp: reqwest::Response) -> PullError {
    let status = resp.status();
    let url = resp.url().to_string();
    let body = resp.text().await.unwrap_or_default();
    let msgs: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    let detail = if msgs.is_empty() {
        body.chars().take(200).collect::<String>()
    } else {
        msgs.join("; ")
    };
    let m = format!("registry answered {status} for {url}: {detail}");
    if status.is_server_error() {
        PullError::Transport(m)
    } else {
        PullError::Registry(m)
    }
}

/// Docker's token flow: `Bearer realm=...,service=...,scope=...`, with basic credentials
/// when the service has them, else anonymously.
async fn bearer_token(
    client: &reqwest::Client,
    challenge: &str,
    basic: Option<&str>,
) -> Option<String> {
    let rest = challenge.strip_prefix("Bearer ")?;
    let mut params: HashMap<String, String> = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part.split_once('=')?;
        params.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    let realm = params.remove("realm")?;
    let mut req = client.get(&realm).query(&params);
    if let Some(b) = basic {
        req = req.header("authorization", format!("Basic {b}"));
    }
    let resp = req.send().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
    v["token"]
        .as_str()
        .or(v["access_token"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests;
