//! Sockets for the Dovecot auth protocol: TCP and UNIX listeners, one task
//! per connection.
//!
//! Connections come through the shared accept loop (its cap, deadlines
//! and drain). Requests on one connection are answered in order (the
//! failure delay of one does not reorder replies); different connections
//! never wait for each other, and a bad line closes only its own
//! connection. On shutdown, listeners stop accepting, each connection
//! finishes the request in hand (even one half received) and closes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{decode, encode, DecodeError, MAX_LINE};
use super::session::{Session, Step};
use crate::auth::Authenticator;
use crate::config::auth::TempFailStyle;
use crate::protocols::accept::{self, Limits};
use crate::protocols::bind::Bound;
use crate::serve::Shutdown;

/// Bytes read at a time (a Postfix AUTH line is about 150).
const READ_CHUNK: usize = 1024;

/// Shared by every connection of the Dovecot auth front end.
pub struct DovecotAuthServer {
    auth: Arc<Authenticator>,
    temp_fail: TempFailStyle,
    spid: u32,
    next_cuid: AtomicU32,
}

impl DovecotAuthServer {
    pub fn new(auth: Arc<Authenticator>, temp_fail: TempFailStyle) -> Arc<Self> {
        Arc::new(Self { auth, temp_fail, spid: std::process::id(), next_cuid: AtomicU32::new(1) })
    }

    /// Serves `bound` until shutdown and the drain after it.
    pub async fn serve(self: Arc<Self>, bound: Bound, limits: Arc<Limits>, shutdown: Shutdown) {
        accept::serve(bound, limits, shutdown, "dovecot_auth", move |conn| {
            let this = self.clone();
            let (stream, shutdown) = conn.timed();
            async move { this.serve_connection(stream, shutdown).await }
        })
        .await
    }

    /// Speaks the protocol on one stream until the client leaves, a
    /// protocol error, or shutdown.
    pub async fn serve_connection<S>(&self, mut stream: S, mut shutdown: Shutdown)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut session = Session::new(self.temp_fail);
        let mut cookie = [0u8; 16];
        rand::rng().fill_bytes(&mut cookie);
        let cuid = self.next_cuid.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(256);
        for reply in Session::handshake(self.spid, cuid, cookie) {
            encode(&reply, &mut out);
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            loop {
                let step = match decode(&buf) {
                    Ok((command, used)) => {
                        buf.drain(..used);
                        session.handle(command)
                    }
                    Err(DecodeError::Incomplete) => break,
                    Err(DecodeError::TooLarge) => {
                        tracing::info!(limit = MAX_LINE, "closing: line too long");
                        return;
                    }
                    Err(DecodeError::Invalid { consumed, id, why }) => {
                        buf.drain(..consumed);
                        tracing::debug!(?why, "unreadable line");
                        session.invalid(id, why)
                    }
                };
                if !self.act(step, &mut session, &mut stream, &mut out).await {
                    return;
                }
            }
            // Straight into the buffer: a connection waiting out a failure
            // delay holds no read chunk besides it.
            buf.reserve(READ_CHUNK);
            let read = if buf.is_empty() {
                tokio::select! {
                    r = stream.read_buf(&mut buf) => r,
                    _ = shutdown.wait() => return,
                }
            } else {
                // A line has begun: it is answered, shutdown or not (the
                // stream's deadlines bound the wait).
                stream.read_buf(&mut buf).await
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            // The decoder caps lines; this only bounds the buffer while
            // waiting for the LF.
            if buf.len() > 2 * MAX_LINE && !buf.contains(&b'\n') {
                tracing::info!(limit = MAX_LINE, "closing: line too long");
                return;
            }
        }
    }

    /// Carries out one step; false when the connection must close. `out`
    /// is the connection's reply buffer, reused for every reply.
    async fn act<S>(&self, mut step: Step, session: &mut Session, stream: &mut S, out: &mut Vec<u8>) -> bool
    where
        S: AsyncWrite + Unpin,
    {
        loop {
            match step {
                Step::Nothing => return true,
                Step::Close(why) => {
                    tracing::debug!(why, "closing connection");
                    let _ = stream.shutdown().await;
                    return false;
                }
                Step::Send(reply) => {
                    out.clear();
                    encode(&reply, out);
                    return stream.write_all(out).await.is_ok();
                }
                Step::Authenticate { id, request } => {
                    let typed = request.login.clone();
                    let started = std::time::Instant::now();
                    let decision = self.auth.authenticate(request).await;
                    crate::metrics::observe_request(crate::metrics::DOVECOT_AUTH, started.elapsed());
                    decision.wait().await;
                    step = session.finish(id, &typed, &decision);
                }
            }
        }
    }
}
