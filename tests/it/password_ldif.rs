//! The change flow on the embedded LDIF directory: the file is rewritten
//! atomically with an argon2 hash, and everything after a change happens
//! (cache, history, confirmation queued, audit).

use std::path::{Path, PathBuf};

use mailwarrant::config::Config;
use mailwarrant::directory::{BindOutcome, RejectReason};
use mailwarrant::password::change::{AUDIT_LOG, OUTBOX_LOG};
use mailwarrant::password::{ChangeRequest, ChangeResult, Outcome, PasswordService, Refusal};
use mailwarrant::serve::App;
use secrecy::SecretString;
use time::OffsetDateTime;

pub struct Site {
    pub dir: tempfile::TempDir,
    pub app: App,
    pub service: PasswordService,
}

/// The demo cast in a private copy of the LDIF file, with a policy of
/// 12 characters, a blocklist and a history of 3.
pub async fn site(extra: &str) -> Site {
    site_at(extra, 0, "https://mail.example.com/account").await
}

/// The same, with the HTTP listener on `port` and links built from `base`.
pub async fn site_at(extra: &str, port: u16, base: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("config/demo-directory.ldif"), dir.path().join("people.ldif")).unwrap();
    std::fs::write(dir.path().join("blocklist.txt"), "correct-horse-battery\npassword1234\n").unwrap();
    let text = format!(
        "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"people.ldif\"\npassword_max_age = \"90d\"\n\
         [store]\npath = \"state.sqlite\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:0\"]\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"{base}\"\n\
         [password]\nblocklist_file = \"blocklist.txt\"\ndefault_policy = \"test\"\n{extra}\n\
         [password.policies.test]\nmin_length = 12\nmax_length = 128\nhistory = 3\n"
    );
    let path: PathBuf = dir.path().join("mailwarrant.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap();
    let app = App::build(config).await.unwrap();
    let service = PasswordService::new(
        app.identities.clone(),
        app.store.clone(),
        app.config.password.clone(),
        base.into(),
        std::sync::Arc::new(mailwarrant::auth::Authenticator::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.auth.clone(),
        )),
    );
    Site { dir, app, service }
}

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

impl Site {
    pub async fn change(&self, login: &str, current: &str, new: &str) -> ChangeResult {
        let (current, new) = (secret(current), secret(new));
        let req = ChangeRequest { login, current: &current, new: &new, client: Some([192, 0, 2, 7].into()) };
        self.service.change(&req, OffsetDateTime::now_utc()).await.expect("the flow runs")
    }

    pub async fn bind(&self, login: &str, password: &str) -> BindOutcome {
        let who = self.app.directory.lookup(login).await.unwrap().unwrap();
        self.app.directory.authenticate(&who, &secret(password)).await.unwrap()
    }

