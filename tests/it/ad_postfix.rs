//! Real Postfix in front of Active Directory: `smtpd_sasl_type = dovecot`
//! over mailwarrant's UNIX auth socket (`smtpd_sasl_path` as an absolute
//! path, as a packaged Postfix beside mailwarrant would use it), the Samba
//! AD DC behind, swaks as the mail client.

use std::time::Duration;

use mailwarrant::testkit::postfix::Postfix;
use mailwarrant::testkit::samba::{self, password_of};

use crate::auth_stack::{swaks_auth, Stack};

#[test]
fn ad_postfix_delegates_auth_over_the_unix_socket() {
    let dc = samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"));
    let stack = Stack::start(&dc.config_toml(), "");
    let socket = stack.dovecot_socket.display().to_string();
    let postfix = Postfix::start(&[
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_type", "dovecot"),
        ("smtpd_sasl_path", &socket),
        ("smtpd_tls_auth_only", "no"),
        ("smtpd_relay_restrictions", "permit_sasl_authenticated, reject"),
        ("mynetworks", "127.0.0.255/32"),
    ])
    .unwrap();

    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", &password_of("alice"));
    assert!(ok && t.contains("235 2.7.0") && t.contains("250 2.0.0 Ok: queued as"), "{t}\n{}", postfix.maillog());

    // The UPN form: Postfix logs the canonical login, not what was typed.
    let (ok, t) = swaks_auth(&postfix, "LOGIN", "Bob@corp.example.com", &password_of("bob"));
    assert!(ok && t.contains("235 2.7.0"), "{t}");
    assert!(
        postfix.wait_for_log("sasl_method=LOGIN, sasl_username=bob", Duration::from_secs(10)),
        "{}",
        postfix.maillog()
    );

    let generic = "535 5.7.8 Error: authentication failed: Authentication failed";
    for (user, password) in [
        ("dave", "Not-Daves-Password-1".to_owned()),
        ("nobody", "Not-Anyones-Password-1".to_owned()),
        ("frank", password_of("frank")),
        ("grace", password_of("grace")),
    ] {
        let (ok, t) = swaks_auth(&postfix, "PLAIN", user, &password);
        assert!(!ok && t.contains(generic), "{user}: {t}");
    }
    for user in ["erin", "heidi"] {
        let (ok, t) = swaks_auth(&postfix, "PLAIN", user, &password_of(user));
        assert!(
            !ok && t.contains(
                "535 5.7.8 Error: authentication failed: Password expired: change it at https://mail.example.com/password"
            ),
            "{user}: {t}"
        );
    }
}
