//! Starting the AUTH front ends (Dovecot auth protocol, saslauthd).
//!
//! Postfix's smtpd exits ("no SASL authentication mechanisms") when the
//! auth socket is missing at its start, and a running smtpd answers the
//! next AUTH after an auth-server restart with 454. So the sockets must
//! outlive the process: under systemd they come from socket activation
//! ([`super::activation`]), and SIGHUP ([`super::reload`]) reloads the
//! `[auth]` settings in place without closing a listener.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::activation::Inherited;
use super::budget_plan::Plan;
use super::{App, ServeError, Shutdown};
use crate::auth::Authenticator;
use crate::config::auth::{FD_NAME_DOVECOT, FD_NAME_SASLAUTHD};
use crate::protocols::accept::Limits;
use crate::protocols::bind::Bound;
use crate::protocols::dovecot_auth::DovecotAuthServer;
use crate::protocols::saslauthd::SaslauthdServer;

/// Builds the authenticator and starts every configured AUTH listener.
/// Returns the authenticator (for the HTTP front end and reloads).
pub fn start(
    app: &App,
    plan: &Plan,
    inherited: &mut Inherited,
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
    if let Some(listener) = plan.get(FD_NAME_DOVECOT) {
        let bound = Bound::open(listener, inherited)?;
        let server = DovecotAuthServer::new(authenticator.clone(), settings.dovecot.temp_fail);
        let (limits, shutdown) = (Limits::new(listener, Vec::new()), shutdown.clone());
        front_ends.spawn(async move {
            server.serve(bound, limits, shutdown).await;
            Ok(())
        });
    }
    if let Some(listener) = plan.get(FD_NAME_SASLAUTHD) {
        let bound = Bound::open(listener, inherited)?;
        let server = SaslauthdServer::new(authenticator.clone());
        let (limits, shutdown) = (Limits::new(listener, Vec::new()), shutdown.clone());
        front_ends.spawn(async move {
            server.serve(bound, limits, shutdown).await;
            Ok(())
        });
    }
    Ok(authenticator)
}
