//! The OpenLDAP backend: users, groups and password state from a real
//! directory, and passwords checked by binding as the user.
//!
//! Only this module imports `ldap3`. Files by role: `pool` (connections,
//! deadlines, failover), `lookup` (entries → identities, groups,
//! policies), `ppolicy` (account state and the bind response control),
//! `tls` (LDAPS/StartTLS). The Active Directory flavour
//! (`flavour = "active_directory"`) reads through `ad` (users, proxy
//! addresses, in-chain groups), `ad_account` (userAccountControl and
//! friends, bind sub-codes), `filetime`, and changes passwords through
//! `ad_password`.
//!
//! Architecture invariants kept here:
//! - a wrong password is `Ok(Rejected(..))`; `Err` only when the directory
//!   could not answer (down, hung, referral, nonsense);
//! - an empty password never reaches the server (RFC 4513 §5.1.2: it would
//!   be an unauthenticated bind that "succeeds");
//! - every client value is escaped before it enters a filter;
//! - passwords are never logged, and only exposed to the bind call.

mod ad;
pub mod ad_account;
pub mod ad_password;
mod change;
pub mod filetime;
mod lockout;
mod lookup;
mod pool;
pub mod ppolicy;
mod tls;

pub use tls::{fingerprint, parse_pin};

use std::sync::Arc;

use async_trait::async_trait;
use ldap3::controls::RawControl;
use ldap3::Scope;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use self::lookup::{Entry, Reader};
use self::pool::{rc, BindPool, Connector, Search, SearchPool};
use self::ppolicy::{PpolicyError, PpolicyResponse};
use super::{
    AddressOwner, BindOutcome, ChangeOptions, ChangeOutcome, Directory, DirectoryError, DistributionList, RejectReason,
    Result, UserSummary,
};
use crate::config::directory::Flavour;
use crate::config::LdapSettings;
use crate::identity::{Address, Identity};

/// Longest login looked up; anything longer matches nobody (no directory
/// stores such logins, and it keeps huge filters off the wire).
pub const MAX_LOGIN_BYTES: usize = 256;

/// A directory served by OpenLDAP (or any LDAPv3 server with the same
/// schema conventions).
pub struct LdapDirectory {
    reader: Reader,
    binds: BindPool,
    base_dn: String,
    group_base_dn: String,
    address_filter: crate::directory::template::FilterTemplate,
    user_filter: crate::directory::template::FilterTemplate,
    /// Set for `flavour = "active_directory"`: reads go through it.
    ad: Option<ad::AdReader>,
    /// For the AD password change (service account, transport).
    settings: Arc<LdapSettings>,
    /// The service account, for `password.expired_change = "service_account"`.
    service_dn: String,
    service_password: SecretString,
}

impl LdapDirectory {
    /// Builds the backend without contacting the server: connections open
    /// on first use. Fails only on local problems (an unreadable CA file).
    pub fn new(settings: &LdapSettings) -> Result<Self> {
        Self::with_fail_back_interval(settings, pool::FAIL_BACK_INTERVAL)
    }

    /// Like [`LdapDirectory::new`], with how often connections on a
    /// fallback URL try the earlier URLs again (default 30 s).
    pub fn with_fail_back_interval(settings: &LdapSettings, fail_back_after: std::time::Duration) -> Result<Self> {
        let transport = tls::Transport::new(
            settings.tls,
            settings.ca_file.as_deref(),
            settings.tls_verify,
            &settings.tls_pins,
            settings.connect_timeout,
        )?;
        let connector = Arc::new(Connector::new(
            settings.urls.clone(),
            transport,
            settings.connect_timeout,
            settings.operation_timeout,
            fail_back_after,
        ));
        let pool = SearchPool::new(
            connector.clone(),
            settings.bind_dn.clone(),
            settings.bind_password.clone(),
            settings.pool_size,
        );
        let binds = BindPool::new(connector.clone(), settings.bind_pool_size);
        let ad =
            (settings.flavour == Flavour::ActiveDirectory).then(|| ad::AdReader::new(pool.clone(), settings.clone()));
        Ok(Self {
            reader: Reader::new(pool, settings.clone()),
            binds,
            base_dn: settings.base_dn.clone(),
            group_base_dn: settings.group_base_dn.clone(),
            address_filter: settings.address_filter.clone(),
            user_filter: settings.user_filter.clone(),
            ad,
            settings: Arc::new(settings.clone()),
            service_dn: settings.bind_dn.clone(),
            service_password: settings.bind_password.clone(),
        })
    }

