//! Real Postfix (`smtpd_sasl_type = dovecot`) delegating SMTP AUTH to
//! mailwarrant, driven by swaks.

use std::time::Duration;

use mailwarrant::testkit::postfix::Postfix;

use crate::auth_stack::{demo_ldif_directory, transcript, Stack};

fn postfix_for(stack: &Stack) -> Postfix {
    let path = format!("inet:127.0.0.1:{}", stack.dovecot_port);
    Postfix::start(&[
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_type", "dovecot"),
        ("smtpd_sasl_path", &path),
        ("smtpd_tls_auth_only", "no"),
        ("smtpd_relay_restrictions", "permit_sasl_authenticated, reject"),
        ("mynetworks", "127.0.0.255/32"),
    ])
    .unwrap()
}

fn swaks_auth(postfix: &Postfix, mech: &str, user: &str, password: &str) -> (bool, String) {
    let out = postfix.swaks(&[
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        "alice@example.com",
        "--to",
        "someone@example.org",
    ]);
    (out.status.success(), transcript(&out))
}

#[test]
fn postfix_delegates_auth_to_mailwarrant() {
    let stack = Stack::start(&demo_ldif_directory(), "");
    let postfix = postfix_for(&stack);

    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok, "{t}");
    assert!(t.contains("235 2.7.0 Authentication successful"), "{t}");
    assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}");

    // LOGIN, typed by alias and in another case: Postfix logs the canonical login.
    let (ok, t) = swaks_auth(&postfix, "LOGIN", "A.Smith@example.com", "Alice-Demo-2026!");
    assert!(ok, "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    assert!(
        postfix.wait_for_log("sasl_method=LOGIN, sasl_username=alice", Duration::from_secs(10)),
        "{}",
        postfix.maillog()
    );
    assert!(!postfix.maillog().contains("sasl_username=A.Smith"), "{}", postfix.maillog());

    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Wrong-Password-1");
    assert!(!ok);
    assert!(t.contains("535 5.7.8 Error: authentication failed: Authentication failed"), "{t}");

    let (_, t) = swaks_auth(&postfix, "PLAIN", "nobody", "Wrong-Password-1");
    assert!(t.contains("535 5.7.8 Error: authentication failed: Authentication failed"), "unknown user reads the same: {t}");

    let (_, t) = swaks_auth(&postfix, "PLAIN", "erin", "Erin-Demo-2026!");
    assert!(
        t.contains("535 5.7.8 Error: authentication failed: Password expired: change it at https://mail.example.com/password"),
        "{t}"
    );
    let (_, t) = swaks_auth(&postfix, "LOGIN", "grace", "Grace-Demo-2026!");
    assert!(t.contains("535 5.7.8 Error: authentication failed: Authentication failed"), "{t}");
    let (_, t) = swaks_auth(&postfix, "PLAIN", "frank", "Frank-Demo-2026!");
    assert!(t.contains("535 5.7.8"), "{t}");
    let (_, t) = swaks_auth(&postfix, "PLAIN", "heidi", "Heidi-Demo-2026!");
    assert!(t.contains("535 5.7.8 Error: authentication failed: Password expired"), "{t}");
}
