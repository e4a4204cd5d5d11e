//! The cluster registry: the OCI Distribution API served by every manager on its own port
//! (`swarmd --registry-addr`) over HTTPS with a server certificate from the cluster CA.
//!
//! - Repositories, tags and manifests (small) are replicated through Raft as
//!   `Object::Repository` (`swarm_types::registry`); each manager publishes its address as an
//!   `Object::RegistryEndpoint`.
//! - Blobs stay out of the Raft log: each manager keeps them in `<state>/registry`
//!   (`blobs.rs`). An upload is acknowledged only once the blob is on disk here and on at least
//!   one other manager (when there is one); a manager asked for a blob it lacks, or whose copy
//!   fails its digest check, fetches it from a peer (`peers.rs`). Managers talk to each other on
//!   an internal path (`/swarm/internal/blobs/<digest>`) with their node certificates.
//! - Access (`access.rs`): cluster certificates (mutual TLS) or login tokens.
//!
//! The HTTP layer is hyper with hand-written routing (`handlers.rs`): repository names contain
//! `/`, so the spec's routes (`/v2/<name>/blobs/<digest>`) are matched from the right, which
//! path-pattern routers do not do.

pub mod access;
pub mod blobs;
pub mod gc;
mod handlers;
pub mod seal;
pub(crate) use handlers::update_repo;
mod peers;

use crate::manager::Manager;
use blobs::BlobStore;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_types::registry::RegistryEndpoint;
use swarm_types::store::{Op, WriteBatch};
use swarm_types::Object;
use tokio::sync::watch;

pub type RBody = BoxBody<Bytes, std::io::Error>;

/// Lifetime of the registry's server certificate (reissued at every start).
const CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Address to listen on (`--registry-addr`).
    pub listen_addr: String,
    /// `host:port` other nodes use (published in the store).
    pub advertise_addr: String,
    /// `<state>/registry`.
    pub dir: PathBuf,
    /// Serve pulls without credentials (`--registry-anonymous-pull`).
    pub anonymous_pull: bool,
    /// This node's TLS client configuration (its certificate), for peer managers.
    pub node_tls: Arc<rustls::ClientConfig>,
    /// Extra names for the server certificate (IP addresses, host names).
    pub cert_names: Vec<String>,
    /// Blob garbage collection (`--registry-gc-interval`, `--registry-gc-grace`).
    pub gc: gc::GcConfig,
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RegistryConfig,
    manager: Manager,
    blobs: BlobStore,
    /// Upload id → repository (uploads in progress; their bytes are in `uploads/<id>`).
    uploads: Mutex<HashMap<String, String>>,
    /// Blobs clients used lately (found, mounted, uploaded): spared by collection.
    used: Mutex<HashMap<String, std::time::Instant>>,
    /// One fetch from peers at a time per digest.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    client: reqwest::Client,
}

/// An OCI error response: `{"errors":[{"code":..,"message":..,"detail":..}]}`.
#[derive(Debug)]
pub struct RegErr {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub challenge: bool,
}

impl RegErr {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> RegErr {
        RegErr {
            status,
            code,
            message: message.into(),
            challenge: false,
        }
    }
    pub fn unavailable(message: impl Into<String>) -> RegErr {
        RegErr::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }
    pub fn response(self) -> Response<RBody> {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message, "detail": null}]
        });
        let mut r = Response::builder()
            .status(self.status)
            .header("content-type", "application/json");
        if self.challenge {
            r = r.header("www-authenticate", "Basic realm=\"swarm-registry\"");
        }
        r.body(full(body.to_string()))
            .expect("static response parts are valid")
    }
}

pub fn full(b: impl Into<Bytes>) -> RBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> RBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