    /// Builds the backend and checks that the service account can bind and
    /// search, so a wrong `bind_dn` or password is reported at start-up.
    pub async fn connect(settings: &LdapSettings) -> Result<Self> {
        let directory = Self::new(settings)?;
        directory.check_health().await?;
        Ok(directory)
    }

    /// Bases to search for an address: the user base, and the group base
    /// when it is not inside the user base.
    fn address_bases(&self) -> Vec<&str> {
        let inside = self.group_base_dn.len() >= self.base_dn.len()
            && self.group_base_dn.to_lowercase().ends_with(&self.base_dn.to_lowercase())
            && (self.group_base_dn.len() == self.base_dn.len()
                || self.group_base_dn.as_bytes()[self.group_base_dn.len() - self.base_dn.len() - 1] == b',');
        if inside {
            vec![self.base_dn.as_str()]
        } else {
            vec![self.base_dn.as_str(), self.group_base_dn.as_str()]
        }
    }
}

impl LdapDirectory {
    /// The identity an entry describes, read as the flavour says.
    async fn identity(&self, entry: &Entry) -> Result<Identity> {
        match &self.ad {
            Some(ad) => ad.identity(entry, OffsetDateTime::now_utc()).await,
            None => self.reader.identity(entry, OffsetDateTime::now_utc()).await,
        }
    }

    /// Changes a password on Active Directory (`ad_password`): as the user,
    /// or for expired and must-change users through the service account
    /// when `expired_via_service_account`. Refusals are values; `Err` when
    /// the directory cannot answer, or for `flavour = "openldap"`.
    pub async fn change_password_active_directory(
        &self,
        identity: &Identity,
        current: &SecretString,
        new: &SecretString,
        expired_via_service_account: bool,
    ) -> Result<ad_password::AdChangeOutcome> {
        if self.ad.is_none() {
            return Err(DirectoryError::Protocol("not an Active Directory backend".into()));
        }
        ad_password::change_password(self, identity, current, new, expired_via_service_account).await
    }

    fn is_active_directory(&self) -> bool {
        self.ad.is_some()
    }

    fn reader_pool(&self) -> &SearchPool {
        self.reader.pool()
    }

    fn is_group(&self, entry: &Entry) -> bool {
        match &self.ad {
            Some(_) => ad::AdReader::is_group(entry),
            None => entry.is_group(),
        }
    }

    fn list(&self, entry: &Entry) -> Option<DistributionList> {
        match &self.ad {
            Some(ad) => ad.list(entry),
            None => self.reader.list(entry),
        }
    }
}

/// A login worth asking the directory about. Control characters (NUL
/// above all) and absurd lengths match nobody (docs/threat-model.md T2).
pub fn acceptable_login(login: &str) -> bool {
    !login.is_empty() && login.len() <= MAX_LOGIN_BYTES && !login.chars().any(char::is_control)
}

fn ppolicy_request() -> RawControl {
    RawControl { ctype: ppolicy::PPOLICY_CONTROL_OID.to_owned(), crit: false, val: None }
}

