//! Mutual TLS for every connection between nodes (rustls, TLS 1.3 only, ring).
//!
//! Every node certificate is issued by the cluster's root CA with CN = node id, OU = role
//! (`manager`, `worker`, or `admin` for client bundles) and O = cluster id, and carries the
//! DNS name [`SERVER_NAME`], which is what clients verify, together with the OU: only managers
//! serve the cluster's TCP API, so a client refuses a server whose certificate is not a
//! manager's (a worker's key cannot pose as a manager); a manager calling one node's local API
//! accepts exactly that node's certificate ([`node_client_config`]). Servers accept connections without a
//! client certificate (a joining node has none yet) and expose the verified peer identity to
//! every RPC through [`TlsConnectInfo`]; each service then decides which roles it admits.
//! A joining node knows only the CA's digest from its token: [`pinned_client_config`] accepts a
//! server whose chain contains a CA with that digest and whose certificate that CA signed.
//!
//! The node's own key and certificate sit behind [`NodeCerts`], shared by the server and client
//! configs, so a renewed certificate is used by new connections without rebuilding anything.

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// DNS name in every node certificate; clients verify servers against it.
pub const SERVER_NAME: &str = "swarm-node";

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("invalid certificate or key: {0}")]
    Pem(String),
    #[error("tls setup: {0}")]
    Config(String),
    /// The server's certificate chains to the cluster CA but is not a manager's.
    #[error("the server presented a {role} certificate (node {node_id}), not a manager's: only managers serve the cluster API; connect to a manager's address")]
    NotManager { node_id: String, role: String },
    /// The server's certificate chains to the cluster CA but is another node's.
    #[error("the server presented the certificate of node {got}, not of node {want}: the address the cluster has for {want} belongs to another node")]
    OtherNode { want: String, got: String },
}

/// The role every server certificate must carry.
const MANAGER_ROLE: &str = "manager";

/// Refuses a (chain-verified) server certificate whose OU is not `manager`.
fn require_manager(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let (node_id, role) = match identity_of(end_entity.as_ref()) {
        Some(p) if p.role == MANAGER_ROLE => return Ok(()),
        Some(p) if p.role.is_empty() => (p.node_id, "role-less".to_string()),
        Some(p) => (p.node_id, p.role),
        None => ("?".to_string(), "unreadable".to_string()),
    };
    Err(rustls::Error::InvalidCertificate(
        rustls::CertificateError::Other(rustls::OtherError(Arc::new(TlsError::NotManager {
            node_id,
            role,
        }))),
    ))
}

/// Refuses a (chain-verified) server certificate that is not node `want`'s.
fn require_node(end_entity: &CertificateDer<'_>, want: &str) -> Result<(), rustls::Error> {
    let got = match identity_of(end_entity.as_ref()) {
        Some(p) if p.node_id == want => return Ok(()),
        Some(p) => p.node_id,
        None => "?".to_string(),
    };
    Err(rustls::Error::InvalidCertificate(
        rustls::CertificateError::Other(rustls::OtherError(Arc::new(TlsError::OtherNode {
            want: want.to_string(),
            got,
        }))),
    ))
}

/// Which server certificate a client accepts, beyond its chain to the cluster CA.
#[derive(Debug, Clone)]
enum Expect {
    /// A manager's (every call of the cluster API).
    Manager,
    /// Node `0`'s, whatever its role (one node's local API).
    Node(String),
    /// Any node of the cluster: only to ask a former manager where the managers are now
    /// (its answer names addresses, which are then verified as managers).
    Member,
}

/// Server verification for clients of managers: the chain must lead to the cluster CA
/// (webpki, name [`SERVER_NAME`]) and the certificate must be what [`Expect`] says.
#[derive(Debug)]
struct ManagerServer {
    inner: Arc<WebPkiServerVerifier>,
    expect: Expect,
}

impl ServerCertVerifier for ManagerServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        match &self.expect {
            Expect::Node(want) => require_node(end_entity, want)?,
            Expect::Manager => require_manager(end_entity)?,
            Expect::Member => {}
        }
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM → DER certificates.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))
}

fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem(e.to_string()))
}

/// Who is on the other end of a connection, from its verified certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    /// `manager`, `worker` or `admin`.
    pub role: String,
    pub cluster_id: String,
}

