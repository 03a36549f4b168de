//! The sockets: TCP (`inet:127.0.0.1:10050`) and UNIX (`unix:/path`).
//!
//! Postfix opens one connection per SMTP session and sends every message
//! of that session over it. Connections go through the shared accept loop
//! (a permit before accepting, shutdown-aware). A connection closes on
//! `Q`, EOF, the idle timeout, shutdown between messages, or any input the
//! codec refuses (oversized or garbled frame): Postfix then applies its
//! `milter_default_action` to that message only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::codec::{decode, encode, missing};
use super::session::{Session, Step};
use crate::config::MilterSettings;
use crate::policy_service::{PolicyService, Rates};
use crate::protocols::accept;
use crate::serve::{ServeError, Shutdown};

/// Mode of the UNIX socket: Postfix's smtpd runs as `postfix`.
pub const UNIX_SOCKET_MODE: u32 = 0o666;
/// Read buffers above this are given back once empty (after a large body
/// chunk), so idle connections stay small.
const KEEP_BUFFER: usize = 128 * 1024;

/// Bound sockets, ready to serve.
pub struct MilterListeners {
    tcp: Option<TcpListener>,
    unix: Option<(UnixListener, PathBuf)>,
    settings: MilterSettings,
}

/// What every connection needs.
#[derive(Clone)]
pub struct Context {
    pub service: PolicyService,
    pub rates: Rates,
    pub idle_timeout: Duration,
}

impl Context {
    pub fn new(service: PolicyService, settings: &MilterSettings) -> Self {
        let rates = if settings.charge_rate_limits { Rates::Charge } else { Rates::Skip };
        Context { service, rates, idle_timeout: settings.idle_timeout }
    }
}

impl MilterListeners {
    /// Binds what `settings` names (a stale UNIX socket file is replaced).
    pub async fn bind(settings: &MilterSettings) -> Result<Self, ServeError> {
        let (tcp, unix) = accept::bind_pair(settings.listen, settings.unix_socket.as_deref(), UNIX_SOCKET_MODE).await?;
        Ok(Self { tcp, unix, settings: settings.clone() })
    }

    /// The TCP address actually bound (port 0 in tests and benchmarks).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` fires, then waits for open connections.
    pub async fn serve(self, service: PolicyService, shutdown: Shutdown) -> Result<(), ServeError> {
        let max = self.settings.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let ctx = Context::new(service, &self.settings);
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(tcp) = self.tcp {
            if let Ok(addr) = tcp.local_addr() {
                tracing::info!(%addr, "milter listening (TCP)");
            }
            let (ctx, slots, shutdown) = (ctx.clone(), slots.clone(), shutdown.clone());
            tasks.spawn(async move {
                accept::serve(tcp, slots, shutdown, "milter", |s, sd| connection(s, ctx.clone(), sd)).await
            });
        }
        if let Some((unix, path)) = self.unix {
            tracing::info!(path = %path.display(), "milter listening (UNIX)");
            let (ctx, slots, shutdown) = (ctx.clone(), slots.clone(), shutdown.clone());
            tasks.spawn(async move {
                accept::serve(unix, slots, shutdown, "milter", |s, sd| connection(s, ctx.clone(), sd)).await;
                let _ = std::fs::remove_file(&path);
            });
        }
        while tasks.join_next().await.is_some() {}
        let _ = slots.acquire_many(max as u32).await;
        Ok(())
    }
}

/// Serves one connection until the MTA quits or something ends it.
pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, ctx: Context, mut shutdown: Shutdown) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut session = Session::new();
    loop {
        loop {
            let command = match decode(&mut buf) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "closing milter connection");
                    return;
                }
            };
            let reply = match session.feed(command) {
                Step::Silent => continue,
                Step::Close => return,
                Step::Reply(r) => r,
                Step::Decide(req) => {
                    let started = std::time::Instant::now();
                    let outcome = ctx
                        .service
                        .check_with(crate::metrics::MILTER, &req, OffsetDateTime::now_utc(), ctx.rates)
                        .await;
                    crate::metrics::observe_request(crate::metrics::MILTER, started.elapsed());
                    Session::verdict(&outcome)
                }
            };
            if let Err(e) = wr.write_all(&encode(&reply)).await {
                tracing::debug!(error = %e, "milter client went away");
                return;
            }
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
            buf = Vec::with_capacity(8192);
        }
        if shutdown.is_triggered() && buf.is_empty() {
            return;
        }
        buf.reserve(missing(&buf).max(4096));
        let read = if shutdown.is_triggered() {
            // Mid-packet at shutdown: let the packet finish (bounded by the
            // idle timeout), then close between packets.
            tokio::time::timeout(ctx.idle_timeout, rd.read_buf(&mut buf)).await
        } else {
            tokio::select! {
                r = tokio::time::timeout(ctx.idle_timeout, rd.read_buf(&mut buf)) => r,
                _ = shutdown.wait() => continue,
            }
        };
        match read {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "milter read failed");
                return;
            }
            Err(_) => {
                tracing::debug!("idle milter connection closed");
                return;
            }
        }
    }
}