/// The verdict on a bind, from its result code and ppolicy response.
/// `enabled` is what the directory said about the account at lookup: a
/// disabled account's bind is refused by the ACL with a bare
/// `invalidCredentials`, and is reported as disabled.
pub fn bind_outcome(code: u32, text: &str, control: Option<PpolicyResponse>, enabled: bool) -> Result<BindOutcome> {
    let error = control.and_then(|c| c.error);
    match code {
        rc::SUCCESS => Ok(match error {
            // The password is right, but the session may only change it.
            Some(PpolicyError::ChangeAfterReset) => BindOutcome::Rejected(RejectReason::MustChangePassword),
            _ => BindOutcome::Accepted {
                expires_in: control.and_then(|c| c.time_before_expiration),
                grace_logins_left: control.and_then(|c| c.grace_logins_remaining),
            },
        }),
        rc::INVALID_CREDENTIALS | rc::INAPPROPRIATE_AUTHENTICATION => Ok(BindOutcome::Rejected(match error {
            Some(PpolicyError::PasswordExpired) => RejectReason::PasswordExpired,
            Some(PpolicyError::AccountLocked) => RejectReason::AccountLocked,
            _ if !enabled => RejectReason::AccountDisabled,
            _ => RejectReason::InvalidCredentials,
        })),
        rc::REFERRAL => Err(DirectoryError::Protocol(
            "the bind was answered with a referral, which is not followed: point `directory.ldap.urls` at a server \
             that holds the user"
                .into(),
        )),
        other if text.is_empty() => Err(DirectoryError::Protocol(format!("bind failed with result code {other}"))),
        other => Err(DirectoryError::Protocol(format!("bind failed with result code {other}: {text}"))),
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, login: &str) -> Result<Option<Identity>> {
        if !acceptable_login(login) {
            return Ok(None);
        }
        let filter = self.user_filter.render(login);
        let entries = match &self.ad {
            Some(ad) => ad.find(&self.base_dn, &filter).await?,
            None => self.reader.find(&self.base_dn, &filter).await?,
        };
        match entries.as_slice() {
            [] => Ok(None),
            [entry] => self.identity(entry).await.map(Some),
            _ => Err(DirectoryError::Data(format!(
                "the login {login:?} matches several entries under {}: make `directory.ldap.user_filter` unique",
                self.base_dn
            ))),
        }
    }

    async fn lookup_address(&self, address: &Address) -> Result<Option<AddressOwner>> {
        let filter = self.address_filter.render(address.as_str());
        let mut found: Vec<Entry> = Vec::new();
        for base in self.address_bases() {
            let entries = match &self.ad {
                Some(ad) => ad.find(base, &filter).await?,
                None => self.reader.find(base, &filter).await?,
            };
            for entry in entries {
                if !found.iter().any(|e| e.dn().eq_ignore_ascii_case(entry.dn())) {
                    found.push(entry);
                }
            }
        }
        match found.as_slice() {
            [] => Ok(None),
            [entry] if self.is_group(entry) => Ok(self.list(entry).map(|list| AddressOwner::List { list })),
            [entry] => {
                let identity = self.identity(entry).await?;
                Ok(Some(AddressOwner::User { identity: Arc::new(identity) }))
            }
            _ => Err(DirectoryError::Data(format!(
                "the address {address} belongs to several entries: make it unique, or `directory.ldap.address_filter` \
                 narrower"
            ))),
        }
    }

    async fn authenticate(&self, identity: &Identity, password: &SecretString) -> Result<BindOutcome> {
        if password.expose_secret().is_empty() {
            return Ok(BindOutcome::Rejected(RejectReason::EmptyPassword));
        }
        if identity.dn.trim().is_empty() {
            // An empty DN is an anonymous bind, whatever the password.
            return Ok(BindOutcome::Rejected(RejectReason::InvalidCredentials));
        }
        if self.ad.is_some() {
            // AD ignores the ppolicy control; the reason is in the text.
            let result = self.binds.bind(&identity.dn, password, Vec::new()).await?;
            let outcome = ad_account::bind_outcome(result.rc, &result.text, &identity.account);
            tracing::debug!(dn = %identity.dn, code = result.rc, ?outcome, "user bind (active directory)");
            return outcome;
        }
        let result = self.binds.bind(&identity.dn, password, vec![ppolicy_request()]).await?;
        let control = result.ctrls.iter().find(|c| c.1.ctype == ppolicy::PPOLICY_CONTROL_OID).and_then(|c| {
            match ppolicy::decode_response(c.1.val.as_deref().unwrap_or_default()) {
                Ok(response) => Some(response),
                Err(e) => {
                    tracing::warn!(dn = %identity.dn, error = %e, "ignoring the ppolicy response");
                    None
                }
            }
        });
        let outcome = bind_outcome(result.rc, &result.text, control, identity.account.enabled);
        tracing::debug!(dn = %identity.dn, code = result.rc, ?outcome, "user bind");
        outcome
    }

    async fn change_password(
        &self,
        identity: &Identity,
        current: &SecretString,
        new: &SecretString,
        options: &ChangeOptions,
    ) -> Result<ChangeOutcome> {
        if self.ad.is_some() {
            let via_service = options.expired_via_service_account;
            return Ok(ad_password::change_password(self, identity, current, new, via_service).await?.into());
        }
        change::change_password(self, identity, current, new, options).await
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        match &self.ad {
            Some(ad) => ad.summaries(OffsetDateTime::now_utc()).await,
            None => self.reader.summaries(OffsetDateTime::now_utc()).await,
        }
    }

    async fn distribution_lists(&self) -> Result<Vec<DistributionList>> {
        match &self.ad {
            Some(ad) => ad.lists().await,
            None => self.reader.lists().await,
        }
    }

    async fn check_health(&self) -> Result<()> {
        let attrs = ["1.1".to_owned()];
        let search =
            Search { base: "", scope: Scope::Base, filter: "(objectClass=*)", attrs: &attrs, size_limit: None };
        self.reader.pool().search(&search).await.map(|_| ())
    }

    async fn lockout_policies(&self) -> Result<Vec<crate::directory::LockoutPolicy>> {
        self.read_lockout_policies().await
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory").field("base_dn", &self.base_dn).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: u32, control: Option<PpolicyResponse>, enabled: bool, expected: BindOutcome) {
        let got = bind_outcome(code, "", control, enabled).expect("a verdict");
        assert_eq!(got, expected, "code {code}, control {control:?}, enabled {enabled}");
    }

    fn error(e: PpolicyError) -> Option<PpolicyResponse> {
        Some(PpolicyResponse { error: Some(e), ..Default::default() })
    }

    #[test]
    fn bind_verdicts() {
        use RejectReason::*;
        check(0, None, true, BindOutcome::ACCEPTED);
        let warning = PpolicyResponse { time_before_expiration: Some(3600), ..Default::default() };
        check(0, Some(warning), true, BindOutcome::Accepted { expires_in: Some(3600), grace_logins_left: None });
        let grace = PpolicyResponse { grace_logins_remaining: Some(2), ..Default::default() };
        check(0, Some(grace), true, BindOutcome::Accepted { expires_in: None, grace_logins_left: Some(2) });
        check(0, error(PpolicyError::ChangeAfterReset), true, BindOutcome::Rejected(MustChangePassword));
        check(49, None, true, BindOutcome::Rejected(InvalidCredentials));
        check(49, None, false, BindOutcome::Rejected(AccountDisabled));
        check(49, error(PpolicyError::PasswordExpired), true, BindOutcome::Rejected(PasswordExpired));
        check(49, error(PpolicyError::AccountLocked), true, BindOutcome::Rejected(AccountLocked));
        check(48, None, true, BindOutcome::Rejected(InvalidCredentials));
    }

    #[test]
    fn other_bind_results_are_errors_not_verdicts() {
        assert!(matches!(bind_outcome(10, "", None, true), Err(DirectoryError::Protocol(_))));
        assert!(matches!(bind_outcome(51, "busy", None, true), Err(DirectoryError::Protocol(m)) if m.contains("busy")));
        assert!(bind_outcome(52, "", None, true).is_err());
    }

    #[test]
    fn logins_worth_asking_about() {
        assert!(acceptable_login("alice"));
        assert!(acceptable_login("jürgen"));
        assert!(acceptable_login("*)(uid=*"));
        assert!(!acceptable_login(""));
        assert!(!acceptable_login("ali\0ce"));
        assert!(!acceptable_login("alice\r\n"));
        assert!(!acceptable_login(&"a".repeat(MAX_LOGIN_BYTES + 1)));
    }
}
