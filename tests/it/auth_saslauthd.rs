//! The saslauthd socket, checked with Cyrus SASL's own `testsaslauthd`.

use std::process::Command;

use mailwarrant::testkit::require_package;

use mailwarrant::testkit::slapd::Slapd;

use crate::auth_stack::Stack;

fn testsaslauthd(stack: &Stack, user: &str, password: &str, realm: Option<&str>) -> String {
    let mut cmd = Command::new("testsaslauthd");
    cmd.arg("-f").arg(&stack.saslauthd_socket).args(["-u", user, "-p", password, "-s", "smtp"]);
    if let Some(r) = realm {
        cmd.args(["-r", r]);
    }
    let out = cmd.output().expect("testsaslauthd runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn testsaslauthd_gets_ok_and_no() {
    require_package("sasl2-bin").unwrap();
    let slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "");
    let ok = testsaslauthd(&stack, "alice", "Alice-Demo-2026!", None);
    assert!(ok.contains("0: OK \"Success.\""), "{ok}");
    let ok = testsaslauthd(&stack, "alice", "Alice-Demo-2026!", Some("example.com"));
    assert!(ok.contains("0: OK"), "realm appended: {ok}");
    // testsaslauthd prints its own text for any NO; the reply bytes are
    // pinned in the codec tests.
    for (user, password) in
        [("alice", "wrong"), ("erin", "Erin-Demo-2026!"), ("grace", "Grace-Demo-2026!"), ("nobody", "x"), ("alice", "")]
    {
        let no = testsaslauthd(&stack, user, password, None);
        assert!(no.starts_with("0: NO"), "{user}: {no}");
    }
}
