//! gRPC transport: where a client connects ([`Target`]), plaintext channels (the unix socket;
//! TCP only in tests) and the errors of connecting. Mutual TLS channels are in [`crate::tls`].

use hyper_util::rt::TokioIo;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot connect to {addr}: {reason}; is swarmd running there?")]
    Connect { addr: String, reason: String },
    /// Something answered, but the TLS handshake failed (wrong cluster, not a manager, ...).
    #[error("tls handshake with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
}

/// Where a client connects: `unix:///path`, `tcp://host:port`, `http://host:port` or
/// `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(String),
    Tcp(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, TransportError> {
        let bad = |reason: &str| TransportError::Address {
            addr: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            return Ok(Target::Unix(p.to_string()));
        }
        let hostport = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        if s.starts_with('/') {
            return Ok(Target::Unix(s.to_string()));
        }
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                Ok(Target::Tcp(hostport.to_string()))
            }
            _ => Err(bad(
                "expected unix:///path/to/swarmd.sock, tcp://HOST:PORT or HOST:PORT",
            )),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix://{p}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The innermost error message ("No such file or directory (os error 2)").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub(crate) fn endpoint(uri: &str) -> Result<Endpoint, TransportError> {
    Ok(Endpoint::from_shared(uri.to_string())
        .map_err(|e| TransportError::Address {
            addr: uri.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .http2_header_table_size(HEADER_TABLE_SIZE))
}

/// The HPACK dynamic table a client lets its server keep for the headers it sends back:
/// none. A manager serves one long-lived connection per agent, and each table (up to 4 KiB
/// of headers) filled slowly with the varying values of response headers; their slots and
/// index grew ~16 KiB a connection over a 25-round soak with 1,000 agents, the largest item
/// of the leader's heap growth (5.5 of 14 MB; BENCHMARKS 2026-12-05, thirteenth session).
/// The headers of a gRPC response are a few dozen bytes sent whole instead.
pub const HEADER_TABLE_SIZE: u32 = 0;

/// A channel that connects on first use and reconnects after failures (for peers).
pub fn lazy_channel(addr: &str) -> Result<Channel, TransportError> {
    Ok(endpoint(&format!("http://{addr}"))?.connect_lazy())
}

/// Connects now and fails with a clear error when nothing listens.
pub async fn connect(target: &Target) -> Result<Channel, TransportError> {
    match target {
        Target::Tcp(addr) => endpoint(&format!("http://{addr}"))?
            .connect()
            .await
            .map_err(|e| TransportError::Connect {
                addr: target.to_string(),
                reason: root_cause(&e),
            }),
        Target::Unix(path) => {
            let path = path.clone();
            // The URI is ignored by the connector; it only has to parse.
            endpoint("http://localhost")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| TransportError::Connect {
                    addr: target.to_string(),
                    reason: root_cause(&e),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("unix:///var/lib/swarmd/swarmd.sock").unwrap(),
            Target::Unix("/var/lib/swarmd/swarmd.sock".into())
        );
        assert_eq!(
            Target::parse("tcp://127.0.0.1:4242").unwrap(),
            Target::Tcp("127.0.0.1:4242".into())
        );
        assert_eq!(
            Target::parse("10.0.0.1:4242").unwrap(),
            Target::Tcp("10.0.0.1:4242".into())
        );
        assert!(Target::parse("nonsense").is_err());
        assert!(Target::parse("unix://").is_err());
        assert!(Target::parse("host:notaport").is_err());
    }
}
