//! What reaches the real directory: a stale password counts once, and
//! throttling keeps guessing below slapd's own lockout (ppolicy
//! `pwdMaxFailure` = 10 in the seed).

use std::net::SocketAddr;
use std::process::Command;

use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::slapd::Slapd;

use crate::auth_stack::Stack;

/// `pwdFailureTime` values slapd holds for a user.
fn failures_in_directory(slapd: &Slapd, uid: &str) -> usize {
    let (admin, password) = slapd.admin();
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &slapd.url(), "-D", admin, "-w", password])
        .args([
            "-b",
            &format!("uid={uid},ou=people,dc=example,dc=com"),
            "-s",
            "base",
            "(objectClass=*)",
            "pwdFailureTime",
        ])
        .output()
        .expect("ldapsearch runs");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("pwdFailureTime:")).count()
}

#[test]
fn the_directory_sees_one_failure_per_stale_password_and_never_a_lockout() {
    let slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "[auth.throttle]\nper_login = 5\nper_client = 1000\n");
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = DovecotClient::connect(address).await.unwrap();
        // A phone retrying a stale password: one directory failure.
        for i in 0..6 {
            let a = c.plain("carol", "Carol-Old-2025!", format!("127.4.0.{}", i + 1).parse().unwrap()).await.unwrap();
            assert!(matches!(a, Answer::Fail { .. }), "{a:?}");
        }
        assert_eq!(failures_in_directory(&slapd, "carol"), 1);

        // A guesser: the directory stops counting at mailwarrant's limit,
        // below slapd's lockout, and the real user is not locked out there.
        for i in 0..30 {
            let _ = c.plain("dave", &format!("Guess-{i}"), format!("127.5.0.{}", i + 1).parse().unwrap()).await;
        }
        let seen = failures_in_directory(&slapd, "dave");
        assert!(seen <= 5, "the directory saw {seen} failures");
        // (mailwarrant refuses dave for the window; slapd itself has not locked him.)
    });
    let out = Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", "uid=dave,ou=people,dc=example,dc=com", "-w", "Dave-Demo-2026!"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dave can still bind to slapd: {}", String::from_utf8_lossy(&out.stderr));
}