/// Request metadata: the node a forwarding manager acts for. A manager that forwards a node's
/// request to the leader connects with its own certificate and names the node here; the
/// leader believes it only from a manager certificate.
pub const ON_BEHALF_OF: &str = "swarm-on-behalf-of";
/// Request metadata: the role in the certificate of the node a forwarding manager acts for.
pub const ON_BEHALF_ROLE: &str = "swarm-on-behalf-of-role";

/// Reads CN / OU / O from a DER certificate.
pub fn identity_of(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)?;
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let o = subject
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    Some(PeerIdentity {
        node_id: cn,
        role: ou,
        cluster_id: o,
    })
}

/// Seconds until a PEM certificate expires, and its total lifetime.
pub fn validity_of(pem: &str) -> Option<(i64, i64)> {
    let der = certs_from_pem(pem).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = cert.validity();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some((
        v.not_after.timestamp() - now,
        v.not_after.timestamp() - v.not_before.timestamp(),
    ))
}

/// A node's certificate (chain: leaf, CA) and key, swappable at runtime.
#[derive(Clone)]
pub struct NodeCerts {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    ca_pem: String,
}

impl std::fmt::Debug for NodeCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCerts").finish_non_exhaustive()
    }
}

fn certified_key(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut chain = certs_from_pem(cert_pem)?;
    chain.extend(certs_from_pem(ca_pem)?);
    let key = provider()
        .key_provider
        .load_private_key(key_from_pem(key_pem)?)
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

impl NodeCerts {
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Ok(NodeCerts {
            current: Arc::new(RwLock::new(certified_key(ca_pem, cert_pem, key_pem)?)),
            ca_pem: ca_pem.to_string(),
        })
    }
    /// Uses a renewed certificate for every new connection from now on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let k = certified_key(&self.ca_pem, cert_pem, key_pem)?;
        *self.current.write().expect("certs lock") = k;
        Ok(())
    }
    fn get(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("certs lock").clone()
    }
    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs_from_pem(&self.ca_pem)? {
            roots.add(c).map_err(|e| TlsError::Config(e.to_string()))?;
        }
        Ok(Arc::new(roots))
    }
}

impl rustls::server::ResolvesServerCert for NodeCerts {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for NodeCerts {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Server side: TLS 1.3, our certificate, client certificates verified against the cluster CA
/// when presented (optional, so that joining nodes can connect).
pub fn server_config(certs: &NodeCerts) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(certs.roots()?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(certs.clone()));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client side with our certificate; servers verified against the cluster CA and required to
/// present a manager's certificate (every TCP server of a cluster is a manager).
pub fn client_config(certs: &NodeCerts) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(certs, Expect::Manager)
}

/// Client side with our certificate towards any node of the cluster (a worker's certificate
/// too): only for asking a node that used to be a manager which nodes are managers now.
pub fn member_client_config(certs: &NodeCerts) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(certs, Expect::Member)
}

/// Client side with our certificate towards one node's local API: the server must present
/// node `node_id`'s certificate (a worker's too), so a stale address reaches nobody else.
pub fn node_client_config(certs: &NodeCerts, node_id: &str) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(certs, Expect::Node(node_id.to_string()))
}

fn client_config_with(certs: &NodeCerts, expect: Expect) -> Result<Arc<ClientConfig>, TlsError> {
    let inner = WebPkiServerVerifier::builder_with_provider(certs.roots()?, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ManagerServer { inner, expect }))
        .with_client_cert_resolver(Arc::new(certs.clone()));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client side for a joining node: no client certificate; the server must present a chain
/// with a CA whose digest is `ca_digest` (from the join token) that signed its certificate,
/// which must be a manager's.
pub fn pinned_client_config(ca_digest: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            digest: ca_digest.to_string(),
            provider: provider(),
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct PinnedCa {
    digest: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| swarm_types::token::ca_digest(c.as_ref()) == self.digest)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the manager's CA does not match the join token (wrong cluster or a machine in the middle)".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let ok = v.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        require_manager(end_entity)?;
        Ok(ok)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Generates a node key and a certificate signing request (PEM), to be signed by the CA.
pub fn new_key_and_csr() -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Config(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

mod conn;
pub use conn::*;

#[cfg(test)]
mod tests;
