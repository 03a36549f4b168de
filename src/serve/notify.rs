//! `Type=notify`: tells systemd when the service is ready, reloading and
//! stopping, so `systemctl start` returns only once every listener is up,
//! `systemctl reload` waits for the reload to finish, and a restart is not
//! mistaken for a crash.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`); a failed
//! send is logged and otherwise ignored, since serving mail matters more
//! than telling the service manager about it.

use sd_notify::NotifyState;

/// Every listener is up (`READY=1`), also after a reload.
pub fn ready() {
    send("READY=1", &[NotifyState::Ready]);
}

/// A SIGHUP reload begins (`RELOADING=1` with the `MONOTONIC_USEC=` that
/// systemd's `Type=notify-reload` and `ExecReload` checks pair it with);
/// [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("RELOADING=1", &[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the monotonic clock for systemd");
            send("RELOADING=1", &[NotifyState::Reloading]);
        }
    }
}

/// Shutdown began: connections are draining (`STOPPING=1`).
pub fn stopping() {
    send("STOPPING=1", &[NotifyState::Stopping]);
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    // `false`: keep NOTIFY_SOCKET, later states are sent on it too.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, state = what, "cannot notify systemd");
    }
}
