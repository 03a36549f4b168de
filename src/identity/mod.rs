//! Who a login is: the one record every front end keys on.
//!
//! An [`Identity`] is built by a directory backend and shared as
//! `Arc<Identity>` through the [`cache`]; nothing downstream re-reads the
//! directory for a known user on the hot path.

pub mod address;
pub mod cache;

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

pub use address::{Address, AddressError};
pub use cache::IdentityCache;

/// The canonical login: the value the directory stores in its login
/// attribute (e.g. `uid`), never what the client typed. Auth, policy and
/// milter all key counters and caches on this.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Login(String);

impl Login {
    pub fn new(stored: impl Into<String>) -> Self {
        Self(stored.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({})", self.0)
    }
}

/// What a client typed, folded the way the directory matches logins
/// (`uid` and `mail` use case-insensitive matching rules), so `Alice`
/// and `alice` share one cache entry. ASCII-only folding: `İ` or the
/// Kelvin sign must not collide with plain letters.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LookupKey(String);

impl LookupKey {
    pub fn new(typed: &str) -> Self {
        Self(typed.trim().to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group the identity belongs to, directly or through nesting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupRef {
    pub dn: String,
    /// The group's short name (`cn`), what admins map to profiles.
    pub name: String,
    /// False when membership comes only through a nested group.
    pub direct: bool,
}

/// Account and password state as the directory reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccountState {
    /// False when an administrator disabled the account.
    pub enabled: bool,
    /// True while the directory's lockout holds.
    pub locked: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_changed_at: Option<OffsetDateTime>,
    /// None when the password never expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_expires_at: Option<OffsetDateTime>,
    /// Set by an administrator's reset (`pwdReset`, AD `pwdLastSet = 0`).
    pub must_change: bool,
}

/// The single verdict on an account, in the order a refusal names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
    Locked,
    PasswordExpired,
    MustChangePassword,
}

impl AccountState {
    /// An account usable for the given instant. Disabled wins over locked,
    /// locked over expired: the most permanent cause is the one reported.
    pub fn status(&self, now: OffsetDateTime) -> AccountStatus {
        if !self.enabled {
            AccountStatus::Disabled
        } else if self.locked {
            AccountStatus::Locked
        } else if self.password_expires_at.is_some_and(|at| at <= now) {
            AccountStatus::PasswordExpired
        } else if self.must_change {
            AccountStatus::MustChangePassword
        } else {
            AccountStatus::Active
        }
    }

    /// Whole days until the password expires (negative once it has).
    pub fn days_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.password_expires_at.map(|at| (at - now).whole_days())
    }
}

/// Everything mailwarrant knows about one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub login: Login,
    pub dn: String,
    pub display_name: String,
    pub primary_address: Option<Address>,
    pub aliases: Vec<Address>,
    /// Addresses of shared mailboxes or groups this user may send as.
    pub send_as: Vec<Address>,
    /// Direct groups first, then nested ones; each group once.
    pub groups: Vec<GroupRef>,
    pub account: AccountState,
}

impl Identity {
    /// Every address the user owns or may send as.
    pub fn sendable_addresses(&self) -> impl Iterator<Item = &Address> {
        self.primary_address.iter().chain(&self.aliases).chain(&self.send_as)
    }

    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.name.eq_ignore_ascii_case(name))
    }
}
