//! The decision, table-driven over an in-memory directory (fast unit tests
//! of the core; the real slapd runs in `tests/it/auth_*`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::*;
use crate::config::IdentitySettings;
use crate::directory::{AddressOwner, Directory, DirectoryError, DistributionList, Result as DirResult};
use crate::identity::{AccountState, Address};
use crate::store::sqlite::SqliteStore;

/// Users with a password and a state; counts binds and the cost spent on
/// passwords refused unchecked; can be "down".
struct Lab {
    users: HashMap<String, (Identity, String)>,
    binds: AtomicUsize,
    spent: AtomicUsize,
    down: AtomicBool,
}

fn identity(login: &str, account: AccountState) -> Identity {
    Identity {
        login: Login::new(login),
        dn: format!("uid={login},ou=people,dc=example,dc=com"),
        display_name: login.into(),
        primary_address: Address::parse(&format!("{login}@example.com")).ok(),
        aliases: vec![],
        send_as: vec![],
        groups: vec![],
        account,
    }
}

fn lab() -> Lab {
    let now = OffsetDateTime::now_utc();
    let active = AccountState { enabled: true, ..Default::default() };
    let cast = [
        ("alice", active.clone()),
        ("bob", active.clone()),
        ("erin", AccountState { password_expires_at: Some(now - time::Duration::days(1)), ..active.clone() }),
        ("frank", AccountState { locked: true, ..active.clone() }),
        ("grace", AccountState { enabled: false, ..active.clone() }),
        ("heidi", AccountState { must_change: true, ..active.clone() }),
    ];
    let users = cast
        .into_iter()
        .map(|(login, state)| {
            let mut cap = login.to_owned();
            cap[..1].make_ascii_uppercase();
            (login.to_owned(), (identity(login, state), format!("{cap}-Demo-2026!")))
        })
        .collect();
    Lab { users, binds: AtomicUsize::new(0), spent: AtomicUsize::new(0), down: AtomicBool::new(false) }
}

#[async_trait]
impl Directory for Lab {
    async fn lookup(&self, login: &str) -> DirResult<Option<Identity>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unreachable("lab is down".into()));
        }
        let login = login.strip_suffix("@example.com").unwrap_or(login);
        Ok(self.users.get(login).map(|(i, _)| i.clone()))
    }
    async fn lookup_address(&self, _: &Address) -> DirResult<Option<AddressOwner>> {
        Ok(None)
    }
    async fn authenticate(&self, identity: &Identity, password: &SecretString) -> DirResult<BindOutcome> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DirectoryError::Unreachable("lab is down".into()));
        }
        assert!(!password.expose_secret().is_empty(), "an empty password reached the directory");
        self.binds.fetch_add(1, Ordering::SeqCst);
        let (_, right) = &self.users[identity.login.as_str()];
        if password.expose_secret() != right {
            return Ok(BindOutcome::Rejected(RejectReason::InvalidCredentials));
        }
        Ok(match identity.account.status(OffsetDateTime::now_utc()) {
            AccountStatus::PasswordExpired => BindOutcome::Rejected(RejectReason::PasswordExpired),
            _ => BindOutcome::ACCEPTED,
        })
    }
    async fn spend_without_checking(&self, _: &SecretString) {
        self.spent.fetch_add(1, Ordering::SeqCst);
    }
    async fn distribution_lists(&self) -> DirResult<Vec<DistributionList>> {
        Ok(vec![])
    }
    async fn list_users(&self) -> DirResult<Vec<crate::directory::UserSummary>> {
        Ok(vec![])
    }
    async fn check_health(&self) -> DirResult<()> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "lab"
    }
}

