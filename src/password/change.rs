//! The change flow: throttle → rules → bind with the current password →
//! history → directory write → cache dropped, history kept, confirmation
//! queued, audit line.
//!
//! The only part of `password/` that does I/O (directory, store); the
//! rules it applies are the pure ones in [`super::check`]. Front ends (the
//! self-service page, later the JSON API) call [`PasswordService`] and only
//! format its answers.
//!
//! Must not: tell a wrong current password from an unknown login (one
//! generic refusal, and an argon2 verification either way so timing
//! agrees); check history before the current password is proven (history
//! is private); log or store any password in the clear.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use super::check::{check, requirements, Facts, Report, Verdict};
use super::{history, Candidate, UserContext};
use crate::config::password::ExpiredChange;
use crate::config::{PasswordSettings, ReminderSettings};
use crate::directory::{BindOutcome, ChangeOptions, ChangeOutcome, ChangeRefusal, DirectoryError, RejectReason};
use crate::identity::{AccountStatus, Identity, IdentityCache, Login};
use crate::mailer::Mailer;
use crate::store::{Store, StoreError};

/// Attempt windows for the page's own rate limits.
const WINDOW: Duration = Duration::from_secs(3600);
/// How many confirmation mails wait in the outbox at most.
const OUTBOX_KEEP: usize = 10_000;
/// Records kept in the store's admin audit log (the oldest go first).
pub const AUDIT_KEEP: usize = 100_000;
/// Store log read by the mailer; stable name.
pub const OUTBOX_LOG: &str = "outbox";
/// Store log of password changes and administrators' actions (unlocks);
/// stable name, shared by every instance on the store.
pub const AUDIT_LOG: &str = "audit";
/// The AUTH core's failure counters (`auth::throttle`, stable key
/// prefixes): wrong current passwords on the page count there too, and a
/// login already throttled for SMTP AUTH is throttled here, so guessing
/// through the page gains nothing (RELIABILITY W3).
const AUTH_FAIL_LOGIN: &str = "auth:fail:login:";
const AUTH_FAIL_CLIENT: &str = "auth:fail:client:";

/// Called with the canonical login after every successful change, e.g. to
/// drop the AUTH core's credential cache entry.
pub type ChangeListener = Arc<dyn Fn(&Login) + Send + Sync>;

/// The flow could not run: a *temporary* failure, never a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this client or for this login.
    Throttled,
    /// Wrong current password or unknown login: one message for both.
    WrongCredentials,
    /// The new password breaks rules of the user's policy.
    Policy(Report),
    /// The directory refused (ppolicy, account state).
    Directory(ChangeRefusal),
}

/// The answer to one change request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeResult {
    Changed,
    Refused(Refusal),
}

/// What the page lists for a login before anything is typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub policy: String,
    pub rules: Vec<Verdict>,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct PasswordService {
    identities: IdentityCache,
    store: Arc<dyn Store>,
    settings: PasswordSettings,
    public_base_url: String,
    mailer: Option<Arc<Mailer>>,
    /// For the time zone of the confirmation mail.
    reminders: Option<ReminderSettings>,
    listeners: Vec<ChangeListener>,
}

/// One change as submitted.
pub struct ChangeRequest<'a> {
    pub login: &'a str,
    pub current: &'a SecretString,
    pub new: &'a SecretString,
    pub client: Option<IpAddr>,
}

impl PasswordService {
    pub fn new(
        identities: IdentityCache,
        store: Arc<dyn Store>,
        settings: PasswordSettings,
        public_base_url: String,
    ) -> Self {
        Self { identities, store, settings, public_base_url, mailer: None, reminders: None, listeners: Vec::new() }
    }

    /// Whether a successful change is confirmed by mail.
    pub fn sends_confirmations(&self) -> bool {
        self.mailer.is_some()
    }

    /// Sends confirmations with `mailer` (times in the reminders' time
    /// zone, else UTC); without one they are queued in the store.
    pub fn with_mailer(mut self, mailer: Option<Arc<Mailer>>, reminders: Option<ReminderSettings>) -> Self {
        self.mailer = mailer;
        self.reminders = reminders;
        self
    }

    /// Registers a listener run after every successful change (the AUTH
    /// core registers its credential-cache `forget` here).
    pub fn on_change(mut self, listener: ChangeListener) -> Self {
        self.listeners.push(listener);
        self
    }

    pub fn settings(&self) -> &PasswordSettings {
        &self.settings
    }

