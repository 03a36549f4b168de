//! The directory: who exists, what they belong to, and whether a password
//! is right.
//!
//! One trait, several backends (`ldap` for OpenLDAP, `ldif` for the
//! embedded default). A wrong password is a value
//! ([`BindOutcome::Rejected`]); `Err` always means the directory itself is
//! unhealthy, which every front end turns into a *temporary* failure. The
//! two must never be confused.

pub mod escape;
pub mod generalized_time;
pub mod ldap;
pub mod ldif;
pub mod template;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Serialize;

use crate::config::DirectorySettings;
use crate::identity::{AccountState, Address, Identity, Login};

/// A directory that cannot answer. Never a verdict on a password.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("no directory server reachable ({0})")]
    Unreachable(String),
    #[error("directory operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("service account bind refused by the directory ({0}): check `directory.ldap.bind_dn` and its password")]
    ServiceBind(String),
    #[error("directory answered with an unexpected result: {0}")]
    Protocol(String),
    #[error("directory data is inconsistent: {0}")]
    Data(String),
    #[error("directory source could not be read: {0}")]
    Source(String),
}

pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// Why the directory turned a password down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Wrong password, or a user the bind does not know.
    InvalidCredentials,
    /// Refused before asking the directory: an empty password would be an
    /// unauthenticated bind that "succeeds" (RFC 4513 §5.1.2).
    EmptyPassword,
    AccountLocked,
    AccountDisabled,
    PasswordExpired,
    MustChangePassword,
}

/// The result of checking a password against the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Accepted {
        /// Seconds until expiry, when the directory said so on the bind
        /// (ppolicy `timeBeforeExpiration`).
        expires_in: Option<u64>,
        /// Grace logins left after this one, when the password has expired.
        grace_logins_left: Option<u32>,
    },
    Rejected(RejectReason),
}

/// Why the directory refused a password change. Values, not errors: the
/// page shows each with its own message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRefusal {
    /// The current password is wrong (or the user unknown).
    InvalidCredentials,
    /// An empty current or new password; never sent to the directory.
    EmptyPassword,
    AccountLocked,
    AccountDisabled,
    /// ppolicy `passwordTooShort` (the directory's own minimum).
    TooShort,
    /// ppolicy `passwordTooYoung` (`pwdMinAge`).
    TooYoung,
    /// ppolicy `passwordInHistory`.
    InHistory,
    /// ppolicy `insufficientPasswordQuality` (a `pwdCheckModule` refused it).
    InsufficientQuality,
    /// ppolicy `passwordModNotAllowed` or an ACL refused the write.
    NotAllowed,
    /// The password expired and the directory has no grace login left.
    Expired,
    /// This backend cannot change passwords.
    Unsupported,
}

impl ChangeRefusal {
    /// What the user reads. A wrong current password stays generic.
    pub fn user_message(self) -> &'static str {
        match self {
            ChangeRefusal::InvalidCredentials | ChangeRefusal::EmptyPassword => {
                "The login or the current password is not right."
            }
            ChangeRefusal::AccountLocked => "The account is locked; ask the helpdesk.",
            ChangeRefusal::AccountDisabled => "The account is disabled; ask the helpdesk.",
            ChangeRefusal::TooShort => "The directory refused the new password: it is too short.",
            ChangeRefusal::TooYoung => "The password was changed too recently; try again later.",
            ChangeRefusal::InHistory => "The directory refused the new password: it was used before.",
            ChangeRefusal::InsufficientQuality => "The directory refused the new password as too weak.",
            ChangeRefusal::NotAllowed => "The directory does not allow this account to change its password here.",
            ChangeRefusal::Expired => "The password has expired and no grace login is left; ask the helpdesk.",
            ChangeRefusal::Unsupported => "Password changes are not available for this directory.",
        }
    }
}

/// The result of a password change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    Changed,
    Refused(ChangeRefusal),
}

/// How a change is made, from `[password]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeOptions {
    /// For an expired password with no grace login left, let the service
    /// account write once the old password was proven right
    /// (`password.expired_change = "service_account"`).
    pub expired_via_service_account: bool,
}

impl BindOutcome {
    pub const ACCEPTED: BindOutcome = BindOutcome::Accepted { expires_in: None, grace_logins_left: None };
}