/// The embedded store that can be switched off, as a Redis outage would.
struct Switchable {
    inner: SqliteStore,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> crate::store::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(crate::store::StoreError::Unavailable("switched off".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Switchable {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> crate::store::Result<i64> {
        self.check()?;
        self.inner.incr(key, delta, ttl).await
    }
    async fn incr_within(
        &self,
        once: Option<(&str, Duration)>,
        increments: &[crate::store::Increment],
    ) -> crate::store::Result<crate::store::ChargeOutcome> {
        self.check()?;
        self.inner.incr_within(once, increments).await
    }
    async fn counter(&self, key: &str) -> crate::store::Result<i64> {
        self.check()?;
        self.inner.counter(key).await
    }
    async fn counter_with_ttl(&self, key: &str) -> crate::store::Result<Option<(i64, Duration)>> {
        self.check()?;
        self.inner.counter_with_ttl(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> crate::store::Result<()> {
        self.check()?;
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> crate::store::Result<bool> {
        self.check()?;
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn get(&self, key: &str) -> crate::store::Result<Option<Vec<u8>>> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> crate::store::Result<bool> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn append(&self, log: &str, record: &[u8], keep: usize) -> crate::store::Result<()> {
        self.check()?;
        self.inner.append(log, record, keep).await
    }
    async fn tail(&self, log: &str, limit: usize) -> crate::store::Result<Vec<Vec<u8>>> {
        self.check()?;
        self.inner.tail(log, limit).await
    }
    async fn check_health(&self) -> crate::store::Result<()> {
        self.check()
    }
}

struct Fixture {
    auth: Authenticator,
    store: Arc<Switchable>,
    lab: Arc<Lab>,
    identities: IdentityCache,
    _dir: tempfile::TempDir,
}

fn fixture(tune: impl FnOnce(&mut AuthSettings)) -> Fixture {
    let lab = Arc::new(lab());
    let identity_settings = IdentitySettings {
        cache_ttl: Duration::from_secs(300),
        negative_ttl: Duration::from_secs(60),
        refresh_after: Duration::from_secs(240),
        capacity: 1000,
    };
    let identities = IdentityCache::new(lab.clone(), identity_settings);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Switchable {
        inner: SqliteStore::open(&dir.path().join("s.sqlite")).unwrap(),
        down: AtomicBool::new(false),
    });
    let mut settings = AuthSettings { failure_delay: Duration::ZERO, ..Default::default() };
    settings.texts.expired = "Password expired: change it at https://mail.example.com/password".into();
    tune(&mut settings);
    let auth = Authenticator::new(identities.clone(), store.clone(), settings);
    Fixture { auth, store, lab, identities, _dir: dir }
}

fn request(login: &str, password: &str, client: &str) -> AuthRequest {
    AuthRequest {
        login: login.into(),
        authzid: None,
        password: SecretString::from(password.to_owned()),
        client: client.parse().ok(),
        protocol: Protocol::DovecotAuth,
    }
}

async fn check(f: &Fixture, login: &str, password: &str, expected: (DecisionKind, Reason, Option<&str>)) {
    let d = f.auth.authenticate(request(login, password, "192.0.2.1")).await;
    let got = (d.kind, d.reason, d.login.as_ref().map(|l| l.as_str().to_owned()));
    assert_eq!(
        got,
        (expected.0, expected.1, expected.2.map(str::to_owned)),
        "{login:?} / password #{}",
        password.len()
    );
}

#[tokio::test]
async fn each_account_state_gets_its_reason() {
    use DecisionKind::*;
    let f = fixture(|_| {});
    check(&f, "alice", "Alice-Demo-2026!", (Accepted, Reason::Verified, Some("alice"))).await;
    check(&f, "ALICE", "Alice-Demo-2026!", (Accepted, Reason::Cached, Some("alice"))).await;
    check(&f, "alice@example.com", "Alice-Demo-2026!", (Accepted, Reason::Cached, Some("alice"))).await;
    check(&f, "alice", "wrong", (Refused, Reason::InvalidCredentials, None)).await;
    check(&f, "nobody", "whatever", (Refused, Reason::UnknownUser, None)).await;
    check(&f, "erin", "Erin-Demo-2026!", (PasswordExpired, Reason::PasswordExpired, Some("erin"))).await;
    check(&f, "erin", "wrong", (Refused, Reason::InvalidCredentials, None)).await;
    check(&f, "frank", "Frank-Demo-2026!", (Refused, Reason::AccountLocked, None)).await;
    check(&f, "grace", "Grace-Demo-2026!", (Refused, Reason::AccountDisabled, None)).await;
    check(&f, "heidi", "Heidi-Demo-2026!", (PasswordExpired, Reason::MustChangePassword, Some("heidi"))).await;
    check(&f, "alice", "", (Refused, Reason::EmptyPassword, None)).await;
    check(&f, "", "x", (Refused, Reason::MalformedLogin, None)).await;
    check(&f, "al\nice", "x", (Refused, Reason::MalformedLogin, None)).await;
    check(&f, "   ", "x", (Refused, Reason::MalformedLogin, None)).await;
}

/// Whatever is refused without its password being checked (an unknown
/// login, a disabled or locked account) costs what a check would, so that
/// under load past the delay floor it does not answer sooner than a wrong
/// password (docs/testing.md S3).
#[tokio::test]
async fn passwords_refused_unchecked_cost_what_a_check_costs() {
    let f = fixture(|_| {});
    for (login, binds, spent) in [("alice", 1, 0), ("nobody", 1, 1), ("frank", 1, 2), ("grace", 1, 3)] {
        f.auth.authenticate(request(login, "Wrong-Password-1", "192.0.2.1")).await;
        assert_eq!(f.lab.binds.load(Ordering::SeqCst), binds, "{login}: binds");
        assert_eq!(f.lab.spent.load(Ordering::SeqCst), spent, "{login}: spent unchecked");
    }
}

#[tokio::test]
async fn degenerate_passwords_are_refused_generically() {
    let f = fixture(|_| {});
    for pw in ["", "\0", "   ", "null"] {
        let d = f.auth.authenticate(request("alice", pw, "192.0.2.2")).await;
        assert_eq!(d.kind, DecisionKind::Refused, "{pw:?}");
        assert_eq!(d.reply_text, "Authentication failed");
    }
}

#[tokio::test]
async fn expiry_reply_names_the_page_and_others_say_nothing() {
    let f = fixture(|_| {});
    let expired = f.auth.authenticate(request("erin", "Erin-Demo-2026!", "192.0.2.3")).await;
    assert!(expired.reply_text.contains("https://mail.example.com/password"));
    for (l, p) in [("nobody", "x"), ("alice", "x"), ("frank", "x"), ("frank", "Frank-Demo-2026!")] {
        let d = f.auth.authenticate(request(l, p, "192.0.2.4")).await;
        assert_eq!((d.kind, d.reply_text.as_str()), (DecisionKind::Refused, "Authentication failed"), "{l}");
    }
}

#[tokio::test]
async fn an_authzid_other_than_the_login_is_refused() {
    let f = fixture(|_| {});
    let mut r = request("alice", "Alice-Demo-2026!", "192.0.2.5");
    r.authzid = Some("bob".into());
    assert_eq!(f.auth.authenticate(r).await.kind, DecisionKind::AuthzRefused);
    let mut r = request("alice", "Alice-Demo-2026!", "192.0.2.5");
    r.authzid = Some("Alice".into());
    assert_eq!(f.auth.authenticate(r).await.kind, DecisionKind::Accepted);
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), 1, "the refused authzid never reached the directory");
}

#[tokio::test]
async fn the_same_wrong_password_reaches_the_directory_once() {
    let f = fixture(|_| {});
    check(&f, "bob", "Bob-Old-2025!", (DecisionKind::Refused, Reason::InvalidCredentials, None)).await;
    for _ in 0..20 {
        check(&f, "bob", "Bob-Old-2025!", (DecisionKind::Refused, Reason::RepeatedFailure, None)).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn guesses_right_after_a_refusal_do_not_reach_the_directory() {
    let f = fixture(|s| {
        s.throttle.per_login = 10;
        s.throttle.per_login_client = 20;
    });
    check(&f, "bob", "Bob-Demo-2026!", (DecisionKind::Accepted, Reason::Verified, Some("bob"))).await;
    check(&f, "bob", "guess-0", (DecisionKind::Refused, Reason::InvalidCredentials, None)).await;
    let binds = f.lab.binds.load(Ordering::SeqCst);
    for i in 1..5 {
        check(&f, "bob", &format!("guess-{i}"), (DecisionKind::Refused, Reason::PasswordMismatch, None)).await;
    }
    check(&f, "bob", "Bob-Demo-2026!", (DecisionKind::Accepted, Reason::Cached, Some("bob"))).await;
    for i in 5..10 {
        check(&f, "bob", &format!("guess-{i}"), (DecisionKind::Refused, Reason::PasswordMismatch, None)).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), binds, "ten guesses cost the directory one bind");
    // Each distinct guess counted against the login: the tenth locks it.
    check(&f, "bob", "guess-10", (DecisionKind::Temporary, Reason::TooManyFailuresForLogin, None)).await;

    // Off: every distinct guess binds.
    let f = fixture(|s| s.cache.mismatch_ttl = Duration::ZERO);
    check(&f, "bob", "Bob-Demo-2026!", (DecisionKind::Accepted, Reason::Verified, Some("bob"))).await;
    for i in 0..3 {
        check(&f, "bob", &format!("guess-{i}"), (DecisionKind::Refused, Reason::InvalidCredentials, None)).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn throttling_stops_guessing_before_the_directory() {
    let f = fixture(|s| {
        s.throttle.per_login = 3;
        s.throttle.per_client = 100;
    });
    for i in 0..3 {
        check(&f, "bob", &format!("guess-{i}"), (DecisionKind::Refused, Reason::InvalidCredentials, None)).await;
    }
    let binds = f.lab.binds.load(Ordering::SeqCst);
    for i in 3..10 {
        let d = f.auth.authenticate(request("bob", &format!("guess-{i}"), "192.0.2.1")).await;
        assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::TooManyFailuresForLogin));
    }
    // A right password that is not cached waits out the window too: a
    // guesser must not learn that a guess was right.
    let d = f.auth.authenticate(request("bob", "Bob-Demo-2026!", "192.0.2.1")).await;
    assert_eq!(d.kind, DecisionKind::Temporary);
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), binds, "no bind while throttled");
}

/// The counts are the store's: a reload (or a restart, which reloads
/// the store's counters) gives a guesser no fresh allowance.
#[tokio::test]
async fn a_reload_keeps_the_failure_counts() {
    let f = fixture(|s| s.throttle.per_login = 3);
    for i in 0..3 {
        check(&f, "bob", &format!("guess-{i}"), (DecisionKind::Refused, Reason::InvalidCredentials, None)).await;
    }
    let mut settings = f.auth.state().settings.clone();
    settings.throttle.per_login = 3;
    f.auth.reload(settings);
    check(&f, "bob", "guess-3", (DecisionKind::Temporary, Reason::TooManyFailuresForLogin, None)).await;
}

#[tokio::test]
async fn one_client_spraying_logins_is_throttled_per_address() {
    let f = fixture(|s| s.throttle.per_client = 5);
    for i in 0..5 {
        let d = f.auth.authenticate(request(&format!("ghost{i}"), "x", "198.51.100.9")).await;
        assert_eq!(d.reason, Reason::UnknownUser);
    }
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", "198.51.100.9")).await;
    assert_eq!(d.reason, Reason::TooManyFailuresFromClient);
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", "198.51.100.10")).await;
    assert_eq!(d.reason, Reason::Verified, "other clients are unaffected");
}

#[tokio::test]
async fn an_outage_is_temporary_and_cached_successes_ride_it_out() {
    let f = fixture(|s| s.cache.ttl = Duration::from_secs(60));
    check(&f, "alice", "Alice-Demo-2026!", (DecisionKind::Accepted, Reason::Verified, Some("alice"))).await;
    f.lab.down.store(true, Ordering::SeqCst);
    f.identities.clear();
    check(&f, "Alice", "Alice-Demo-2026!", (DecisionKind::Accepted, Reason::CachedDuringOutage, Some("alice"))).await;
    check(&f, "alice", "wrong", (DecisionKind::Temporary, Reason::DirectoryUnavailable, None)).await;
    check(&f, "bob", "Bob-Demo-2026!", (DecisionKind::Temporary, Reason::DirectoryUnavailable, None)).await;
}

#[tokio::test]
async fn accounts_seen_disabled_lose_their_grace() {
    let f = fixture(|_| {});
    check(&f, "alice", "Alice-Demo-2026!", (DecisionKind::Accepted, Reason::Verified, Some("alice"))).await;
    // The directory now reports alice disabled (admin action), then fails.
    let mut lab = lab();
    lab.users.get_mut("alice").unwrap().0.account.enabled = false;
    let lab = Arc::new(lab);
    let identities = IdentityCache::new(
        lab.clone(),
        IdentitySettings {
            cache_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            refresh_after: Duration::from_secs(240),
            capacity: 10,
        },
    );
    let auth = Authenticator {
        identities: identities.clone(),
        store: f.auth.store.clone(),
        local: f.auth.local.clone(),
        state: RwLock::new(f.auth.state()),
        audit: crate::audit_log::AuditLog::disabled(),
    };
    let d = auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.8")).await;
    assert_eq!(d.reason, Reason::AccountDisabled);
    lab.down.store(true, Ordering::SeqCst);
    identities.clear();
    let d = auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.8")).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::DirectoryUnavailable));
}

#[tokio::test]
async fn without_the_cache_every_attempt_binds() {
    let f = fixture(|s| s.cache.ttl = Duration::ZERO);
    for _ in 0..3 {
        check(&f, "alice", "Alice-Demo-2026!", (DecisionKind::Accepted, Reason::Verified, Some("alice"))).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst), 3);
    assert_eq!(f.auth.cached_credentials(), 0);
}

#[tokio::test(start_paused = true)]
async fn refusals_wait_from_arrival_and_successes_do_not() {
    let f = fixture(|s| s.failure_delay = Duration::from_secs(2));
    let t0 = Instant::now();
    let d = f.auth.authenticate(request("nobody", "x", "192.0.2.9")).await;
    assert_eq!(d.not_before, Some(t0 + Duration::from_secs(2)));
    d.wait().await;
    assert!(Instant::now() >= t0 + Duration::from_secs(2));
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.9")).await;
    assert_eq!(d.not_before, None);
}

/// Guessing from far away spends the login's budget; the user's own
/// device still gets in with the right password the cache holds, and
/// without it is told to try later (454), never that the password is
/// wrong (535).
#[tokio::test]
async fn the_rightful_user_keeps_working_while_others_guess() {
    let own = "192.0.2.50";
    let f = fixture(|s| s.throttle.per_login = 8);
    assert_eq!(f.auth.authenticate(request("alice", "Alice-Demo-2026!", own)).await.reason, Reason::Verified);
    let binds = f.lab.binds.load(Ordering::SeqCst);
    for i in 0..20u8 {
        f.auth.authenticate(request("alice", &format!("guess-{i}"), &format!("203.0.113.{}", i / 2))).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst) - binds, 1, "the mismatch TTL kept the rest from the directory");
    assert_eq!(f.auth.login_failures("alice").await.unwrap(), 8, "the login budget is spent, not passed");
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", own)).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Accepted, Reason::Cached));
    let d = f.auth.authenticate(request("alice", "Alice-Other-2026!", own)).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::TooManyFailuresForLogin));
    // A network that spent its own budget gets nothing, not even the
    // right password: it could otherwise guess against the cache.
    for i in 0..4 {
        f.auth.authenticate(request("bob", &format!("guess-{i}"), "198.51.100.77")).await;
    }
    let d = f.auth.authenticate(request("bob", "Bob-Demo-2026!", "198.51.100.77")).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::TooManyFailuresForLoginFromClient));
    // An administrator's unlock clears the login budget everywhere.
    assert_eq!(f.auth.unlock("ALICE").await.unwrap(), ("alice".to_owned(), true));
    let d = f.auth.authenticate(request("alice", "Alice-Other-2026!", own)).await;
    assert_eq!(d.reason, Reason::InvalidCredentials);
}