    /// The rules of the policy that applies to `login` (the default one
    /// for unknown logins or when the directory cannot answer).
    pub async fn rules_for(&self, login: &str) -> Rules {
        let who = self.known(login).await;
        let policy = self.settings.policies.for_identity(who.as_deref());
        Rules { policy: policy.name.to_string(), rules: requirements(policy) }
    }

    /// The live check: every rule but history, and zxcvbn's advice.
    pub async fn live_check(&self, login: &str, candidate: &str, now: OffsetDateTime) -> Report {
        let who = self.known(login).await;
        let policy = self.settings.policies.for_identity(who.as_deref());
        let context = who.as_deref().map_or_else(|| UserContext::from_login(login), UserContext::from_identity);
        let facts = Facts {
            context: &context,
            blocklist: &self.settings.blocklist,
            history: None,
            changed_at: None,
            forced: false,
            now,
        };
        check(policy, Candidate(candidate), &facts)
    }

    /// Every rule, history included, as an administrator asks it
    /// (`mailwarrant password-check`). `Ok(None)`: no such login.
    pub async fn admin_check(
        &self,
        login: &str,
        candidate: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Report>, ChangeError> {
        let Some(who) = self.identities.get(login).await? else { return Ok(None) };
        let policy = self.settings.policies.for_identity(Some(&who));
        let context = UserContext::from_identity(&who);
        let entries = match self.store.get(&history::store_key(who.login.as_str())).await? {
            Some(bytes) => history::decode(&bytes),
            None => Vec::new(),
        };
        let status = who.account.status(now);
        let facts = Facts {
            context: &context,
            blocklist: &self.settings.blocklist,
            history: Some(&entries),
            changed_at: who.account.password_changed_at,
            forced: matches!(status, AccountStatus::PasswordExpired | AccountStatus::MustChangePassword),
            now,
        };
        Ok(Some(check(policy, Candidate(candidate), &facts)))
    }

    async fn known(&self, login: &str) -> Option<Arc<Identity>> {
        if login.trim().is_empty() {
            return None;
        }
        self.identities.get(login).await.ok().flatten()
    }

    /// Runs the whole change flow.
    pub async fn change(&self, req: &ChangeRequest<'_>, now: OffsetDateTime) -> Result<ChangeResult, ChangeError> {
        let login_key = req.login.trim().to_lowercase();
        if self.throttled(&login_key, req.client).await? {
            self.audit("throttled", &login_key, req.client, None).await;
            return Ok(ChangeResult::Refused(Refusal::Throttled));
        }
        let Some(who) = self.identities.get(req.login).await? else {
            equalize_timing(req.current).await;
            self.audit("refused", &login_key, req.client, Some("unknown_login")).await;
            return Ok(ChangeResult::Refused(Refusal::WrongCredentials));
        };
        let shared = self.store.counter(&format!("{AUTH_FAIL_LOGIN}{}", who.login)).await?;
        if shared >= i64::from(self.settings.attempts_per_login_per_hour) {
            self.audit("throttled", who.login.as_str(), req.client, Some("auth_failures")).await;
            return Ok(ChangeResult::Refused(Refusal::Throttled));
        }
        let status = who.account.status(now);
        let forced = matches!(status, AccountStatus::PasswordExpired | AccountStatus::MustChangePassword);
        let policy = self.settings.policies.for_identity(Some(&who)).clone();
        let context = UserContext::from_identity(&who);
        let new = req.new.expose_secret();
        let mut facts = Facts {
            context: &context,
            blocklist: &self.settings.blocklist,
            history: None,
            changed_at: who.account.password_changed_at,
            forced,
            now,
        };
        // Rules that reveal nothing private first: a weak password costs
        // no bind (and no ppolicy grace login).
        let report = check(&policy, Candidate(new), &facts);
        if !report.accepted() {
            self.audit("refused", who.login.as_str(), req.client, Some("policy")).await;
            return Ok(ChangeResult::Refused(Refusal::Policy(report)));
        }
        match self.identities.directory().authenticate(&who, req.current).await? {
            BindOutcome::Accepted { .. }
            | BindOutcome::Rejected(RejectReason::PasswordExpired | RejectReason::MustChangePassword) => {}
            BindOutcome::Rejected(RejectReason::InvalidCredentials | RejectReason::EmptyPassword) => {
                self.record_failure(who.login.as_str(), req.client).await?;
                self.audit("refused", who.login.as_str(), req.client, Some("wrong_current_password")).await;
                return Ok(ChangeResult::Refused(Refusal::WrongCredentials));
            }
            BindOutcome::Rejected(RejectReason::AccountLocked) => {
                return self.refuse(&who, req.client, ChangeRefusal::AccountLocked).await;
            }
            BindOutcome::Rejected(RejectReason::AccountDisabled) => {
                return self.refuse(&who, req.client, ChangeRefusal::AccountDisabled).await;
            }
        }
        let history_key = history::store_key(who.login.as_str());
        let entries = match self.store.get(&history_key).await? {
            Some(bytes) => history::decode(&bytes),
            None => Vec::new(),
        };
        if policy.history > 0 {
            facts.history = Some(&entries);
            let report = check(&policy, Candidate(new), &facts);
            if !report.accepted() {
                self.audit("refused", who.login.as_str(), req.client, Some("history")).await;
                return Ok(ChangeResult::Refused(Refusal::Policy(report)));
            }
        }
        let options = ChangeOptions {
            expired_via_service_account: self.settings.expired_change == ExpiredChange::ServiceAccount,
        };
        match self.identities.directory().change_password(&who, req.current, req.new, &options).await? {
            ChangeOutcome::Changed => {}
            ChangeOutcome::Refused(ChangeRefusal::InvalidCredentials) => {
                self.record_failure(who.login.as_str(), req.client).await?;
                self.audit("refused", who.login.as_str(), req.client, Some("wrong_current_password")).await;
                return Ok(ChangeResult::Refused(Refusal::WrongCredentials));
            }
            ChangeOutcome::Refused(reason) => return self.refuse(&who, req.client, reason).await,
        }
        self.after_change(&who, req, entries, policy.history, now).await;
        Ok(ChangeResult::Changed)
    }

    /// Everything after a successful write. The password is changed
    /// whatever happens here, so failures are logged, not returned.
    async fn after_change(
        &self,
        who: &Identity,
        req: &ChangeRequest<'_>,
        entries: Vec<String>,
        keep: usize,
        now: OffsetDateTime,
    ) {
        self.identities.forget(req.login);
        self.identities.forget(who.login.as_str());
        for listener in &self.listeners {
            listener(&who.login);
        }
        if keep > 0 {
            let new = req.new.clone();
            let hashed = tokio::task::spawn_blocking(move || history::hash(new.expose_secret())).await;
            match hashed {
                Ok(Ok(entry)) => {
                    let entries = history::push(entries, entry, keep);
                    let key = history::store_key(who.login.as_str());
                    if let Err(e) = self.store.set(&key, &history::encode(&entries), None).await {
                        tracing::error!(login = %who.login, error = %e, "password history not recorded");
                    }
                }
                _ => tracing::error!(login = %who.login, "password history entry could not be hashed"),
            }
        }
        let _ = self.store.delete(&failure_key("login", who.login.as_str())).await;
        self.queue_confirmation(who, now).await;
        self.audit("changed", who.login.as_str(), req.client, None).await;
    }

    /// Sends the confirmation mail (ASVS 6.3.6) in the background, so the
    /// page does not wait on SMTP; without a mailer, or when sending
    /// fails, it is queued in the store's outbox.
    async fn queue_confirmation(&self, who: &Identity, now: OffsetDateTime) {
        let Some(to) = who.primary_address.clone() else {
            tracing::warn!(login = %who.login, "no mail address: no confirmation sent");
            return;
        };
        if let Some(mailer) = self.mailer.clone() {
            let (changed_at, time_zone) = match &self.reminders {
                Some(r) => (crate::reminders::run::local_time(now, r), r.time_zone_name.clone()),
                None => (utc_minutes(now), "UTC".to_owned()),
            };
            let context = serde_json::json!({
                "display_name": who.display_name,
                "login": who.login.as_str(),
                "changed_at": changed_at,
                "time_zone": time_zone,
                "self_service_url": format!("{}/password", self.public_base_url),
            });
            let (me, who) = (self.clone(), who.clone());
            tokio::spawn(async move {
                match mailer.send(&to, Some(&who.display_name), "password-changed", &context).await {
                    Ok(()) => tracing::info!(login = %who.login, "password change confirmation sent"),
                    Err(e) => {
                        tracing::warn!(login = %who.login, error = %e, "confirmation not sent; queued instead");
                        me.queue_in_store(&who, &to, now).await;
                    }
                }
            });
            return;
        }
        self.queue_in_store(who, &to, now).await;
    }

    async fn queue_in_store(&self, who: &Identity, to: &crate::identity::Address, now: OffsetDateTime) {
        let body = confirmation_body(&who.display_name, who.login.as_str(), now, &self.public_base_url);
        let mail = serde_json::json!({
            "kind": "password_changed",
            "to": to.as_str(),
            "subject": "Your mail password was changed",
            "body": body,
            "queued_at": now.unix_timestamp(),
        });
        if let Err(e) = self.store.append(OUTBOX_LOG, mail.to_string().as_bytes(), OUTBOX_KEEP).await {
            tracing::error!(login = %who.login, error = %e, "confirmation mail not queued");
        }
    }

    async fn refuse(
        &self,
        who: &Identity,
        client: Option<IpAddr>,
        reason: ChangeRefusal,
    ) -> Result<ChangeResult, ChangeError> {
        let detail = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned));
        self.audit("refused", who.login.as_str(), client, detail.as_deref()).await;
        Ok(ChangeResult::Refused(Refusal::Directory(reason)))
    }

    /// Counts the attempt; true when a limit is already reached.
    async fn throttled(&self, login_key: &str, client: Option<IpAddr>) -> Result<bool, StoreError> {
        let by_login = self.store.incr(&attempt_key("login", login_key), 1, WINDOW).await?;
        let failures = self.store.counter(&failure_key("login", login_key)).await?;
        let mut over = by_login > i64::from(self.settings.attempts_per_login_per_hour)
            || failures >= i64::from(self.settings.attempts_per_login_per_hour);
        if let Some(ip) = client {
            let by_client = self.store.incr(&attempt_key("client", &ip.to_string()), 1, WINDOW).await?;
            over |= by_client > i64::from(self.settings.changes_per_client_per_hour);
        }
        Ok(over)
    }

    async fn record_failure(&self, login: &str, client: Option<IpAddr>) -> Result<(), StoreError> {
        self.store.incr(&failure_key("login", &login.to_lowercase()), 1, WINDOW).await?;
        self.store.incr(&format!("{AUTH_FAIL_LOGIN}{login}"), 1, WINDOW).await?;
        if let Some(ip) = client {
            self.store.incr(&failure_key("client", &ip.to_string()), 1, WINDOW).await?;
            self.store.incr(&format!("{AUTH_FAIL_CLIENT}{}", auth_client_key(ip)), 1, WINDOW).await?;
        }
        Ok(())
    }

    /// One audit line: exact for admins, never a password.
    async fn audit(&self, event: &str, login: &str, client: Option<IpAddr>, reason: Option<&str>) {
        let client = client.map(|c| c.to_string());
        tracing::info!(target: "audit", event = %format!("password.{event}"), login, client = ?client, reason = ?reason);
        let record = serde_json::json!({
            "event": format!("password.{event}"),
            "login": login,
            "client": client,
            "reason": reason,
            "at": OffsetDateTime::now_utc().unix_timestamp(),
        });
        if let Err(e) = self.store.append(AUDIT_LOG, record.to_string().as_bytes(), AUDIT_KEEP).await {
            tracing::error!(error = %e, "audit record not stored");
        }
    }
}

