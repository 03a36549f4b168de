//! One accepted HTTP or HTTPS connection, served by hyper with the axum
//! router: the same accept loop, cap and drain as every other front end
//! ([`crate::protocols::accept`]).
//!
//! Deadlines come from the listener ([`TimedStream::http`]): the TLS
//! handshake and every request head must arrive within
//! `handshake_timeout` (a slowloris trickling one byte at a time is closed
//! then), a kept-alive connection waiting for its next request closes
//! after `idle_timeout`. hyper's own header timer is off, as it would also
//! cut kept-alive connections at the head deadline. On shutdown a request
//! in flight is answered, then the connection closes.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::protocols::accept::Connection;
use crate::protocols::timed::{HeadPhase, TimedStream};
use crate::serve::Shutdown;

/// The peer handlers see for a UNIX socket connection (a local proxy).
const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Serves one connection until the client leaves, a deadline passes, or
/// shutdown (after the request in flight).
pub async fn serve(conn: Connection, tls: Option<TlsAcceptor>, router: Router) {
    let Connection { stream, peer, timers, mut shutdown } = conn;
    let peer = peer.unwrap_or(LOCAL);
    let (stream, phase) = TimedStream::http(stream, timers);
    match tls {
        None => http1(stream, peer, phase, router, shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = acceptor.accept(stream) => r,
                _ = shutdown.wait() => return,
            };
            match handshake {
                Ok(stream) => http1(stream, peer, phase, router, shutdown).await,
                Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
            }
        }
    }
}

async fn http1<S>(io: S, peer: SocketAddr, phase: HeadPhase, router: Router, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        phase.head_done();
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        let mut router = router.clone();
        let phase = phase.clone();
        async move {
            let response = router.call(req.map(axum::body::Body::new)).await;
            phase.answered();
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None::<std::time::Duration>);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
