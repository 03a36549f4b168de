//! Opening a front end's sockets: those systemd passed under the
//! listener's name (`FileDescriptorName=`), else the configured TCP
//! addresses and UNIX socket, each socket file with its configured mode
//! and group.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use super::accept::AnyListener;
use crate::config::listener::ListenerSettings;
use crate::serve::activation::Inherited;
use crate::serve::ServeError;

/// A front end's listening sockets, ready to serve.
#[derive(Default)]
pub struct Bound {
    tcp: Vec<TcpListener>,
    /// With the path of each socket file this process created (removed
    /// when serving ends; a socket from systemd stays).
    unix: Vec<(UnixListener, Option<PathBuf>)>,
}

impl Bound {
    /// The sockets of `settings`: inherited ones under its name replace
    /// the configured ones. Must run inside the runtime.
    pub fn open(settings: &ListenerSettings, inherited: &mut Inherited) -> Result<Bound, ServeError> {
        let tcp = inherited.take_tcp(settings.fd_name);
        let unix = inherited.take_unix(settings.fd_name);
        if !tcp.is_empty() || !unix.is_empty() {
            let mut bound = Bound::default();
            for l in tcp {
                bound.tcp.push(TcpListener::from_std(l).map_err(|e| listen_error(settings.fd_name, e))?);
            }
            for l in unix {
                bound.unix.push((UnixListener::from_std(l).map_err(|e| listen_error(settings.fd_name, e))?, None));
            }
            tracing::info!(
                fd_name = settings.fd_name,
                tcp = bound.tcp.len(),
                unix = bound.unix.len(),
                "listening on sockets from systemd"
            );
            return Ok(bound);
        }
        Self::bind(settings)
    }

    /// Binds the configured addresses (a stale UNIX socket file is
    /// replaced).
    pub fn bind(settings: &ListenerSettings) -> Result<Bound, ServeError> {
        let mut bound = Bound::default();
        for address in &settings.tcp {
            let listener = std::net::TcpListener::bind(address)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(TcpListener::from_std)
                .map_err(|e| listen_error(&address.to_string(), e))?;
            let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(fd_name = settings.fd_name, address = %local, "listening (TCP)");
            bound.tcp.push(listener);
        }
        if let Some(path) = &settings.unix_socket {
            let listener = bind_unix(path, settings.socket_mode, settings.socket_group)
                .map_err(|e| listen_error(&path.display().to_string(), e))?;
            tracing::info!(fd_name = settings.fd_name, path = %path.display(), "listening (UNIX)");
            bound.unix.push((listener, Some(path.clone())));
        }
        Ok(bound)
    }

    /// The first TCP address actually bound (port 0 in tests).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.first().and_then(|l| l.local_addr().ok())
    }

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.unix.is_empty()
    }

    pub(super) fn into_listeners(self) -> Vec<(AnyListener, Option<PathBuf>)> {
        let tcp = self.tcp.into_iter().map(|l| (AnyListener::Tcp(l), None));
        tcp.chain(self.unix.into_iter().map(|(l, path)| (AnyListener::Unix(l), path))).collect()
    }
}

fn listen_error(address: &str, source: std::io::Error) -> ServeError {
    ServeError::Listen { address: address.to_owned(), source }
}

/// Binds a UNIX socket, replacing a stale file (and creating its folder),
/// with the given mode and group.
pub fn bind_unix(path: &Path, mode: u32, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
