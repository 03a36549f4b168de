//! SMTP AUTH against Active Directory: the Samba AD DC (testkit::samba)
//! behind mailwarrant's AUTH core and its Dovecot auth front end, over
//! real sockets. The wire carries what Postfix needs (generic refusals,
//! `code=pass_expired` for expired and must-change); the exact reason is
//! the decision's, which the audit line records.

use std::net::{IpAddr, SocketAddr};

use mailwarrant::auth::{AuthDecision, AuthRequest, Authenticator, DecisionKind, Protocol, Reason};
use mailwarrant::config::Config;
use mailwarrant::serve::App;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::samba::{self, password_of, user_dn};
use secrecy::SecretString;

use crate::auth_stack::Stack;

const SELF_SERVICE: &str = "https://mail.example.com/password";

/// The AUTH core in-process over the DC, with its store in a temp folder.
async fn authenticator() -> (tempfile::TempDir, Authenticator) {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"0s\"\nself_service_url = \"{SELF_SERVICE}\"\n",
        dc.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), &dir.path().join("ad.toml")).unwrap_or_else(|e| panic!("{e}"));
    let settings = config.auth.clone();
    let app = App::build(config).await.expect("mailwarrant builds");
    (dir, Authenticator::new(app.identities.clone(), app.store.clone(), settings))
}

async fn decide(auth: &Authenticator, login: &str, password: &str, client: &str) -> AuthDecision {
    let request = AuthRequest {
        login: login.to_owned(),
        authzid: None,
        password: SecretString::from(password.to_owned()),
        client: Some(client.parse().unwrap()),
        protocol: Protocol::DovecotAuth,
    };
    auth.authenticate(request).await
}

#[tokio::test]
async fn ad_account_states_give_the_right_auth_decisions() {
    let (_dir, auth) = authenticator().await;
    let decide = |login: &str, password: &str, client: &str| {
        let (auth, login, password, client) = (&auth, login.to_owned(), password.to_owned(), client.to_owned());
        async move { decide(auth, &login, &password, &client).await }
    };
    for (typed, login) in
        [("alice", "alice"), ("alice@corp.example.com", "alice"), ("alice@example.com", "alice"), ("BOB", "bob")]
    {
        let d = decide(typed, &password_of(login), "127.6.0.1").await;
        // A second form of a login already checked may come from the credential cache.
        assert_eq!(d.kind, DecisionKind::Accepted, "{typed}");
        assert!(matches!(d.reason, Reason::Verified | Reason::Cached), "{typed}: {:?}", d.reason);
        assert_eq!(d.login.as_ref().map(|l| l.as_str()), Some(login), "{typed}: the canonical login");
    }
    for (login, kind, reason) in [
        ("erin", DecisionKind::PasswordExpired, Reason::PasswordExpired),
        ("heidi", DecisionKind::PasswordExpired, Reason::MustChangePassword),
        ("frank", DecisionKind::Refused, Reason::AccountLocked),
        ("grace", DecisionKind::Refused, Reason::AccountDisabled),
    ] {
        let d = decide(login, &password_of(login), "127.6.0.2").await;
        assert_eq!((d.kind, d.reason), (kind, reason), "{login}");
    }
    let d = decide("carol", "Not-Carols-Password-1", "127.6.0.3").await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Refused, Reason::InvalidCredentials));
    let d = decide("nobody@corp.example.com", "whatever", "127.6.0.4").await;
    assert_eq!((d.kind, d.reason), (DecisionKind::Refused, Reason::UnknownUser));
}

#[test]
fn ad_logins_and_refusals_over_the_dovecot_auth_protocol() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let stack = Stack::start(&dc.config_toml(), "");
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = DovecotClient::connect(address).await.unwrap();
        let rip: IpAddr = "127.7.0.1".parse().unwrap();
        for typed in ["alice", "alice@corp.example.com", "alice@example.com", "Alice"] {
            let answer = c.plain(typed, &password_of("alice"), rip).await.unwrap();
            assert_eq!(answer, Answer::Ok { user: "alice".into() }, "{typed}");
        }
        let expired = format!("code=pass_expired\treason=Password expired: change it at {SELF_SERVICE}");
        for login in ["erin", "heidi"] {
            let answer = c.plain(login, &password_of(login), rip).await.unwrap();
            assert!(matches!(&answer, Answer::Fail { line } if line.ends_with(&expired)), "{login}: {answer:?}");
        }
        // Locked and disabled: refused without a bind, generically.
        for login in ["frank", "grace"] {
            let answer = c.plain(login, &password_of(login), rip).await.unwrap();
            assert!(
                matches!(&answer, Answer::Fail { line } if line.ends_with(&format!("user={login}\treason=Authentication failed"))),
                "{login}: {answer:?}"
            );
        }
        let wrong = c.plain("dave", "Not-Daves-Password-1", rip).await.unwrap();
        assert!(
            matches!(&wrong, Answer::Fail { line } if line.ends_with("user=dave\treason=Authentication failed")),
            "{wrong:?}"
        );
    });
}

