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
//! in flight is answered, then the connection closes (lingering, so a
//! refused upload still reads its answer).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::protocols::accept::Connection;
use crate::protocols::timed::{HeadPhase, TimedStream};
use crate::serve::Shutdown;

/// How long, and how much, a closing connection still reads and drops.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

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

/// A reply future, boxed so the connection can be polled without being
/// shut down (hyper wants it `Unpin` for that).
type Reply = Pin<Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>>;

async fn http1<S>(io: S, peer: SocketAddr, phase: HeadPhase, router: Router, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| -> Reply {
        phase.head_done();
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        let mut router = router.clone();
        let phase = phase.clone();
        Box::pin(async move {
            let response = router.call(req.map(axum::body::Body::new)).await;
            phase.answered();
            response
        })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None::<Duration>);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let mut stop = std::pin::pin!(shutdown.wait());
    let mut stopping = false;
    let done = std::future::poll_fn(|cx| {
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        conn.poll_without_shutdown(cx)
    })
    .await;
    if let Err(e) = done {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
    linger(conn.into_parts().io.into_inner()).await;
}

/// Closes like a careful server: our side first, then the rest of what
/// the client sends is read and dropped for a moment, so a client still
/// sending a body we refused (413) reads our answer instead of a reset.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut left = LINGER_BYTES;
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
