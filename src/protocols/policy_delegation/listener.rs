//! The sockets: TCP (`inet:127.0.0.1:10040`) and UNIX (`unix:/path`).
//!
//! Postfix keeps one connection per smtpd process and reuses it for many
//! requests (A8), so connections are persistent and served one request at
//! a time, through the shared accept loop (its cap, deadlines and drain).
//! On shutdown the listeners stop at once; each connection finishes the
//! request it is on, even one only half received.

use std::net::SocketAddr;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{decode, encode_reply};
use super::session::Session;
use crate::config::listener::ListenerSettings;
use crate::config::PolicySettings;
use crate::policy_service::PolicyService;
use crate::protocols::accept::{self, Limits};
use crate::protocols::bind::Bound;
use crate::serve::activation::Inherited;
use crate::serve::{ServeError, Shutdown};

/// Bound sockets, ready to serve.
pub struct PolicyListeners {
    bound: Bound,
    limits: Arc<Limits>,
}

impl PolicyListeners {
    /// Binds what `settings` names (a stale UNIX socket file is replaced).
    pub async fn bind(settings: &PolicySettings) -> Result<Self, ServeError> {
        Self::open(&settings.listener, &mut Inherited::default())
    }

    /// The sockets systemd passed as `policy`, else those of `listener`.
    pub fn open(listener: &ListenerSettings, inherited: &mut Inherited) -> Result<Self, ServeError> {
        Ok(Self { bound: Bound::open(listener, inherited)?, limits: Limits::new(listener, Vec::new()) })
    }

    /// The TCP address actually bound (port 0 in tests).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// Serves until `shutdown` fires, then waits for open connections to
    /// finish their current request.
    pub async fn serve(self, service: PolicyService, shutdown: Shutdown) -> Result<(), ServeError> {
        accept::serve(self.bound, self.limits, shutdown, "policy_delegation", move |conn| {
            let (stream, shutdown) = conn.timed();
            connection(stream, Session::new(service.clone()), shutdown)
        })
        .await;
        Ok(())
    }
}

/// Serves one persistent connection. Returns (closing it) on EOF, the
/// stream's deadlines, shutdown between requests, or any input error,
/// never with a partial reply. A request begun before shutdown is read to
/// its end and answered.
pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, session: Session, mut shutdown: Shutdown) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut reply: Vec<u8> = Vec::with_capacity(128);
    loop {
        loop {
            match decode(&mut buf) {
                Ok(Some(request)) => match session.handle(&request, OffsetDateTime::now_utc()).await {
                    Ok(action) => {
                        reply.clear();
                        encode_reply(&action, &mut reply);
                        if let Err(e) = stream.write_all(&reply).await {
                            tracing::debug!(error = %e, "policy client went away");
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "closing policy connection without a reply");
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "closing policy connection without a reply");
                    return;
                }
            }
        }
        if shutdown.is_triggered() && buf.is_empty() {
            return;
        }
        let read = if buf.is_empty() {
            tokio::select! {
                r = stream.read_buf(&mut buf) => r,
                _ = shutdown.wait() => continue,
            }
        } else {
            // Mid-request: finish it, shutdown or not (the stream's idle
            // deadline bounds the wait).
            stream.read_buf(&mut buf).await
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::debug!(bytes = buf.len(), "policy client closed mid-request; nothing decided");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "policy connection closed (read failed or client too slow)");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::policy::POLICY_DEFAULTS;
    use crate::policy_service::tests::service;
    use crate::protocols::timed::{TimedStream, Timers};

    const IDLE_TIMEOUT: Duration = POLICY_DEFAULTS.idle_timeout;

    /// A connection that says nothing for the idle timeout is closed; each
    /// request pushes the deadline back.
    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_and_requests_keep_them_open() {
        let (_dir, policy) = service(|_| {}).await;
        let (mut client, server) = tokio::io::duplex(4096);
        let (_stop, shutdown) = crate::serve::shutdown::channel();
        // The first request comes late too: the handshake deadline is not
        // what this test is about.
        let timers = Timers { handshake: IDLE_TIMEOUT, idle: IDLE_TIMEOUT };
        let served = tokio::spawn(connection(TimedStream::new(server, timers), Session::new(policy), shutdown));
        for _ in 0..3 {
            tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(10)).await;
            // A stage mailwarrant does not judge: answered without any
            // store or directory work, which would let the paused clock
            // jump ahead.
            client.write_all(b"request=smtpd_access_policy\nprotocol_state=CONNECT\n\n").await.unwrap();
            let mut reply = [0u8; 64];
            let n = client.read(&mut reply).await.unwrap();
            assert!(reply[..n].starts_with(b"action="), "{:?}", String::from_utf8_lossy(&reply[..n]));
        }
        assert!(!served.is_finished(), "every request came within the idle timeout");
        tokio::time::sleep(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0, "closed when idle");
        served.await.unwrap();
    }
}
