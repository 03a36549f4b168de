//! Real Exim 4.96 (`driver = dovecot`) delegating SMTP AUTH to mailwarrant:
//! one connection per AUTH, request pipelined with the handshake.

use std::process::Command;

use mailwarrant::testkit::exim::Exim;

use mailwarrant::testkit::slapd::Slapd;

use crate::auth_stack::{transcript, Stack};

fn swaks(exim: &Exim, mech: &str, user: &str, password: &str) -> (bool, String) {
    let out = Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{}", exim.port))
        .args(["--timeout", "30", "--helo", "client.example.com", "--auth", mech, "--auth-user", user])
        .args(["--auth-password", password, "--from", "alice@example.com", "--to", "someone@example.org"])
        .output()
        .expect("swaks runs");
    (out.status.success(), transcript(&out))
}

#[test]
fn exim_delegates_auth_to_mailwarrant() {
    let mut slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "");
    let exim = Exim::start(&stack.dovecot_socket).unwrap();

    let (ok, t) = swaks(&exim, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok, "{t}\n{}", exim.log());
    assert!(t.contains("235 Authentication succeeded"), "{t}");
    assert!(t.contains("250 OK id="), "{t}");

    let (ok, t) = swaks(&exim, "LOGIN", "Bob", "Bob-Demo-2026!");
    assert!(ok, "{t}\n{}", exim.log());
    assert!(exim.log().contains("A=dovecot_login:bob"), "canonical $auth1:\n{}", exim.log());

    let (ok, t) = swaks(&exim, "PLAIN", "alice", "Wrong-Password-1");
    assert!(!ok);
    assert!(t.contains("535 Incorrect authentication data"), "{t}");
    let (_, t) = swaks(&exim, "LOGIN", "grace", "Grace-Demo-2026!");
    assert!(t.contains("535 Incorrect authentication data"), "{t}");

    // The directory goes away: Exim answers 435 (try later), never 535,
    // for a login it cannot check.
    slapd.stop();
    let (ok, t) = swaks(&exim, "PLAIN", "carol", "Carol-Demo-2026!");
    assert!(!ok);
    assert!(t.contains("435 "), "a temporary failure, not a refusal: {t}\n{}", exim.log());
    assert!(!t.contains("535"), "{t}");
}
