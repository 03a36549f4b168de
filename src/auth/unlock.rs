//! An administrator's unlock of a login's AUTH failure budget, from the
//! command line, the API or the admin page.
//!
//! One function for the three surfaces, so each clears the same key (the
//! canonical login, in the store every instance reads) and leaves the
//! same audit trail: a `tracing` line under the `audit` target and a
//! record in the store's `audit` log, beside password changes. The store
//! record is what an administrator on another instance, or after a
//! restart, can still read; the log line is what the log pipeline sees.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use super::audit::Escaped;
use super::Authenticator;
use crate::password::change::{AUDIT_KEEP, AUDIT_LOG};
use crate::store::StoreError;

/// The stable `event` of an unlock's audit line and record.
pub const EVENT: &str = "auth.unlocked";

/// Where the unlock was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// `mailwarrant unlock`.
    Cli,
    /// `POST /v1/identities/{login}/unlock`.
    Api,
    /// The Unlock button on `/admin/user`.
    AdminPage,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Api => "api",
            Surface::AdminPage => "admin_page",
        }
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an unlock did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unlocked {
    /// The budget's key: the canonical login, or the typed one (folded)
    /// when the directory does not know it.
    pub login: String,
    /// Whether failures were counted against the login (and are now
    /// forgotten); false when there was nothing to clear.
    pub budget_live: bool,
}

/// Clears `typed`'s login budget on every instance sharing the store and
/// audits it: `by` names the administrator (`token:NAME`, `user:LOGIN`,
/// `cli:USER`). The audit record is written after the clear; a store that
/// takes the clear but not the record is logged, not an error, since the
/// unlock happened.
pub async fn unlock(auth: &Authenticator, typed: &str, by: &str, via: Surface) -> Result<Unlocked, StoreError> {
    let (login, budget_live) = auth.unlock(typed).await?;
    tracing::info!(
        target: "audit",
        event = EVENT,
        by = %Escaped(by),
        via = via.as_str(),
        login = %Escaped(&login),
        budget_live,
        "login failure budget cleared"
    );
    let record = serde_json::json!({
        "event": EVENT,
        "login": login,
        "by": by,
        "via": via,
        "budget_live": budget_live,
        "at": OffsetDateTime::now_utc().unix_timestamp(),
    });
    if let Err(e) = auth.store.append(AUDIT_LOG, record.to_string().as_bytes(), AUDIT_KEEP).await {
        tracing::error!(error = %e, "unlock audit record not stored");
    }
    Ok(Unlocked { login, budget_live })
}
