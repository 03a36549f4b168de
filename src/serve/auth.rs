//! Starting the AUTH front ends (Dovecot auth protocol, saslauthd) and
//! keeping their sockets alive.
//!
//! Postfix's smtpd exits ("no SASL authentication mechanisms") when the
//! auth socket is missing at its start, and a running smtpd answers the
//! next AUTH after an auth-server restart with 454. So the sockets must
//! outlive the process: under systemd they come from socket activation
//! ([`super::activation`]), and SIGHUP reloads the `[auth]` settings in
//! place without closing a listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::activation::Inherited;
use super::{App, ServeError, Shutdown};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::protocols::accept::bind_unix;
use crate::protocols::dovecot_auth::DovecotAuthServer;
use crate::protocols::saslauthd::SaslauthdServer;

/// Names of systemd socket units' `FileDescriptorName=`.
pub const FD_NAME_DOVECOT: &str = "dovecot-auth";
pub const FD_NAME_SASLAUTHD: &str = "saslauthd";

/// Builds the authenticator and starts every configured AUTH listener.
/// Returns the authenticator (for the HTTP front end and reloads).
pub fn start(
    app: &App,
    shutdown: &Shutdown,
    front_ends: &mut JoinSet<Result<(), ServeError>>,
) -> Result<Arc<Authenticator>, ServeError> {
    let settings = app.config.auth.clone();
    let authenticator = Arc::new(
        Authenticator::new(app.identities.clone(), app.store.clone(), settings.clone()).with_audit(app.audit.clone()),
    );
    // The same check as `check-config --connect`, in the log at start.
    let checker = authenticator.clone();
    tokio::spawn(async move {
        match checker.lockout_risks().await {
            Ok(risks) => {
                for risk in risks {
                    tracing::error!("{risk}");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the directory's lockout settings could not be read"),
        }
    });
    let mut inherited = Inherited::from_env();
    let dovecot = DovecotAuthServer::new(authenticator.clone(), &settings.dovecot);

    let mut tcp = inherited.take_tcp(FD_NAME_DOVECOT);
    if tcp.is_empty() {
        for address in &settings.dovecot.listen {
            tcp.push(bind_tcp(*address)?);
        }
    }
    for listener in tcp {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| listen_error("(inherited)", e))?;
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(address = %local, "Dovecot auth protocol listening");
        let server = dovecot.clone();
        let shutdown = shutdown.clone();
        front_ends.spawn(async move {
            server.serve_tcp(listener, shutdown).await;
            Ok(())
        });
    }

    let mut unix = inherited.take_unix(FD_NAME_DOVECOT);
    if unix.is_empty() {
        if let Some(path) = &settings.dovecot.socket {
            unix.push(
                bind_unix(path, settings.dovecot.socket_mode)
                    .and_then(|l| l.into_std())
                    .map_err(|e| listen_error(&path.display().to_string(), e))?,
            );
        }
    }
    for listener in unix {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| listen_error("(unix)", e))?;
        tracing::info!("Dovecot auth protocol listening on a UNIX socket");
        let server = dovecot.clone();
        let shutdown = shutdown.clone();
        front_ends.spawn(async move {
            server.serve_unix(listener, shutdown).await;
            Ok(())
        });
    }

    let mut sasl = inherited.take_unix(FD_NAME_SASLAUTHD);
    if sasl.is_empty() {
        if let Some(path) = &settings.saslauthd.socket {
            sasl.push(
                bind_unix(path, settings.saslauthd.socket_mode)
                    .and_then(|l| l.into_std())
                    .map_err(|e| listen_error(&path.display().to_string(), e))?,
            );
        }
    }
    let saslauthd = SaslauthdServer::new(authenticator.clone());
    for listener in sasl {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| listen_error("(unix)", e))?;
        tracing::info!("saslauthd protocol listening");
        let server = saslauthd.clone();
        let shutdown = shutdown.clone();
        front_ends.spawn(async move {
            server.serve_unix(listener, shutdown).await;
            Ok(())
        });
    }

    let reload = reload_on_sighup(app.config.clone(), authenticator.clone(), app.clone(), shutdown.clone());
    front_ends.spawn(reload);
    Ok(authenticator)
}

fn bind_tcp(address: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener = std::net::TcpListener::bind(address).map_err(|e| listen_error(&address.to_string(), e))?;
    listener.set_nonblocking(true).map_err(|e| listen_error(&address.to_string(), e))?;
    Ok(listener)
}

fn listen_error(address: &str, source: std::io::Error) -> ServeError {
    ServeError::Listen { address: address.to_owned(), source }
}

/// SIGHUP: re-read the config file and apply `[auth]` (texts, limits,
/// TTLs; caches start empty) and flush identities. Listeners stay open:
/// a changed listen address needs a restart, which is logged.
async fn reload_on_sighup(
    config: Arc<Config>,
    authenticator: Arc<Authenticator>,
    app: App,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler: reload needs a restart");
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = shutdown.wait() => return Ok(()),
        }
        match Config::load(&config.file) {
            Ok(new) => {
                if new.auth.dovecot.listen != config.auth.dovecot.listen
                    || new.auth.dovecot.socket != config.auth.dovecot.socket
                    || new.auth.saslauthd.socket != config.auth.saslauthd.socket
                {
                    tracing::warn!("SIGHUP: listener addresses changed; they apply at the next restart");
                }
                authenticator.reload(new.auth);
                app.identities.clear();
                tracing::info!(file = %config.file.display(), "SIGHUP: configuration reloaded");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not reloaded; the running one stays"),
        }
    }
}
