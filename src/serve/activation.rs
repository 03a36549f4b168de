//! systemd socket activation: listening sockets handed over by the
//! service manager (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`).
//!
//! With `scripts/systemd/mailwarrant.socket`, systemd owns the sockets:
//! they exist before mailwarrant starts and survive its restarts, so
//! Postfix never finds the auth socket missing and connections made
//! during a restart wait in the backlog instead of failing. Sockets are
//! matched to front ends by `FileDescriptorName=`: `dovecot-auth`,
//! `saslauthd`, `policy`, `milter`, `http` (HTTPS too, when `[http]` has
//! a certificate) and `ops`; a front end with sockets from systemd binds
//! none of its configured addresses. A socket without a name goes to the
//! Dovecot auth front end. The `unsafe` fd adoption lives in the
//! `listenfd` crate.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use crate::config::auth::FD_NAME_DOVECOT;

/// systemd's name for a socket without `FileDescriptorName=`.
const UNNAMED: &str = "unknown";

/// The inherited sockets, taken once each.
#[derive(Default)]
pub struct Inherited {
    tcp: HashMap<String, Vec<TcpListener>>,
    unix: HashMap<String, Vec<UnixListener>>,
}

impl Inherited {
    /// Takes the sockets passed to this process (none when not
    /// socket-activated; the variables are cleared so children do not
    /// inherit them).
    pub fn from_env() -> Self {
        let names: Vec<String> =
            std::env::var("LISTEN_FDNAMES").map(|v| v.split(':').map(str::to_owned).collect()).unwrap_or_default();
        std::env::remove_var("LISTEN_FDNAMES");
        let mut fds = listenfd::ListenFd::from_env();
        let mut inherited = Inherited::default();
        for index in 0..fds.len() {
            let name = names.get(index).map(String::as_str).unwrap_or(UNNAMED).to_owned();
            if let Ok(Some(l)) = fds.take_tcp_listener(index) {
                let _ = l.set_nonblocking(true);
                tracing::info!(fd_name = %name, "using a TCP socket from systemd");
                inherited.tcp.entry(name).or_default().push(l);
            } else if let Ok(Some(l)) = fds.take_unix_listener(index) {
                let _ = l.set_nonblocking(true);
                tracing::info!(fd_name = %name, "using a UNIX socket from systemd");
                inherited.unix.entry(name).or_default().push(l);
            } else {
                tracing::warn!(fd_name = %name, "ignoring an inherited socket that is not a stream listener");
            }
        }
        inherited
    }

    /// Whether sockets named `name` (or unnamed ones, for Dovecot auth)
    /// are waiting to be taken.
    pub fn has(&self, name: &str) -> bool {
        let named = |n: &str| self.tcp.contains_key(n) || self.unix.contains_key(n);
        named(name) || (name == FD_NAME_DOVECOT && named(UNNAMED))
    }

    /// Names of sockets no front end took (a typo in a socket unit, or a
    /// section missing from the config).
    pub fn leftover(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tcp.keys().chain(self.unix.keys()).cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// TCP sockets for a front end; unnamed ones count as Dovecot auth.
    pub fn take_tcp(&mut self, name: &str) -> Vec<TcpListener> {
        let mut found = self.tcp.remove(name).unwrap_or_default();
        if name == FD_NAME_DOVECOT {
            found.extend(self.tcp.remove(UNNAMED).unwrap_or_default());
        }
        found
    }

    pub fn take_unix(&mut self, name: &str) -> Vec<UnixListener> {
        let mut found = self.unix.remove(name).unwrap_or_default();
        if name == FD_NAME_DOVECOT {
            found.extend(self.unix.remove(UNNAMED).unwrap_or_default());
        }
        found
    }
}
