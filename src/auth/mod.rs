//! The AUTH decision: one function every front end calls.
//!
//! ```text
//! typed login ─► normalise ─► identity (cached) ─► credential cache ─► right: source budget left? ─► accept
//!                                  │ unknown,              │ same wrong password as before ─► refuse (not counted)
//!                                  │ disabled, locked      ▼ not known to be right
//!                                  └──────────────► reserve a failure budget (atomic, in the store)
//!                                                          │ spent ─► try later
//!                                                          ▼
//!                                           directory bind (or the same cost, unchecked)
//!                                                          │ right ─► budget handed back ─► account state
//!                                                          ▼
//!                                                    AuthDecision + audit line
//! ```
//!
//! A right password the credential cache holds is accepted while the
//! login's budget is spent (nothing reaches the directory, so there is no
//! lockout risk): guessing from elsewhere cannot lock the user out. An
//! unknown, disabled or locked login goes through the same budgets and
//! the same steps as a wrong password, so neither the bytes nor the count
//! of answers before "try later" tell whether it exists.
//!
//! Front ends (Dovecot auth, saslauthd, HTTP) only parse and format; they
//! never decide. What must never happen here:
//! - an empty password reaching the directory (an unauthenticated bind
//!   "succeeds");
//! - a directory or store outage answered as "wrong password" (it is a
//!   [`DecisionKind::Temporary`]);
//! - a refusal that tells a stranger whether the user exists: unknown
//!   user, wrong password, disabled and locked all read the same and take
//!   the same time (the failure delay runs from the request's arrival);
//! - a password or SASL payload in a log line.

pub mod audit;
pub mod credentials;
pub mod throttle;
pub mod unlock;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::audit_log::AuditLog;
use crate::config::auth::AuthSettings;
use crate::directory::{BindOutcome, RejectReason};
use crate::identity::{AccountStatus, Identity, IdentityCache, Login, LookupKey};
use crate::store::local::LocalCounters;
use crate::store::{Store, StoreError};
use credentials::{CredentialCache, Recall};
use throttle::{Budget, Limit, Reservation, Throttle};

/// Longest login accepted (bytes); longer ones are refused unread.
pub const MAX_LOGIN_LEN: usize = 256;
/// Longest password accepted (bytes).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Which front end asked; for the audit line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    DovecotAuth,
    Saslauthd,
    Http,
    /// The self-service page proving a current password.
    PasswordPage,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::DovecotAuth => "dovecot_auth",
            Protocol::Saslauthd => "saslauthd",
            Protocol::Http => "http",
            Protocol::PasswordPage => "password_page",
        }
    }
}

/// One AUTH attempt as a front end decoded it.
pub struct AuthRequest {
    /// What the client typed as the login (SASL authcid).
    pub login: String,
    /// SASL authzid, when the client sent a non-empty one.
    pub authzid: Option<String>,
    pub password: SecretString,
    pub client: Option<IpAddr>,
    pub protocol: Protocol,
}

/// What the client is told, in protocol-neutral terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Accepted,
    /// The generic refusal: says nothing about why.
    Refused,
    /// Right password, but it expired or must be changed: the reply names
    /// the self-service page.
    PasswordExpired,
    /// Right password on a disabled account.
    Disabled,
    /// The client asked to act as someone else (SASL authzid).
    AuthzRefused,
    /// Try again later: directory or store down, or throttled.
    Temporary,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Accepted => "accepted",
            DecisionKind::Refused => "refused",
            DecisionKind::PasswordExpired => "password_expired",
            DecisionKind::Disabled => "disabled",
            DecisionKind::AuthzRefused => "authz_refused",
            DecisionKind::Temporary => "temporary",
        }
    }
}

