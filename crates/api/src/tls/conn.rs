//! TLS connections: the server side tonic serves (with the peer's identity for every RPC),
//! and the client channels and connectors the configs of the parent module are used through.

use super::*;

/// What a server knows about a connection: where it comes from and who (if a certificate was
/// presented). Available to every RPC as a request extension.
#[derive(Clone, Debug)]
pub struct TlsConnectInfo {
    pub remote: Option<SocketAddr>,
    pub peer: Option<PeerIdentity>,
}

/// A server-side TLS connection that tonic can serve.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsConnectInfo;
    fn connect_info(&self) -> TlsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently; connections that fail
/// the handshake (plaintext clients, wrong CA) are dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| identity_of(c.as_ref()));
                        let conn = TlsConn {
                            inner: tls,
                            info: TlsConnectInfo {
                                remote: Some(remote),
                                peer,
                            },
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!(%remote, "tls handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The same endpoint settings as every plaintext channel (timeouts, keep-alive, no HPACK
/// table for responses); the TLS connector makes the TCP connection itself.
fn tls_endpoint(addr: &str) -> Result<Endpoint, crate::transport::TransportError> {
    crate::transport::endpoint(&format!("http://{addr}"))
}

type ClientIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
type ConnectFuture = Pin<Box<dyn std::future::Future<Output = io::Result<ClientIo>> + Send>>;

fn connector(
    cfg: Arc<ClientConfig>,
) -> impl tower::Service<Uri, Response = ClientIo, Error = io::Error, Future = ConnectFuture> + Clone
{
    tower::service_fn(move |uri: Uri| {
        let cfg = cfg.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(4242);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(SERVER_NAME).expect("valid server name");
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(unwrap_refusal)?;
            Ok(TokioIo::new(tls))
        }) as ConnectFuture
    })
}

/// Brings our own verification errors ([`TlsError::NotManager`]) to the surface of a
/// handshake error, so that callers show them as written instead of rustls' debug form.
pub(super) fn unwrap_refusal(e: io::Error) -> io::Error {
    let mine = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
                o.0.downcast_ref::<TlsError>().cloned()
            }
            _ => None,
        });
    match mine {
        Some(t) => io::Error::new(io::ErrorKind::PermissionDenied, t),
        None => e,
    }
}

/// The TLS failure behind a connection error, when that is what it was.
pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(inner) = x.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(t) = inner.downcast_ref::<TlsError>() {
                return Some(t.to_string());
            }
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r.to_string());
            }
        }
        cur = x.source();
    }
    None
}

/// A TLS channel that connects on first use and reconnects after failures.
pub fn lazy_channel(
    addr: &str,
    cfg: Arc<ClientConfig>,
) -> Result<Channel, crate::transport::TransportError> {
    Ok(tls_endpoint(addr)?.connect_with_connector_lazy(connector(cfg)))
}

/// A TLS channel, connected now.
pub async fn connect(
    addr: &str,
    cfg: Arc<ClientConfig>,
) -> Result<Channel, crate::transport::TransportError> {
    tls_endpoint(addr)?
        .connect_with_connector(connector(cfg))
        .await
        .map_err(|e| match tls_failure(&e) {
            Some(reason) => crate::transport::TransportError::Tls {
                addr: addr.to_string(),
                reason,
            },
            None => crate::transport::TransportError::Connect {
                addr: addr.to_string(),
                reason: crate::transport::root_cause(&e),
            },
        })
}
