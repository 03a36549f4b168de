//! Real Postfix (`smtpd_sasl_type = dovecot`) delegating SMTP AUTH to
//! mailwarrant, driven by swaks.

use std::time::Duration;

use mailwarrant::testkit::postfix::Postfix;
use mailwarrant::testkit::slapd::Slapd;

use crate::auth_stack::{swaks_auth, Stack};

pub fn postfix_for(stack: &Stack) -> Postfix {
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

#[test]
fn postfix_delegates_auth_to_mailwarrant() {
    let mut slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "");
    let postfix = postfix_for(&stack);

    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok, "{t}");
    assert!(t.contains("235 2.7.0 Authentication successful"), "{t}");
    assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}");

    // LOGIN, typed as the mail address in another case: Postfix logs the canonical login.
    let (ok, t) = swaks_auth(&postfix, "LOGIN", "Alice@Example.com", "Alice-Demo-2026!");
    assert!(ok, "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    assert!(
        postfix.wait_for_log("sasl_method=LOGIN, sasl_username=alice", Duration::from_secs(10)),
        "{}",
        postfix.maillog()
    );
    assert!(!postfix.maillog().contains("sasl_username=Alice"), "{}", postfix.maillog());

    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Wrong-Password-1");
    assert!(!ok);
    assert!(t.contains("535 5.7.8 Error: authentication failed: Authentication failed"), "{t}");

    let (_, t) = swaks_auth(&postfix, "PLAIN", "nobody", "Wrong-Password-1");
    assert!(
        t.contains("535 5.7.8 Error: authentication failed: Authentication failed"),
        "unknown user reads the same: {t}"
    );

    let (_, t) = swaks_auth(&postfix, "PLAIN", "erin", "Erin-Demo-2026!");
    assert!(
        t.contains(
            "535 5.7.8 Error: authentication failed: Password expired: change it at https://mail.example.com/password"
        ),
        "{t}"
    );
    let (_, t) = swaks_auth(&postfix, "LOGIN", "grace", "Grace-Demo-2026!");
    assert!(t.contains("535 5.7.8 Error: authentication failed: Authentication failed"), "{t}");
    let (_, t) = swaks_auth(&postfix, "PLAIN", "frank", "Frank-Demo-2026!");
    assert!(t.contains("535 5.7.8"), "{t}");
    let (_, t) = swaks_auth(&postfix, "PLAIN", "heidi", "Heidi-Demo-2026!");
    assert!(t.contains("535 5.7.8 Error: authentication failed: Password expired"), "{t}");

    // The directory goes away: temporary failure (454), never 535.
    slapd.stop();
    let (ok, t) = swaks_auth(&postfix, "PLAIN", "bob", "Bob-Demo-2026!");
    assert!(!ok);
    assert!(t.contains("454 4.7.0 Temporary authentication failure"), "{t}");
    let (_, t) = swaks_auth(&postfix, "LOGIN", "carol", "Wrong-Password-1");
    assert!(t.contains("454 4.7.0 Temporary authentication failure"), "{t}");
    // A password verified minutes ago rides out the outage (grace).
    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok && t.contains("235 2.7.0"), "{t}");

    // Back again: logins work (a Postfix smtpd that lost its auth
    // connection reconnects on a later AUTH).
    slapd.start_again().unwrap();
    let back = (0..5).any(|_| swaks_auth(&postfix, "PLAIN", "bob", "Bob-Demo-2026!").0);
    assert!(back, "no login succeeded after the directory came back:\n{}", postfix.maillog());
}
