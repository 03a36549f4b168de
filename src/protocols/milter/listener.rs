//! The sockets: TCP (`inet:127.0.0.1:10050`) and UNIX (`unix:/path`).
//!
//! Postfix opens one connection per SMTP session and sends every message
//! of that session over it. Connections go through the shared accept loop
//! (its cap, deadlines and drain). A connection closes on
//! `Q`, EOF, the idle timeout, shutdown between messages, or any input the
//! codec refuses (oversized or garbled frame): Postfix then applies its
//! `milter_default_action` to that message only.
//!
//! Over TCP every read is acknowledged at once
//! ([`Connection::ack_reads`](crate::protocols::accept::Connection::ack_reads)):
//! the MTA writes the commands whose replies were waived back to back with
//! Nagle on, and would otherwise hold end of message until our delayed ACK
//! (~40 ms per message with Postfix).

use std::net::SocketAddr;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{decode, encode, missing};
use super::session::{Session, Step};
use crate::config::listener::ListenerSettings;
use crate::config::MilterSettings;
use crate::policy_service::{PolicyService, Rates};
use crate::protocols::accept::{self, Limits};
use crate::protocols::bind::Bound;
use crate::serve::activation::Inherited;
use crate::serve::{ServeError, Shutdown};

/// Read buffers above this are given back once empty (after a large body
/// chunk), so idle connections stay small.
const KEEP_BUFFER: usize = 128 * 1024;

/// Bound sockets, ready to serve.
pub struct MilterListeners {
    bound: Bound,
    limits: Arc<Limits>,
    settings: MilterSettings,
}

/// What every connection needs.
#[derive(Clone)]
pub struct Context {
    pub service: PolicyService,
    pub rates: Rates,
}

impl Context {
    pub fn new(service: PolicyService, settings: &MilterSettings) -> Self {
        let rates = if settings.charge_rate_limits { Rates::Charge } else { Rates::Skip };
        Context { service, rates }
    }
}

impl MilterListeners {
    /// Binds what `settings` names (a stale UNIX socket file is replaced).
    pub async fn bind(settings: &MilterSettings) -> Result<Self, ServeError> {
        Self::open(settings, &settings.listener, &mut Inherited::default())
    }

    /// The sockets systemd passed as `milter`, else those of `listener`.
    pub fn open(
        settings: &MilterSettings,
        listener: &ListenerSettings,
        inherited: &mut Inherited,
    ) -> Result<Self, ServeError> {
        let bound = Bound::open(listener, inherited)?;
        Ok(Self { bound, limits: Limits::new(listener, Vec::new()), settings: settings.clone() })
    }

    /// The TCP address actually bound (port 0 in tests and benchmarks).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// Serves until `shutdown` fires, then waits for open connections.
    pub async fn serve(self, service: PolicyService, shutdown: Shutdown) -> Result<(), ServeError> {
        let ctx = Context::new(service, &self.settings);
        accept::serve(self.bound, self.limits, shutdown, "milter", move |conn| {
            let (stream, shutdown) = conn.ack_reads().timed();
            connection(stream, ctx.clone(), shutdown)
        })
        .await;
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
            // stream's idle deadline), then close between packets.
            rd.read_buf(&mut buf).await
        } else {
            tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = shutdown.wait() => continue,
            }
        };
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "milter connection closed (read failed or client too slow)");
                return;
            }
        }
    }
}
