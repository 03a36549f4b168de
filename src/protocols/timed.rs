//! Read deadlines for every accepted connection: a handshake deadline
//! until the client has said something (for HTTP: until each request head
//! is complete), then an idle deadline for every wait on the client.
//!
//! A read that waits past its deadline fails with `TimedOut`, which every
//! front end treats as the client going away, so the connection and its
//! descriptor are released. Only reads are timed: a connection whose
//! request is being decided (a slow directory) is not waiting on the
//! client, and writes are bounded by the kernel's buffers and the peer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Shared with the HTTP service, which says when a request head is done
/// and when its handler has answered; the stream gives each new head the
/// handshake deadline from its first byte.
#[derive(Clone, Debug, Default)]
pub struct HeadPhase(Arc<PhaseState>);

#[derive(Debug, Default)]
struct PhaseState {
    heads: AtomicU64,
    busy: AtomicBool,
}

impl HeadPhase {
    /// A request head arrived: its handler runs.
    pub fn head_done(&self) {
        self.0.heads.fetch_add(1, Ordering::Relaxed);
        self.0.busy.store(true, Ordering::Relaxed);
    }

    /// The handler answered: the next request's head may come.
    pub fn answered(&self) {
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// The timers of one listener (`handshake_timeout`, `idle_timeout`; zero
/// turns one off).
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub handshake: Duration,
    pub idle: Duration,
}

/// A stream whose reads fail once the client is too slow.
pub struct TimedStream<S> {
    inner: S,
    timers: Timers,
    /// `Some`: HTTP, where every request head has the handshake deadline.
    phase: Option<HeadPhase>,
    /// Heads seen done, to notice the service moving on.
    heads_seen: u64,
    /// Start of the handshake, or of the request head being received.
    head_since: Option<Instant>,
    /// When the current wait for the client began.
    waiting_since: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl<S> TimedStream<S> {
    /// A stream of a line protocol: the handshake deadline until the
    /// first byte, then the idle deadline on every wait.
    pub fn new(inner: S, timers: Timers) -> Self {
        let now = Instant::now();
        TimedStream {
            inner,
            timers,
            phase: None,
            heads_seen: 0,
            head_since: Some(now),
            waiting_since: None,
            sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// An HTTP stream: the handshake deadline covers the TLS handshake
    /// and every request head, from accepting (the first) or from its
    /// first byte (the next ones on a kept-alive connection).
    pub fn http(inner: S, timers: Timers) -> (Self, HeadPhase) {
        let phase = HeadPhase::default();
        let mut stream = Self::new(inner, timers);
        stream.phase = Some(phase.clone());
        (stream, phase)
    }

    /// Follows the service: a finished head ends its deadline. Returns
    /// whether a head may be arriving now.
    fn sync(&mut self) -> bool {
        let Some(phase) = &self.phase else { return true };
        let heads = phase.0.heads.load(Ordering::Relaxed);
        if heads != self.heads_seen {
            self.heads_seen = heads;
            self.head_since = None;
        }
        !phase.0.busy.load(Ordering::Relaxed)
    }

    fn on_bytes(&mut self, now: Instant) {
        match self.sync() {
            true if self.phase.is_some() => {
                self.head_since.get_or_insert(now);
            }
            // A line protocol has heard its client: the handshake is over.
            true => self.head_since = None,
            false => {}
        }
    }

    /// When the pending read must have produced something, if ever.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        let may_be_head = self.sync();
        if let Some(since) = self.head_since.filter(|_| may_be_head && !self.timers.handshake.is_zero()) {
            return Some(since + self.timers.handshake);
        }
        if self.timers.idle.is_zero() {
            return None;
        }
        Some(*self.waiting_since.get_or_insert(now) + self.timers.idle)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if let Poll::Ready(result) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            if buf.filled().len() > before {
                this.on_bytes(Instant::now());
            }
            this.waiting_since = None;
            return Poll::Ready(result);
        }
        let Some(deadline) = this.deadline(Instant::now()) else { return Poll::Pending };
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client too slow"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const T: Timers = Timers { handshake: Duration::from_secs(10), idle: Duration::from_secs(60) };

    async fn read_fails_after(stream: &mut TimedStream<tokio::io::DuplexStream>) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => panic!("EOF instead of a timeout"),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                    return started.elapsed();
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_meets_the_handshake_deadline_then_the_idle_one() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = TimedStream::new(server, T);
        assert_eq!(read_fails_after(&mut s).await, T.handshake);

        let (mut client2, server) = tokio::io::duplex(64);
        let mut s = TimedStream::new(server, T);
        client2.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(read_fails_after(&mut s).await, T.idle, "after the first byte: idle");
        client.shutdown().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_head_trickled_byte_by_byte_still_meets_its_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut s, _phase) = TimedStream::http(server, T);
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(b"G").await.is_err() {
                    return;
                }
            }
        });
        assert_eq!(read_fails_after(&mut s).await, T.handshake, "slowloris is closed at the head deadline");
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_waits_are_idle_and_each_new_head_has_its_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut s, phase) = TimedStream::http(server, T);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 18];
        s.read_exact(&mut buf).await.unwrap();
        phase.head_done();
        // A handler slower than the head deadline is not the client's fault.
        tokio::time::sleep(T.handshake * 2).await;
        phase.answered();
        let started = Instant::now();
        let mut one = [0u8; 1];
        assert!(s.read(&mut one).await.is_err());
        assert_eq!(started.elapsed(), T.idle, "a kept-alive connection waits the idle timeout");

        let (mut client, server) = tokio::io::duplex(64);
        let (mut s, phase) = TimedStream::http(server, T);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        phase.head_done();
        phase.answered();
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GE").await.unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        let started = Instant::now();
        assert!(s.read(&mut one).await.is_err());
        assert_eq!(started.elapsed(), T.handshake, "a started head must finish in time");
    }
}