/// A group with a mail address that delivers to its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DistributionList {
    pub dn: String,
    pub name: String,
    pub address: Address,
}

/// A user as the reminder scan needs them: no groups, so a scan of
/// 100,000 users costs one paged search, not one group search each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    pub login: Login,
    pub dn: String,
    pub display_name: String,
    pub primary_address: Option<Address>,
    pub account: AccountState,
}

/// Who an address belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AddressOwner {
    User { identity: Arc<Identity> },
    List { list: DistributionList },
}

/// Opens the configured directory.
pub async fn open(settings: &DirectorySettings) -> Result<Arc<dyn Directory>> {
    match settings {
        DirectorySettings::Ldif(s) => Ok(Arc::new(ldif::LdifDirectory::open(s)?)),
        DirectorySettings::Ldap(s) => {
            let directory = ldap::LdapDirectory::new(s)?;
            // Start even when the directory is down: listeners must exist
            // (Postfix's smtpd exits without its auth socket), and every
            // answer is a temporary failure until the directory is back.
            if let Err(e) = directory.check_health().await {
                tracing::error!(error = %e, "the directory does not answer yet; serving temporary failures until it does");
            }
            Ok(Arc::new(directory))
        }
    }
}

/// One lockout rule of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Where it was read (the entry's DN), for messages.
    pub source: String,
    /// Failures that lock the account; 0: this rule locks nobody.
    pub threshold: u32,
    /// How long the directory remembers a failure: ppolicy
    /// `pwdFailureCountInterval` (failures older are purged), AD
    /// `lockoutObservationWindow` (the count resets after this long
    /// without failures). `None`: until a successful bind.
    pub observation: Option<std::time::Duration>,
}

/// What every directory backend provides.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Finds a user by what they type as a login (login attribute or mail,
    /// per the configured template). `Ok(None)`: nobody by that name.
    async fn lookup(&self, login: &str) -> Result<Option<Identity>>;

    /// Finds the owner of an address: a user (primary or alias) or a list.
    async fn lookup_address(&self, address: &Address) -> Result<Option<AddressOwner>>;

    /// Checks a password by binding as the user. Must return
    /// `Rejected(EmptyPassword)` for an empty password without contacting
    /// the server.
    async fn authenticate(&self, identity: &Identity, password: &SecretString) -> Result<BindOutcome>;

    /// Changes a password as the user: the current password must be
    /// right, and where the directory has its own policy (ppolicy) it
    /// applies too. An expired or must-change password can still be
    /// changed. Refusals are values; `Err` only for an unhealthy directory.
    async fn change_password(
        &self,
        identity: &Identity,
        current: &SecretString,
        new: &SecretString,
        options: &ChangeOptions,
    ) -> Result<ChangeOutcome> {
        let _ = (identity, current, new, options);
        Ok(ChangeOutcome::Refused(ChangeRefusal::Unsupported))
    }

    /// Every user, with account and password state (paged on LDAP).
    async fn list_users(&self) -> Result<Vec<UserSummary>>;

    /// All groups that have a mail address.
    async fn distribution_lists(&self) -> Result<Vec<DistributionList>>;

    /// Spends what checking a password would cost on one that is refused
    /// unchecked: an unknown login, a disabled or locked account
    /// (docs/testing.md S3, T4). Where mailwarrant itself verifies hashes
    /// (LDIF), these must not answer faster than a wrong password once
    /// the failure-delay floor is exceeded by load. Over LDAP the hash is
    /// the directory's work and this does nothing.
    async fn spend_without_checking(&self, password: &SecretString) {
        let _ = password;
    }

    /// A cheap round trip, for readiness checks.
    async fn check_health(&self) -> Result<()>;

    /// The directory's own lockout settings that the service account can
    /// read (OpenLDAP ppolicy entries, the AD domain and its fine-grained
    /// password settings), so the AUTH throttle can be checked against
    /// them. Empty where the directory locks nobody (LDIF).
    async fn lockout_policies(&self) -> Result<Vec<LockoutPolicy>> {
        Ok(Vec::new())
    }

    /// `ldap` or `ldif`, for logs.
    fn kind(&self) -> &'static str;
}