impl Registry {
    /// Binds the registry port now (so a taken port fails the start) and serves once the
    /// cluster's CA is in the store (a joining manager waits for its first sync).
    pub async fn start(
        cfg: RegistryConfig,
        manager: Manager,
        shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        let listener = tokio::net::TcpListener::bind(&cfg.listen_addr)
            .await
            .map_err(|e| {
                format!(
                    "registry: listen on {}: {e}; is the port in use? (--registry-addr)",
                    cfg.listen_addr
                )
            })?;
        let blobs = BlobStore::open(&cfg.dir)
            .map_err(|e| format!("registry: open {}: {e}", cfg.dir.display()))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*cfg.node_tls).clone())
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| format!("registry: peer client: {e}"))?;
        let uploads = blobs.uploads().into_iter().collect();
        let reg = Registry {
            inner: Arc::new(Inner {
                cfg,
                manager,
                blobs,
                uploads: Mutex::new(uploads),
                used: Mutex::default(),
                fetching: Mutex::default(),
                client,
            }),
        };
        Ok(tokio::spawn(reg.run(listener, shutdown)))
    }

    fn manager(&self) -> &Manager {
        &self.inner.manager
    }

    /// (CA key, cluster id) from the store, once present.
    fn ca(&self) -> Option<(swarm_types::objects::RootCa, String)> {
        self.manager()
            .store()
            .read(|s| s.cluster().map(|c| (c.root_ca.clone(), c.id.to_string())))
            .filter(|(ca, _)| !ca.key_pem.is_empty())
    }

    async fn run(self, listener: tokio::net::TcpListener, mut shutdown: watch::Receiver<bool>) {
        let (root, cluster_id) = loop {
            if let Some(x) = self.ca() {
                break x;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        };
        let tls = match self.server_tls(&root, &cluster_id) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "registry: cannot build its certificate; not serving");
                return;
            }
        };
        tokio::spawn(self.clone().publish_endpoint(shutdown.clone()));
        tokio::spawn(
            self.clone()
                .collect_periodically(self.inner.cfg.gc, shutdown.clone()),
        );
        tracing::info!(addr = %self.inner.cfg.listen_addr, advertise = %self.inner.cfg.advertise_addr, "registry serving");
        let mut incoming = swarm_api::tls::incoming(listener, tls);
        use tokio_stream::StreamExt;
        loop {
            let conn = tokio::select! {
                c = incoming.next() => c,
                _ = shutdown.changed() => return,
            };
            let Some(Ok(conn)) = conn else { return };
            let info = tonic::transport::server::Connected::connect_info(&conn);
            let reg = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let reg = reg.clone();
                    let info = info.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handlers::handle(&reg, req, &info).await)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(conn);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(e) = builder.serve_connection(io, svc).await {
                    tracing::debug!(error = %e, "registry connection ended");
                }
            });
        }
    }

    /// A server certificate for this manager (CN = node id, OU = manager) naming
    /// `swarm-node` and the addresses clients use; client certificates optional.
    fn server_tls(
        &self,
        root: &swarm_types::objects::RootCa,
        cluster_id: &str,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        let (key_pem, csr) = swarm_api::tls::new_key_and_csr().map_err(|e| e.to_string())?;
        let cert_pem = crate::ca::issue_with_names(
            root,
            &csr,
            self.manager().config().node_id.as_str(),
            "manager",
            cluster_id,
            CERT_LIFETIME,
            &self.inner.cfg.cert_names,
        )
        .map_err(|e| e.to_string())?;
        let mut chain = swarm_api::tls::certs_from_pem(&cert_pem).map_err(|e| e.to_string())?;
        let ca = swarm_api::tls::certs_from_pem(&root.cert_pem).map_err(|e| e.to_string())?;
        chain.extend(ca.iter().cloned());
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| e.to_string())?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Records this manager's registry address in the store (retrying until it is written).
    async fn publish_endpoint(self, mut shutdown: watch::Receiver<bool>) {
        let id = self.manager().config().node_id.to_string();
        let addr = self.inner.cfg.advertise_addr.clone();
        loop {
            let current = self
                .manager()
                .store()
                .read(|s| s.registry_endpoints.get(&id).map(|e| e.addr.clone()));
            if current.as_deref() == Some(addr.as_str()) {
                return;
            }
            let ep = RegistryEndpoint {
                id: id.clone(),
                meta: Default::default(),
                addr: addr.clone(),
            };
            let batch = WriteBatch {
                ops: vec![Op::Put(Object::RegistryEndpoint(ep))],
                now_ms: 0,
            };
            match self.manager().write(batch).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "registry: publishing the endpoint; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A login token for the cluster registry (`swarmctl registry login-token`).
pub fn login_token(
    m: &Manager,
    scope: access::Scope,
    ttl: Duration,
) -> Result<String, tonic::Status> {
    let (key, cid) = m
        .store()
        .read(|s| {
            s.cluster()
                .map(|c| (c.root_ca.key_pem.clone(), c.id.to_string()))
        })
        .ok_or_else(|| tonic::Status::unavailable("the cluster is not initialized yet"))?;
    let now = swarm_api::now_ms() / 1000;
    Ok(access::issue(&key, &cid, scope, now, ttl.as_secs()))
}