/// What a client sees, attempt by attempt: kind and text.
async fn transcript(f: &Fixture, login: &str, passwords: &[String], client: &str) -> Vec<(DecisionKind, String)> {
    let mut out = Vec::new();
    for p in passwords {
        let d = f.auth.authenticate(request(login, p, client)).await;
        out.push((d.kind, d.reply_text));
    }
    out
}

/// Known, unknown, disabled and locked logins answer alike, attempt by
/// attempt, through the throttle: repeating one wrong password, and
/// trying many.
#[tokio::test]
async fn throttled_states_do_not_tell_who_exists() {
    let same: Vec<String> = (0..12).map(|_| "Wrong-Password-1".to_owned()).collect();
    let many: Vec<String> = (0..12).map(|i| format!("Wrong-Password-{i}")).collect();
    for passwords in [same, many] {
        let mut seen = Vec::new();
        for login in ["bob", "nobody", "grace", "frank"] {
            let f = fixture(|s| {
                s.cache.mismatch_ttl = Duration::ZERO;
                s.throttle.per_login = 8;
                s.throttle.per_login_client = 5;
            });
            seen.push((login, transcript(&f, login, &passwords, "192.0.2.60").await));
        }
        for (login, t) in &seen[1..] {
            assert_eq!(t, &seen[0].1, "{login} differs from {}", seen[0].0);
        }
        assert!(seen[0].1.iter().any(|(k, _)| *k == DecisionKind::Refused));
    }
}