/// Why: exact, for the audit log and `explain`; never sent to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The directory accepted the bind.
    Verified,
    /// The credential cache holds this password as right.
    Cached,
    /// Directory down; the password was verified within the grace period.
    CachedDuringOutage,
    InvalidCredentials,
    /// The same wrong password was refused recently: not asked again.
    RepeatedFailure,
    /// Not the cached right password, moments after the directory refused
    /// another one: not asked again (`auth.cache.mismatch_ttl`).
    PasswordMismatch,
    UnknownUser,
    EmptyPassword,
    /// Empty, too long, or with control characters.
    MalformedLogin,
    PasswordTooLong,
    AuthzidMismatch,
    AccountDisabled,
    AccountLocked,
    PasswordExpired,
    MustChangePassword,
    TooManyFailuresForLogin,
    TooManyFailuresForLoginFromClient,
    TooManyFailuresFromClient,
    DirectoryUnavailable,
    StoreUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Verified => "verified",
            Reason::Cached => "cached",
            Reason::CachedDuringOutage => "cached_during_outage",
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::RepeatedFailure => "repeated_failure",
            Reason::PasswordMismatch => "password_mismatch",
            Reason::UnknownUser => "unknown_user",
            Reason::EmptyPassword => "empty_password",
            Reason::MalformedLogin => "malformed_login",
            Reason::PasswordTooLong => "password_too_long",
            Reason::AuthzidMismatch => "authzid_mismatch",
            Reason::AccountDisabled => "account_disabled",
            Reason::AccountLocked => "account_locked",
            Reason::PasswordExpired => "password_expired",
            Reason::MustChangePassword => "must_change_password",
            Reason::TooManyFailuresForLogin => "too_many_failures_for_login",
            Reason::TooManyFailuresForLoginFromClient => "too_many_failures_for_login_from_client",
            Reason::TooManyFailuresFromClient => "too_many_failures_from_client",
            Reason::DirectoryUnavailable => "directory_unavailable",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }
}

/// The verdict, with what to tell the client and when.
#[derive(Clone, Debug)]
pub struct AuthDecision {
    pub kind: DecisionKind,
    pub reason: Reason,
    /// The canonical login: set when accepted, and when the password was
    /// right but the account refused.
    pub login: Option<Login>,
    /// The text for the client (empty when accepted).
    pub reply_text: String,
    /// Do not answer before this instant (failure delay).
    pub not_before: Option<Instant>,
}

impl AuthDecision {
    pub fn is_accepted(&self) -> bool {
        self.kind == DecisionKind::Accepted
    }

    /// Refused because a failure budget is spent (a temporary answer).
    pub fn is_throttled(&self) -> bool {
        is_throttle(self.reason)
    }

