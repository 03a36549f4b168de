//! The one accept loop every front end uses (Dovecot auth, saslauthd,
//! policy, milter, HTTP and HTTPS; TCP and UNIX).
//!
//! A connection permit is taken *before* accepting, so a flood cannot open
//! more than the listener's cap (the rest wait in the kernel backlog and
//! cost no descriptor); waiting for a permit and waiting for a connection
//! both give way to shutdown. A client address over its per-client cap is
//! closed at once. Every stream gets the listener's handshake and idle
//! deadlines ([`TimedStream`]). Each connection runs in its own task with
//! one tracing span (`connection`, fields `protocol`, `peer`) and keeps its
//! permit until it ends, so [`serve`] returns only when every connection
//! has drained.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::bind::Bound;
use super::timed::{TimedStream, Timers};
use crate::config::listener::ListenerSettings;
use crate::serve::Shutdown;

/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A listening socket of either kind.
pub enum AnyListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection of either kind.
pub enum Stream {
    Tcp(TcpStream),
    /// TCP acknowledging every read at once: see [`Connection::ack_reads`].
    TcpAcked(TcpStream),
    Unix(UnixStream),
}

impl AnyListener {
    async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            AnyListener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Requests and replies are small writes: no Nagle delay.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            AnyListener::Unix(l) => Ok((Stream::Unix(l.accept().await?.0), None)),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::TcpAcked(s) => {
                let before = buf.filled().len();
                let polled = Pin::new(&mut *s).poll_read(cx, buf);
                if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    quick_ack(s);
                }
                polled
            }
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) | Stream::TcpAcked(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) | Stream::TcpAcked(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) | Stream::TcpAcked(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) | Stream::TcpAcked(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) | Stream::TcpAcked(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }
}

/// One accepted connection, as a front end's handler gets it.
pub struct Connection {
    /// Read it through [`Connection::timed`] (or [`TimedStream::http`]
    /// with `timers`), so the listener's deadlines hold.
    pub stream: Stream,
    /// `None` on a UNIX socket.
    pub peer: Option<SocketAddr>,
    pub timers: Timers,
    pub shutdown: Shutdown,
}

impl Connection {
    /// Acknowledges every read at once (TCP on Linux; a no-op elsewhere),
    /// for protocols whose client writes several packets without waiting
    /// for an answer.
    ///
    /// Why: Postfix's milter client does not set `TCP_NODELAY`, and with
    /// the "no reply" flags it writes MAIL, RCPT and the headers without
    /// waiting. Once we have answered anything, Linux delays our ACKs
    /// (its "pingpong" mode, up to 40 ms); Nagle on the MTA's side then
    /// holds its next small write, end of message included, until that
    /// ACK comes: ~37 ms per message. `TCP_QUICKACK` after each read sends
    /// the pending ACK now; Linux clears it again, hence after each read.
    pub fn ack_reads(mut self) -> Self {
        if let Stream::Tcp(s) = self.stream {
            quick_ack(&s);
            self.stream = Stream::TcpAcked(s);
        }
        self
    }

    /// The stream with the listener's handshake and idle deadlines.
    pub fn timed(self) -> (TimedStream<Stream>, Shutdown) {
        (TimedStream::new(self.stream, self.timers), self.shutdown)
    }
}

/// Sends any pending ACK now and leaves delayed-ACK mode until the next
/// write (see [`Connection::ack_reads`]). Best effort: a failure costs
/// latency, never correctness.
fn quick_ack(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = stream.set_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// A listener's caps, shared by all its sockets.
pub struct Limits {
    permits: Arc<Semaphore>,
    max: usize,
    per_client: usize,
    /// Open connections per client address (only with a per-client cap).
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// Addresses without a per-client cap (trusted proxies).
    exempt: Vec<IpAddr>,
    timers: Timers,
}

impl Limits {
    pub fn new(settings: &ListenerSettings, exempt: Vec<IpAddr>) -> Arc<Self> {
        Arc::new(Limits {
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            max: settings.max_connections,
            per_client: settings.max_connections_per_client,
            clients: Mutex::new(HashMap::new()),
            exempt,
            timers: Timers { handshake: settings.handshake_timeout, idle: settings.idle_timeout },
        })
    }

    /// Counts a connection from `peer`; `None` when it is over its cap.
    fn admit(self: &Arc<Self>, peer: Option<SocketAddr>) -> Option<ClientSlot> {
        let ip = match peer {
            Some(p) if self.per_client > 0 && !self.exempt.contains(&p.ip()) => p.ip(),
            _ => return Some(ClientSlot(None)),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let open = clients.entry(ip).or_insert(0);
        if *open >= self.per_client {
            return None;
        }
        *open += 1;
        Some(ClientSlot(Some((self.clone(), ip))))
    }

    /// Resolves once every connection has ended.
    async fn drained(&self) {
        let _ = self.permits.acquire_many(self.max as u32).await;
    }
}

/// One counted connection of a client; uncounted on drop.
struct ClientSlot(Option<(Arc<Limits>, IpAddr)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((limits, ip)) = self.0.take() {
            let mut clients = limits.clients.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = clients.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    clients.remove(&ip);
                }
            }
        }
    }
}

/// Serves every socket of `bound` until `shutdown`, running `handle` for
/// each connection, then waits until every connection has ended. UNIX
/// socket files this process created are removed.
pub async fn serve<H, F>(bound: Bound, limits: Arc<Limits>, shutdown: Shutdown, protocol: &'static str, handle: H)
where
    H: Fn(Connection) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut loops = tokio::task::JoinSet::new();
    for (listener, created) in bound.into_listeners() {
        let (limits, shutdown, handle) = (limits.clone(), shutdown.clone(), handle.clone());
        loops.spawn(async move {
            accept_loop(&listener, limits, shutdown, protocol, handle).await;
            drop(listener);
            if let Some(path) = created {
                let _ = std::fs::remove_file(path);
            }
        });
    }
    while loops.join_next().await.is_some() {}
    limits.drained().await;
}

async fn accept_loop<H, F>(
    listener: &AnyListener,
    limits: Arc<Limits>,
    mut shutdown: Shutdown,
    protocol: &'static str,
    handle: H,
) where
    H: Fn(Connection) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let permit = tokio::select! {
            p = limits.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = limits.admit(peer) else {
                    tracing::debug!(protocol, peer = ?peer, "closing: the client holds its share of connections");
                    continue;
                };
                let span = match peer {
                    Some(p) => tracing::info_span!("connection", protocol, peer = %p),
                    None => tracing::info_span!("connection", protocol, peer = "unix"),
                };
                let work = handle(Connection { stream, peer, timers: limits.timers, shutdown: shutdown.clone() });
                tokio::spawn(
                    async move {
                        work.await;
                        drop(slot);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                tracing::warn!(protocol, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