/// As `auth::throttle` keys clients: IPv4 as is, IPv6 per /64.
fn auth_client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn attempt_key(kind: &str, who: &str) -> String {
    format!("password:attempts:{kind}:{who}")
}

fn failure_key(kind: &str, who: &str) -> String {
    format!("password:fail:{kind}:{who}")
}

/// The confirmation text. The link comes from `public_base_url`, never
/// from a request header (RELIABILITY T21).
pub fn confirmation_body(name: &str, login: &str, at: OffsetDateTime, base_url: &str) -> String {
    format!(
        "Hello {name},\n\nthe mail password of the account {login} was changed on {} UTC.\n\n\
         If you did not change it, contact your helpdesk at once.\n\
         You can change your password at {base_url}/password\n",
        utc_minutes(at)
    )
}

/// `2026-11-27 12:00`, in UTC.
fn utc_minutes(at: OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

/// An argon2 verification against a fixed hash, so an unknown login
/// takes as long as a known one (ASVS 6.3.8).
async fn equalize_timing(password: &SecretString) {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$OTgxfNw+a7TXejJ9Hdtd7g$Ub7yuZ65jRzOFVjSqz+85E7aPcc08WZ3smv7fTvI4i8";
    let password = password.clone();
    let _ =
        tokio::task::spawn_blocking(move || history::contains(&[DUMMY.to_owned()], 1, password.expose_secret())).await;
}
