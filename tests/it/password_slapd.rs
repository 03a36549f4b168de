//! The change flow against a real slapd with ppolicy (testkit::slapd):
//! RFC 3062 Password Modify bound as the user, ppolicy's own refusals,
//! expired and must-change users, and the confirmation mail through the
//! real mailer to a real SMTP server.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mailwarrant::config::Config;
use mailwarrant::directory::{BindOutcome, ChangeRefusal, RejectReason};
use mailwarrant::password::{ChangeRequest, ChangeResult, PasswordService, Refusal};
use mailwarrant::serve::App;
use mailwarrant::testkit::slapd::{Slapd, ADMIN_DN, ADMIN_PASSWORD};
use mailwarrant::testkit::smtp_server::SmtpServer;
use mailwarrant::testkit::wait_until;
use secrecy::SecretString;
use time::OffsetDateTime;

/// One slapd for these tests; each test changes different users.
fn shared_slapd() -> Arc<Slapd> {
    static SHARED: Mutex<Weak<Slapd>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.upgrade() {
        return running;
    }
    let started = Arc::new(Slapd::start().expect("slapd starts"));
    *slot = Arc::downgrade(&started);
    started
}

struct Site {
    _dir: tempfile::TempDir,
    _slapd: Arc<Slapd>,
    smtp: SmtpServer,
    app: App,
    service: PasswordService,
}

/// mailwarrant on the shared slapd; `history` is mailwarrant's own
/// history depth (0 leaves history to ppolicy alone).
async fn site(history: usize) -> Site {
    let slapd = shared_slapd();
    let smtp = SmtpServer::start().expect("the SMTP server starts");
    let dir = tempfile::tempdir().unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    let text = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n\
         [mailer]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"IT Desk <it@example.com>\"\n\
         templates = {templates:?}\n\
         [password]\ndefault_policy = \"test\"\n\
         [password.policies.test]\nmin_length = 12\nblocklist = false\nreject_personal_info = false\nhistory = {history}\n",
        slapd.config_toml(),
        smtp.port
    );
    let path = dir.path().join("mailwarrant.toml");
    std::fs::write(&path, text).unwrap();
    let app = App::build(Config::load(&path).unwrap()).await.unwrap();
    let service = PasswordService::new(
        app.identities.clone(),
        app.store.clone(),
        app.config.password.clone(),
        "https://mail.example.com".into(),
        std::sync::Arc::new(mailwarrant::auth::Authenticator::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.auth.clone(),
        )),
    )
    .with_mailer(app.mailer.clone(), None);
    Site { _dir: dir, _slapd: slapd, smtp, app, service }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

impl Site {
    async fn change(&self, login: &str, current: &str, new: &str) -> ChangeResult {
        let (current, new) = (secret(current), secret(new));
        let req = ChangeRequest { login, current: &current, new: &new, client: Some([192, 0, 2, 9].into()) };
        self.service.change(&req, OffsetDateTime::now_utc()).await.expect("the directory answers")
    }

    async fn bind(&self, login: &str, password: &str) -> BindOutcome {
        let who = self.app.directory.lookup(login).await.unwrap().unwrap();
        self.app.directory.authenticate(&who, &secret(password)).await.unwrap()
    }
}

/// Changes an attribute of the default ppolicy entry as the rootdn.
pub fn set_default_policy(slapd: &Slapd, attribute: &str, value: &str) {
    let ldif = format!(
        "dn: cn=default,ou=policies,dc=example,dc=com\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n"
    );
    let mut child = Command::new("/usr/bin/ldapmodify")
        .args(["-x", "-H", &slapd.url(), "-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ldapmodify runs");
    child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "ldapmodify failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_slapd_change_succeeds_new_binds_old_fails_and_mail_goes_out() {
    let s = site(3).await;
    assert_eq!(s.change("alice", "Alice-Demo-2026!", "Lantern-Cactus-4821").await, ChangeResult::Changed);
    assert_eq!(s.bind("alice", "Alice-Demo-2026!").await, BindOutcome::Rejected(RejectReason::InvalidCredentials));
    assert!(matches!(s.bind("alice", "Lantern-Cactus-4821").await, BindOutcome::Accepted { .. }));
    // The change was a Password Modify extended operation bound as alice.
    let log = s._slapd.log();
    assert!(log.contains("EXT oid=1.3.6.1.4.1.4203.1.11.1"), "slapd saw RFC 3062 Password Modify");
    assert!(!log.contains("Lantern-Cactus-4821"));
    let delivered = wait_until(Duration::from_secs(10), || !s.smtp.messages().is_empty());
    assert!(delivered, "the confirmation mail reaches the SMTP server");
    let mail = &s.smtp.messages()[0];
    assert!(mail.contains("alice@example.com") && mail.contains("was changed"));
    assert!(!mail.contains("Lantern-Cactus-4821"));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_slapd_history_is_refused_by_mailwarrant_and_by_ppolicy() {
    let s = site(3).await;
    assert_eq!(s.change("bob", "Bob-Demo-2026!", "First-Meadow-2931").await, ChangeResult::Changed);
    let ours = s.change("bob", "First-Meadow-2931", "First-Meadow-2931").await;
    assert!(matches!(ours, ChangeResult::Refused(Refusal::Policy(ref r)) if r.failures().any(|v| v.rule == "history")));
    // With mailwarrant's history off, the directory's own ppolicy
    // (pwdInHistory 5) refuses, and its error is mapped.
    let plain = site(0).await;
    assert_eq!(
        plain.change("bob", "First-Meadow-2931", "Bob-Demo-2026!").await,
        ChangeResult::Refused(Refusal::Directory(ChangeRefusal::InHistory))
    );
    assert!(matches!(plain.bind("bob", "First-Meadow-2931").await, BindOutcome::Accepted { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_slapd_expired_and_must_change_users_change_successfully() {
    let s = site(0).await;
    // No grace login left (pwdGraceAuthNLimit 0): a clear refusal.
    assert_eq!(
        s.change("erin", "Erin-Demo-2026!", "Renewed-Orchard-5510").await,
        ChangeResult::Refused(Refusal::Directory(ChangeRefusal::Expired))
    );
    // As most sites configure it: grace logins let the user change.
    set_default_policy(&s._slapd, "pwdGraceAuthNLimit", "3");
    assert_eq!(s.change("erin", "Erin-Demo-2026!", "Renewed-Orchard-5510").await, ChangeResult::Changed);
    assert!(matches!(s.bind("erin", "Renewed-Orchard-5510").await, BindOutcome::Accepted { .. }));
    // pwdReset: the session is restricted to the change, which works.
    assert_eq!(s.bind("heidi", "Heidi-Demo-2026!").await, BindOutcome::Rejected(RejectReason::MustChangePassword));
    assert_eq!(s.change("heidi", "Heidi-Demo-2026!", "Renewed-Compass-7302").await, ChangeResult::Changed);
    assert!(matches!(s.bind("heidi", "Renewed-Compass-7302").await, BindOutcome::Accepted { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn password_slapd_wrong_current_password_is_refused() {
    let s = site(0).await;
    assert_eq!(
        s.change("carol", "Not-Carols-Password", "Whatever-Lantern-11").await,
        ChangeResult::Refused(Refusal::WrongCredentials)
    );
    // A locked account is not named before its password is proven.
    assert_eq!(
        s.change("frank", "Frank-Demo-2026!", "Whatever-Lantern-11").await,
        ChangeResult::Refused(Refusal::WrongCredentials)
    );
    assert!(matches!(s.bind("carol", "Carol-Demo-2026!").await, BindOutcome::Accepted { .. }));
}