    pub fn records(&self, log: &str) -> Vec<serde_json::Value> {
        let rt = tokio::runtime::Handle::current();
        let store = self.app.store.clone();
        let log = log.to_owned();
        tokio::task::block_in_place(|| rt.block_on(store.tail(&log, 100)))
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_change_rewrites_the_file_and_the_new_password_binds() {
    let s = site("").await;
    let before = s.app.identities.get("alice").await.unwrap().unwrap();
    assert_eq!(s.change("alice", "Alice-Demo-2026!", "Lantern-Cactus-4821").await, ChangeResult::Changed);
    assert_eq!(s.bind("alice", "Lantern-Cactus-4821").await, BindOutcome::ACCEPTED);
    assert_eq!(s.bind("alice", "Alice-Demo-2026!").await, BindOutcome::Rejected(RejectReason::InvalidCredentials));
    let text = std::fs::read_to_string(s.dir.path().join("people.ldif")).unwrap();
    assert!(!text.contains("Lantern-Cactus-4821"), "only a hash is written");
    assert!(text.contains("# Demo directory") || text.starts_with('#'), "comments survive");
    let after = s.app.identities.get("alice").await.unwrap().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&before, &after), "the cached identity was dropped");
    assert!(after.account.password_changed_at > before.account.password_changed_at);
    // Confirmation queued for the mailer, with the link from public_base_url.
    let outbox = s.records(OUTBOX_LOG);
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["to"], "alice@example.com");
    assert!(outbox[0]["body"].as_str().unwrap().contains("https://mail.example.com/account/password"));
    let audit = s.records(AUDIT_LOG);
    assert_eq!(audit[0]["event"], "password.changed");
    assert!(!serde_json::to_string(&audit).unwrap().contains("Lantern"));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_history_refuses_a_recent_password() {
    let s = site("").await;
    assert_eq!(s.change("bob", "Bob-Demo-2026!", "First-Meadow-2931").await, ChangeResult::Changed);
    assert_eq!(s.change("bob", "First-Meadow-2931", "Second-Harbor-8812").await, ChangeResult::Changed);
    let ChangeResult::Refused(Refusal::Policy(report)) =
        s.change("bob", "Second-Harbor-8812", "First-Meadow-2931").await
    else {
        panic!("history must refuse")
    };
    let failed: Vec<_> = report.failures().map(|v| v.rule.as_str()).collect();
    assert_eq!(failed, ["history"]);
    assert_eq!(s.bind("bob", "Second-Harbor-8812").await, BindOutcome::ACCEPTED, "nothing was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_expired_and_must_change_users_can_change() {
    let s = site("").await;
    assert_eq!(s.bind("erin", "Erin-Demo-2026!").await, BindOutcome::Rejected(RejectReason::PasswordExpired));
    assert_eq!(s.change("erin", "Erin-Demo-2026!", "Renewed-Orchard-5510").await, ChangeResult::Changed);
    assert_eq!(s.bind("erin", "Renewed-Orchard-5510").await, BindOutcome::ACCEPTED, "no longer expired");
    assert_eq!(s.change("heidi", "Heidi-Demo-2026!", "Renewed-Compass-7302").await, ChangeResult::Changed);
    let heidi = s.app.directory.lookup("heidi").await.unwrap().unwrap();
    assert!(!heidi.account.must_change, "pwdReset is cleared");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_wrong_current_password_and_unknown_login_look_the_same() {
    let s = site("").await;
    let wrong = s.change("carol", "Not-Carols-Password", "Whatever-Lantern-11").await;
    let unknown = s.change("nobody", "Not-Carols-Password", "Whatever-Lantern-11").await;
    assert_eq!(wrong, ChangeResult::Refused(Refusal::WrongCredentials));
    assert_eq!(unknown, wrong);
    // Locked and disabled accounts are not named, whatever is typed: the
    // password was never proven, so nothing about the account is shown.
    for (login, password) in [("frank", "Frank-Demo-2026!"), ("grace", "Grace-Demo-2026!"), ("frank", "guess")] {
        assert_eq!(s.change(login, password, "Whatever-Lantern-11").await, wrong, "{login}");
    }
    // A weak new password with a wrong current one: the same answer too.
    assert_eq!(s.change("carol", "Not-Carols-Password", "password1234").await, wrong);
    assert_eq!(s.change("nobody", "Not-Carols-Password", "password1234").await, wrong);
    assert_eq!(s.bind("carol", "Carol-Demo-2026!").await, BindOutcome::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_weak_passwords_are_refused_after_the_proof_and_before_the_write() {
    let s = site("").await;
    let ChangeResult::Refused(Refusal::Policy(report)) = s.change("dave", "Dave-Demo-2026!", "password1234").await
    else {
        panic!("a listed password is refused")
    };
    let failed: Vec<_> = report.failures().map(|v| v.rule.as_str()).collect();
    assert_eq!(failed, ["blocklist"]);
    assert!(report.verdicts.iter().any(|v| v.rule == "history" && v.outcome == Outcome::NotChecked));
    let ChangeResult::Refused(Refusal::Policy(report)) = s.change("dave", "Dave-Demo-2026!", "dave-is-my-name").await
    else {
        panic!("the login inside is refused")
    };
    assert_eq!(report.failures().map(|v| v.rule.as_str()).collect::<Vec<_>>(), ["personal_info"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_ldif_attempts_are_throttled_per_login() {
    let s = site("attempts_per_login_per_hour = 3").await;
    for _ in 0..3 {
        assert_eq!(
            s.change("carol", "bad-guess", "Whatever-Lantern-11").await,
            ChangeResult::Refused(Refusal::WrongCredentials)
        );
    }
    assert_eq!(
        s.change("carol", "Carol-Demo-2026!", "Whatever-Lantern-11").await,
        ChangeResult::Refused(Refusal::Throttled)
    );
    assert_eq!(s.bind("carol", "Carol-Demo-2026!").await, BindOutcome::ACCEPTED, "nothing changed");
}
