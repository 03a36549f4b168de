//! The one accept loop every socket front end uses (TCP and UNIX).
//!
//! A connection permit is taken *before* accepting, so a flood cannot open
//! more than the listener's bound; waiting for a permit and waiting for a
//! connection both give way to shutdown. Each connection runs in its own
//! task with one tracing span (`connection`, fields `protocol`, `peer`),
//! and keeps its permit until it ends, so a drain can wait for all of them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::serve::{ServeError, Shutdown};

/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A listening socket that yields streams and a peer label for logs.
pub trait Listener: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept_stream(&self) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = self.accept().await?;
        // Requests and replies are single small writes: no Nagle delay.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

impl Listener for UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept_stream(&self) -> io::Result<(Self::Stream, String)> {
        let (stream, _) = self.accept().await?;
        Ok((stream, "unix".to_owned()))
    }
}

/// Accepts until `shutdown`, running `handle(stream, shutdown)` for each
/// connection while holding one of `permits`.
pub async fn serve<L, H, F>(
    listener: L,
    permits: Arc<Semaphore>,
    mut shutdown: Shutdown,
    protocol: &'static str,
    handle: H,
) where
    L: Listener,
    H: Fn(L::Stream, Shutdown) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept_stream() => a,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::info_span!("connection", protocol, peer = %peer);
                let work = handle(stream, shutdown.clone());
                tokio::spawn(
                    async move {
                        work.await;
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

/// Binds a UNIX socket, replacing a stale file (and creating its folder),
/// with the given mode.
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// The TCP and UNIX listeners a front end is configured with (policy
/// delegation, milter); either may be absent.
pub async fn bind_pair(
    tcp: Option<SocketAddr>,
    unix: Option<&Path>,
    mode: u32,
) -> Result<(Option<TcpListener>, Option<(UnixListener, PathBuf)>), ServeError> {
    let tcp = match tcp {
        Some(addr) => Some(
            TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { address: addr.to_string(), source })?,
        ),
        None => None,
    };
    let unix = match unix {
        Some(path) => Some((
            bind_unix(path, mode)
                .map_err(|source| ServeError::Listen { address: path.display().to_string(), source })?,
            path.to_path_buf(),
        )),
        None => None,
    };
    Ok((tcp, unix))
}