/// The store goes down: cached passwords keep working, unproven ones are
/// still counted (in this process, carrying on from what it saw), and the
/// directory sees no more wrong passwords than the budget.
#[tokio::test]
async fn a_store_outage_falls_back_to_local_budgets() {
    let f = fixture(|s| {
        s.throttle.per_login = 4;
        s.throttle.per_login_client = 10;
        s.cache.mismatch_ttl = Duration::ZERO;
    });
    assert_eq!(f.auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.70")).await.reason, Reason::Verified);
    for i in 0..2 {
        f.auth.authenticate(request("alice", &format!("guess-{i}"), "203.0.113.1")).await;
    }
    f.store.down.store(true, Ordering::SeqCst);
    let binds = f.lab.binds.load(Ordering::SeqCst);
    for i in 2..10 {
        f.auth.authenticate(request("alice", &format!("guess-{i}"), "203.0.113.1")).await;
    }
    assert_eq!(f.lab.binds.load(Ordering::SeqCst) - binds, 2, "two units were left before the outage");
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.70")).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Accepted, Reason::Cached));

    // `tempfail`: unproven passwords wait for the store; proven ones pass.
    let f = fixture(|s| s.throttle.store_error_action = crate::config::auth::StoreErrorAction::Tempfail);
    assert_eq!(f.auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.70")).await.reason, Reason::Verified);
    f.store.down.store(true, Ordering::SeqCst);
    let d = f.auth.authenticate(request("alice", "guess", "192.0.2.70")).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Temporary, Reason::StoreUnavailable));
    let d = f.auth.authenticate(request("alice", "Alice-Demo-2026!", "192.0.2.70")).await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Accepted, Reason::Cached));
    f.store.down.store(false, Ordering::SeqCst);
}