/// docs/testing.md S4 (b, c) on AD: a client retrying a stale password costs
/// the directory one failure (`badPwdCount` + 1, never + 2), so it cannot
/// lock the user out at the DC.
#[tokio::test]
async fn ad_a_stale_password_counts_once_in_bad_pwd_count() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let (_dir, auth) = authenticator().await;
    let dn = user_dn("Lars Berg");
    let count = || dc.read_attribute(&dn, "badPwdCount").unwrap().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let before = count();
    let first = decide(&auth, "lars", "Lars-Stale-2025!", "127.6.1.1").await;
    assert_eq!(first.reason, Reason::InvalidCredentials);
    assert_eq!(count(), before + 1, "one wrong password is one failure at the DC");
    for i in 2..8 {
        let again = decide(&auth, "lars", "Lars-Stale-2025!", &format!("127.6.1.{i}")).await;
        assert_eq!(again.kind, DecisionKind::Refused, "retry {i}");
    }
    assert_eq!(count(), before + 1, "retries of the same stale password never reach the DC");
    let right = decide(&auth, "lars", &password_of("lars"), "127.6.1.9").await;
    assert_eq!(right.kind, DecisionKind::Accepted, "the user is not locked out: {:?}", right.reason);
}

/// docs/testing.md S4 (a) on AD: 1,000 wrong passwords for one victim from 50
/// client addresses. mailwarrant's per-login throttle (default 8 per
/// window) stays below the domain's `lockoutThreshold` (10), so the DC
/// counts at most 8 failures and never locks the account: the victim can
/// still bind at the DC (Outlook on the LAN, the intranet), and SMTP AUTH
/// refuses guesses for the window without touching the directory.
#[tokio::test]
async fn ad_a_thousand_guesses_never_lock_the_account_at_the_dc() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let (_dir, auth) = authenticator().await;
    let dn = user_dn("Victor Hale");
    let count = || dc.read_attribute(&dn, "badPwdCount").unwrap().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let before = count();
    let mut reached_the_dc = 0;
    for i in 0..1_000u32 {
        let client = format!("127.8.{}.{}", i % 50, 1 + i % 200);
        let d = decide(&auth, "victor", &format!("Guess-{i}-Password!"), &client).await;
        assert_ne!(d.kind, DecisionKind::Accepted, "guess {i}");
        if d.reason == Reason::InvalidCredentials {
            reached_the_dc += 1;
        }
    }
    let seen = count() - before;
    assert!(reached_the_dc <= 8, "{reached_the_dc} guesses were checked at the DC");
    assert!(seen < samba::LOCKOUT_THRESHOLD, "the DC counted {seen} failures");
    assert_eq!(dc.read_attribute(&dn, "lockoutTime").unwrap().unwrap_or_default().trim_start_matches('0'), "");
    assert!(
        dc.bind_succeeds(&format!("victor@{}", samba::UPN_SUFFIX), &password_of("victor")),
        "victor is not locked at the DC"
    );
}

/// Forty wrong passwords for one victim at the same moment from forty
/// addresses: the budget is reserved before each check, so the DC counts
/// exactly `per_login` (8) failures, below its `lockoutThreshold`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_concurrent_guesses_reach_the_dc_exactly_per_login_times() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let (_dir, auth) = authenticator().await;
    let auth = std::sync::Arc::new(auth);
    let dn = user_dn("Wendy Cole");
    let count = || dc.read_attribute(&dn, "badPwdCount").unwrap().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let before = count();
    let tasks: Vec<_> = (0..40u32)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                decide(&auth, "wendy", &format!("Guess-{i}-Password!"), &format!("127.9.0.{}", i + 1)).await
            })
        })
        .collect();
    let mut checked = 0;
    for t in tasks {
        let d = t.await.unwrap();
        assert_ne!(d.kind, DecisionKind::Accepted);
        if d.reason == Reason::InvalidCredentials {
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "guesses checked at the DC");
    assert_eq!(count() - before, 8, "badPwdCount rose by the budget, no more");
    assert!(dc.bind_succeeds(&format!("wendy@{}", samba::UPN_SUFFIX), &password_of("wendy")), "wendy is not locked");
}

/// `check-config --connect` reads the domain's lockoutThreshold (10) and
/// lockoutObservationWindow (Samba's default, 30 minutes): the default
/// budgets pass, a budget at the threshold fails with exit 4.
#[test]
fn ad_check_config_reads_the_domain_lockout_settings() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let run = |throttle: &str| {
        let path = dir.path().join("mailwarrant.toml");
        std::fs::write(&path, format!("{}\n[store]\npath = \"state.sqlite\"\n{throttle}\n", dc.config_toml())).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["check-config", "--connect", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = run("");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = run("[auth.throttle]\nper_login = 10\n");
    let said = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(4), "{said}");
    assert!(said.contains("lockout threshold 10"), "{said}");
}