    /// When a client told "try later" should try again: throttles free a
    /// unit only after a quiet while, outages usually pass sooner.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            DecisionKind::Temporary if self.is_throttled() => Some(Duration::from_secs(60)),
            DecisionKind::Temporary => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// Waits out the failure delay. An async timer: no worker or lock is
    /// held meanwhile.
    pub async fn wait(&self) {
        if let Some(at) = self.not_before {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// Everything the decision needs; shared by all front ends.
pub struct Authenticator {
    identities: IdentityCache,
    audit: AuditLog,
    store: Arc<dyn Store>,
    /// The failure budgets' fallback while the store is down; kept across
    /// reloads.
    local: Arc<LocalCounters>,
    state: RwLock<Arc<State>>,
}

/// What a reload replaces.
struct State {
    settings: AuthSettings,
    credentials: CredentialCache,
    throttle: Throttle,
}

impl State {
    fn new(settings: AuthSettings, store: Arc<dyn Store>, local: Arc<LocalCounters>) -> Self {
        let c = &settings.cache;
        let credentials = CredentialCache::new(c.ttl, c.grace, c.negative_ttl, c.mismatch_ttl, c.capacity);
        let throttle = Throttle::new(store, settings.throttle.clone(), local);
        Self { settings, credentials, throttle }
    }
}

impl Authenticator {
    pub fn new(identities: IdentityCache, store: Arc<dyn Store>, settings: AuthSettings) -> Self {
        let local = Arc::new(LocalCounters::default());
        let state = State::new(settings, store.clone(), local.clone());
        Self { identities, store, local, state: RwLock::new(Arc::new(state)), audit: AuditLog::disabled() }
    }

    /// Writes every decision to the JSON-lines audit log too.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Applies new settings (SIGHUP). Caches start empty, like Dovecot's;
    /// failure counts stay (they are in the store).
    pub fn reload(&self, settings: AuthSettings) {
        let state = Arc::new(State::new(settings, self.store.clone(), self.local.clone()));
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Forgets cached successes and failures of a login (after a password
    /// change through the self-service page).
    pub fn forget(&self, login: &Login) {
        self.state().credentials.forget(login);
        self.identities.forget(login.as_str());
    }

    /// Clears a login's failure budget in the store, so every instance
    /// checks its passwords again (an administrator's unlock). `login` is
    /// resolved through the directory to its canonical form; an unknown
    /// one clears what was counted under the typed name. Returns the key
    /// that was cleared and whether failures were counted against it.
    pub async fn unlock(&self, login: &str) -> Result<(String, bool), StoreError> {
        let key = match self.identities.get(login).await {
            Ok(Some(identity)) => {
                self.state().credentials.forget(&identity.login);
                identity.login.as_str().to_owned()
            }
            _ => LookupKey::new(login).as_str().to_owned(),
        };
        let cleared = self.state().throttle.unlock(&key).await?;
        Ok((key, cleared))
    }

    /// Reads the directory's lockout settings and says what the budgets
    /// cannot keep below them (empty: nothing). `Err` when the directory
    /// cannot be read.
    pub async fn lockout_risks(&self) -> Result<Vec<String>, crate::directory::DirectoryError> {
        let policies = self.identities.directory().lockout_policies().await?;
        Ok(throttle::lockout_risks(&self.state().settings.throttle, &policies))
    }

    /// The failures counted against a login's budget (canonical key).
    pub async fn login_failures(&self, login_key: &str) -> Result<i64, StoreError> {
        self.state().throttle.login_failures(login_key).await
    }

    /// Failures a login may have counted before "try later"
    /// (`[auth.throttle] per_login`), for the admin page.
    pub fn login_budget(&self) -> u32 {
        self.state().settings.throttle.per_login
    }

    /// Remembered successes, for metrics and the benchmark.
    pub fn cached_credentials(&self) -> usize {
        self.state().credentials.len()
    }

    pub fn settings_failure_delay(&self) -> Duration {
        self.state().settings.failure_delay
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Decides one AUTH attempt and writes its audit line.
    pub async fn authenticate(&self, request: AuthRequest) -> AuthDecision {
        let started = Instant::now();
        let state = self.state();
        let decision = self.decide(&state, &request, started).await;
        audit::record(&request.login, request.client, request.protocol, &decision, started.elapsed());
        audit::write_line(&self.audit, &request, &decision, started.elapsed());
        decision
    }

    async fn decide(&self, state: &State, req: &AuthRequest, started: Instant) -> AuthDecision {
        let reply = Reply { state, started };
        if req.login.is_empty() || req.login.len() > MAX_LOGIN_LEN || req.login.chars().any(char::is_control) {
            return reply.refuse(Reason::MalformedLogin, None);
        }
        let password = req.password.expose_secret();
        if password.is_empty() {
            return reply.refuse(Reason::EmptyPassword, None);
        }
        if password.len() > MAX_PASSWORD_LEN {
            return reply.refuse(Reason::PasswordTooLong, None);
        }
        let typed = LookupKey::new(&req.login);
        if typed.as_str().is_empty() {
            return reply.refuse(Reason::MalformedLogin, None);
        }
        if let Some(authzid) = &req.authzid {
            if LookupKey::new(authzid) != typed {
                return reply.build(DecisionKind::AuthzRefused, Reason::AuthzidMismatch, None);
            }
        }

        let identity = match self.identities.get(&req.login).await {
            Ok(Some(identity)) => identity,
            Ok(None) => {
                let unknown = Login::new(typed.as_str());
                return self.unverifiable(state, &unknown, Reason::UnknownUser, req, reply).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "directory unavailable for an AUTH lookup");
                return self.during_outage(state, &typed, password, reply);
            }
        };
        let login = identity.login.clone();

        // Disabled and locked accounts are refused without a bind (no
        // failure counted in the directory), generically, through the
        // same budgets and steps as an unknown login.
        let now = OffsetDateTime::now_utc();
        let unusable = match identity.account.status(now) {
            AccountStatus::Disabled => Some(Reason::AccountDisabled),
            AccountStatus::Locked => Some(Reason::AccountLocked),
            _ => None,
        };
        if let Some(reason) = unusable {
            state.credentials.forget_success(&login);
            return self.unverifiable(state, &login, reason, req, reply).await;
        }

        let verifier = state.credentials.verifier(&login, password.as_bytes());
        let recall = state.credentials.recall(&login, &verifier, started);
        match recall {
            Recall::Fresh => {
                return match state.throttle.source_spent(login.as_str(), req.client).await {
                    Ok(Some(limit)) => reply.throttled(limit),
                    // A proven password needs no budget: during a store
                    // outage it is accepted whatever the outage action.
                    Ok(None) | Err(_) => self.account_checked(state, &identity, now, Reason::Cached, reply),
                };
            }
            Recall::KnownBad => return reply.refuse(Reason::RepeatedFailure, None),
            Recall::Mismatch | Recall::Grace | Recall::Unknown => {}
        }

        let reservation = match state.throttle.reserve(login.as_str(), req.client).await {
            Ok(Budget::Reserved(r)) => r,
            Ok(Budget::Spent(limit)) => return reply.throttled(limit),
            Err(_) => return reply.temporary(Reason::StoreUnavailable),
        };
        if recall == Recall::Mismatch {
            state.credentials.remember_failure(&login, verifier, Instant::now());
            return reply.refuse(Reason::PasswordMismatch, None);
        }

        match self.identities.directory().authenticate(&identity, &req.password).await {
            Ok(BindOutcome::Accepted { .. }) => {
                state.throttle.refund(reservation).await;
                state.credentials.remember_success(&typed, &login, verifier, Instant::now());
                self.account_checked(state, &identity, now, Reason::Verified, reply)
            }
            Ok(BindOutcome::Rejected(why)) => self.rejected(state, &login, verifier, reservation, why, reply).await,
            Err(e) => {
                tracing::warn!(error = %e, "directory unavailable for an AUTH bind");
                state.throttle.refund(reservation).await;
                self.during_outage(state, &typed, password, reply)
            }
        }
    }

    /// After a right password: the account must still be usable.
    fn account_checked(
        &self,
        state: &State,
        identity: &Identity,
        now: OffsetDateTime,
        ok: Reason,
        reply: Reply<'_>,
    ) -> AuthDecision {
        let login = Some(identity.login.clone());
        match identity.account.status(now) {
            AccountStatus::Active => reply.build(DecisionKind::Accepted, ok, login),
            AccountStatus::Disabled => {
                state.credentials.forget(&identity.login);
                reply.build(DecisionKind::Disabled, Reason::AccountDisabled, login)
            }
            AccountStatus::Locked => self.refuse_state(state, &identity.login, Reason::AccountLocked, reply),
            AccountStatus::PasswordExpired => {
                state.credentials.forget(&identity.login);
                reply.build(DecisionKind::PasswordExpired, Reason::PasswordExpired, login)
            }
            AccountStatus::MustChangePassword => {
                state.credentials.forget(&identity.login);
                reply.build(DecisionKind::PasswordExpired, Reason::MustChangePassword, login)
            }
        }
    }

    async fn rejected(
        &self,
        state: &State,
        login: &Login,
        verifier: credentials::Verifier,
        reservation: Reservation,
        why: RejectReason,
        reply: Reply<'_>,
    ) -> AuthDecision {
        let who = Some(login.clone());
        // The directory says these only after a right password: the unit
        // goes back. A wrong password or a lock keeps it.
        let right = matches!(
            why,
            RejectReason::PasswordExpired | RejectReason::MustChangePassword | RejectReason::AccountDisabled
        );
        if right || matches!(why, RejectReason::EmptyPassword) {
            state.throttle.refund(reservation).await;
        }
        match why {
            RejectReason::InvalidCredentials => {
                state.credentials.directory_refused(login, Instant::now());
                state.credentials.remember_failure(login, verifier, Instant::now());
                reply.refuse(Reason::InvalidCredentials, None)
            }
            RejectReason::EmptyPassword => reply.refuse(Reason::EmptyPassword, None),
            RejectReason::PasswordExpired => {
                state.credentials.forget(login);
                reply.build(DecisionKind::PasswordExpired, Reason::PasswordExpired, who)
            }
            RejectReason::MustChangePassword => {
                state.credentials.forget(login);
                reply.build(DecisionKind::PasswordExpired, Reason::MustChangePassword, who)
            }
            RejectReason::AccountDisabled => {
                state.credentials.forget(login);
                reply.build(DecisionKind::Disabled, Reason::AccountDisabled, who)
            }
            RejectReason::AccountLocked => self.refuse_state(state, login, Reason::AccountLocked, reply),
        }
    }

    fn refuse_state(&self, state: &State, login: &Login, reason: Reason, reply: Reply<'_>) -> AuthDecision {
        state.credentials.forget(login);
        reply.refuse(reason, None)
    }

    /// A login whose password is not checked (unknown, disabled, locked):
    /// the same steps, budgets and cost as a wrong password, so nothing
    /// tells it apart. `key` is the canonical login, or the typed one
    /// when unknown.
    async fn unverifiable(
        &self,
        state: &State,
        key: &Login,
        reason: Reason,
        req: &AuthRequest,
        reply: Reply<'_>,
    ) -> AuthDecision {
        let verifier = state.credentials.verifier(key, req.password.expose_secret().as_bytes());
        if state.credentials.recall(key, &verifier, reply.started) == Recall::KnownBad {
            return reply.refuse(reason, None);
        }
        match state.throttle.reserve(key.as_str(), req.client).await {
            Ok(Budget::Reserved(_)) => {}
            Ok(Budget::Spent(limit)) => return reply.throttled(limit),
            Err(_) => return reply.temporary(Reason::StoreUnavailable),
        }
        self.identities.directory().spend_without_checking(&req.password).await;
        state.credentials.remember_failure(key, verifier, Instant::now());
        reply.refuse(reason, None)
    }

    /// The directory cannot answer: a recently verified password still
    /// works (grace), anything else is a temporary failure.
    fn during_outage(&self, state: &State, typed: &LookupKey, password: &str, reply: Reply<'_>) -> AuthDecision {
        if let Some(login) = state.credentials.resolve(typed) {
            let verifier = state.credentials.verifier(&login, password.as_bytes());
            if matches!(state.credentials.recall(&login, &verifier, reply.started), Recall::Fresh | Recall::Grace) {
                return reply.build(DecisionKind::Accepted, Reason::CachedDuringOutage, Some(login));
            }
        }
        reply.temporary(Reason::DirectoryUnavailable)
    }
}

/// Builds decisions with the right text and delay.
#[derive(Clone, Copy)]
struct Reply<'a> {
    state: &'a State,
    started: Instant,
}

impl Reply<'_> {
    fn build(self, kind: DecisionKind, reason: Reason, login: Option<Login>) -> AuthDecision {
        let texts = &self.state.settings.texts;
        let reply_text = match kind {
            DecisionKind::Accepted => String::new(),
            DecisionKind::PasswordExpired => texts.expired.clone(),
            DecisionKind::Temporary if is_throttle(reason) => texts.throttled.clone(),
            DecisionKind::Temporary => texts.temporary.clone(),
            DecisionKind::Refused | DecisionKind::Disabled | DecisionKind::AuthzRefused => texts.failed.clone(),
        };
        // Outages answer at once (the client should retry elsewhere soon);
        // every other refusal waits, counted from arrival.
        let delayed = kind != DecisionKind::Accepted
            && !matches!(reason, Reason::DirectoryUnavailable | Reason::StoreUnavailable);
        let delay = self.state.settings.failure_delay;
        let not_before = (delayed && !delay.is_zero()).then(|| self.started + delay);
        AuthDecision { kind, reason, login, reply_text, not_before }
    }

    fn refuse(self, reason: Reason, login: Option<Login>) -> AuthDecision {
        self.build(DecisionKind::Refused, reason, login)
    }

    fn temporary(self, reason: Reason) -> AuthDecision {
        self.build(DecisionKind::Temporary, reason, None)
    }

    fn throttled(self, limit: Limit) -> AuthDecision {
        let reason = match limit {
            Limit::Login => Reason::TooManyFailuresForLogin,
            Limit::LoginFromClient => Reason::TooManyFailuresForLoginFromClient,
            Limit::Client => Reason::TooManyFailuresFromClient,
        };
        self.temporary(reason)
    }
}

fn is_throttle(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::TooManyFailuresForLogin | Reason::TooManyFailuresForLoginFromClient | Reason::TooManyFailuresFromClient
    )
}
