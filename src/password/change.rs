//! The change flow: client limit → the current password proven by the AUTH
//! core → the user's rules → history → directory write → cache dropped,
//! history kept, confirmation queued, audit line.
//!
//! The only part of `password/` that does I/O (directory, store); the
//! rules it applies are the pure ones in [`super::check`]. Front ends (the
//! self-service page, later the JSON API) call [`PasswordService`] and only
//! format its answers.
//!
//! The current password is proven by [`Authenticator::authenticate`], the
//! same decision SMTP AUTH gets: the same failure budgets (so guessing
//! through the page gains nothing over guessing through SMTP), the same
//! failure delay, and one generic answer for an unknown login, a wrong
//! password, and a disabled or locked account.
//!
//! Must not: show anything private (the user's own policy, history,
//! account state) before the current password is proven; log or store any
//! password in the clear.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use super::check::{check, requirements, Facts, Report, Verdict};
use super::{history, Candidate, UserContext};
use crate::auth::{AuthRequest, Authenticator, DecisionKind, Protocol};
use crate::config::password::ExpiredChange;
use crate::config::{PasswordSettings, ReminderSettings};
use crate::directory::{ChangeOptions, ChangeOutcome, ChangeRefusal, DirectoryError};
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
    /// The AUTH core could not prove the current password (directory or
    /// store down).
    #[error("the current password cannot be checked now")]
    Unproven,
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
    /// Proves the current password (budgets, delay, generic answers).
    auth: Arc<Authenticator>,
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
        auth: Arc<Authenticator>,
    ) -> Self {
        Self {
            identities,
            store,
            settings,
            public_base_url,
            mailer: None,
            auth,
            reminders: None,
            listeners: Vec::new(),
        }
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

    /// The rules shown before the current password is proven: the
    /// default policy's, the same for every login, so the page does not
    /// tell who exists or which groups they are in. The user's own policy
    /// applies when the change is submitted, after the proof.
    pub fn rules(&self) -> Rules {
        let policy = self.settings.policies.for_identity(None);
        Rules { policy: policy.name.to_string(), rules: requirements(policy) }
    }

    /// The live check: the default policy's rules but history, and
    /// zxcvbn's advice with the words of the typed login (not of the
    /// directory entry: that would tell the entry exists).
    pub fn live_check(&self, login: &str, candidate: &str, now: OffsetDateTime) -> Report {
        let policy = self.settings.policies.for_identity(None);
        let context = UserContext::from_login(login);
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

    /// Runs the whole change flow.
    pub async fn change(&self, req: &ChangeRequest<'_>, now: OffsetDateTime) -> Result<ChangeResult, ChangeError> {
        let login_key = req.login.trim().to_lowercase();
        if self.throttled(&login_key, req.client).await? {
            self.audit("throttled", &login_key, req.client, Some("page_attempts")).await;
            return Ok(ChangeResult::Refused(Refusal::Throttled));
        }
        let proof = self
            .auth
            .authenticate(AuthRequest {
                login: req.login.to_owned(),
                authzid: None,
                password: req.current.clone(),
                client: req.client,
                protocol: Protocol::PasswordPage,
            })
            .await;
        let proven = match (proof.kind, &proof.login) {
            // An expired password is right, and is exactly what the page
            // is for.
            (DecisionKind::Accepted | DecisionKind::PasswordExpired, Some(login)) => login.clone(),
            (DecisionKind::Temporary, _) if proof.is_throttled() => {
                proof.wait().await;
                self.audit("throttled", &login_key, req.client, Some(proof.reason.as_str())).await;
                return Ok(ChangeResult::Refused(Refusal::Throttled));
            }
            (DecisionKind::Temporary, _) => return Err(ChangeError::Unproven),
            // Unknown, wrong, disabled, locked: one answer, after the delay.
            _ => {
                proof.wait().await;
                self.audit("refused", &login_key, req.client, Some(proof.reason.as_str())).await;
                return Ok(ChangeResult::Refused(Refusal::WrongCredentials));
            }
        };
        let Some(who) = self.identities.get(proven.as_str()).await? else {
            return Err(ChangeError::Unproven);
        };
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

    /// Counts the attempt; true when a limit is already reached. The
    /// client is counted first, so one client cannot make the store keep
    /// a counter per invented login past its own limit.
    async fn throttled(&self, login_key: &str, client: Option<IpAddr>) -> Result<bool, StoreError> {
        if let Some(ip) = client {
            let network = crate::auth::throttle::network(ip);
            let by_client = self.store.incr(&attempt_key("client", &network), 1, WINDOW).await?;
            if by_client > i64::from(self.settings.changes_per_client_per_hour) {
                return Ok(true);
            }
        }
        let by_login = self.store.incr(&attempt_key("login", login_key), 1, WINDOW).await?;
        Ok(by_login > i64::from(self.settings.attempts_per_login_per_hour))
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

fn attempt_key(kind: &str, who: &str) -> String {
    format!("password:attempts:{kind}:{who}")
}

/// The confirmation text. The link comes from `public_base_url`, never
/// from a request header (docs/threat-model.md T21).
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
