//! Serving gRPC on accepted connections: tonic's routes on hyper's HTTP/2 server, with a
//! setting tonic's own server does not expose ([`REQUEST_HEADER_TABLE_SIZE`]).

use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::service::Routes;
use tonic::transport::server::Connected;

/// The HPACK dynamic table a server lets each client keep for the headers of its requests:
/// none. A manager holds one long-lived connection per agent, and each table filled slowly
/// with the varying values of request headers up to 4 KiB (more with its index): 2.0 MB of a
/// leader's heap growth over a 25-round soak with 1,000 agents (BENCHMARKS 2026-12-05,
/// thirteenth session). The headers of a gRPC request are a few dozen bytes sent whole
/// instead. The other direction is [`crate::transport::HEADER_TABLE_SIZE`].
pub const REQUEST_HEADER_TABLE_SIZE: u32 = 0;

/// Serves `routes` on every connection `incoming` yields (HTTP/2 only, as gRPC is), each
/// request carrying its connection's [`Connected::ConnectInfo`] (the peer's certificate for
/// TLS connections) in its extensions, as tonic's server does. When `shutdown` resolves or
/// `incoming` ends, stops accepting, lets open connections finish their calls and returns once
/// they are closed.
pub async fn serve<I, IO, E>(routes: Routes, incoming: I, shutdown: impl Future<Output = ()>)
where
    I: Stream<Item = Result<IO, E>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    let mut http2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    http2
        .timer(hyper_util::rt::TokioTimer::new())
        .header_table_size(REQUEST_HEADER_TABLE_SIZE);
    // Every connection holds a receiver: the sender learns when the last one is gone.
    let (closing, closed) = tokio::sync::watch::channel(false);
    {
        let mut incoming = std::pin::pin!(incoming);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let io = tokio::select! {
                _ = &mut shutdown => break,
                io = incoming.next() => io,
            };
            let io = match io {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "connection not accepted");
                    continue;
                }
                Some(Ok(io)) => io,
            };
            let info = io.connect_info();
            let routes = routes.clone();
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    let mut routes = routes.clone();
                    async move {
                        let req = req.map(tonic::body::Body::new);
                        std::future::poll_fn(|cx| {
                            Service::<http::Request<tonic::body::Body>>::poll_ready(&mut routes, cx)
                        })
                        .await?;
                        routes.call(req).await
                    }
                });
            let conn = http2.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
            let mut closed = closed.clone();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                // (The guard `wait_for` returns must not live across the connection's await.)
                let closing = async move {
                    let _ = closed.wait_for(|c| *c).await;
                    closed
                };
                let res = tokio::select! {
                    res = conn.as_mut() => res,
                    _closed = closing => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = res {
                    tracing::debug!(error = %e, "grpc connection ended");
                }
            });
        }
    }
    let _ = closing.send(true);
    drop(closed);
    closing.closed().await;
}
