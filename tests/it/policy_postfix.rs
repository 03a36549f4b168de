//! Issue 4 through the real client: a private Postfix asks mailwarrant at
//! RCPT, DATA and END-OF-MESSAGE; swaks sends real mail, authenticated
//! (Postfix's Cyrus SASL, so `sasl_username` is set) and not (the
//! `by_sender` path).

use crate::policy_rig::Rig;

fn assert_refused(sent: &crate::policy_rig::Sent, code: &str, needle: &str) {
    assert!(!sent.queued, "expected a refusal:\n{}", sent.transcript);
    let line = sent
        .transcript
        .lines()
        .find(|l| l.contains(code))
        .unwrap_or_else(|| panic!("no {code} in:\n{}", sent.transcript));
    assert!(line.contains(needle), "{needle:?} not in {line:?}");
    assert!(line.contains("(ref "), "refusals carry a reference: {line}");
}

#[test]
fn send_policy_through_real_postfix() {
    let rig = Rig::start("");
    let ok = |sent: crate::policy_rig::Sent, what: &str| {
        assert!(sent.queued, "{what}:\n{}\n{}\n{}", sent.transcript, rig.log(), rig.postfix.maillog())
    };

    // A sales user sending as herself, and as her alias.
    ok(rig.send(Some("alice"), "alice@example.com", &["bob@example.com"], &[]), "alice as herself");
    ok(rig.send(Some("alice"), "a.smith@example.com", &["bob@example.com"], &[]), "alice as her alias");
    ok(rig.send(None, "alice@example.com", &["bob@example.com"], &[]), "unauthenticated alice (by sender)");
    // Sending as another user.
    let s = rig.send(Some("bob"), "alice@example.com", &["carol@example.com"], &[]);
    assert_refused(&s, "5.7.1", "not owned by bob");
    // A foreign sender domain, authenticated and not.
    let s = rig.send(Some("alice"), "alice@foreign.example", &["bob@example.com"], &[]);
    assert_refused(&s, "5.7.1", "sender_match");
    let s = rig.send(None, "mallory@foreign.example", &["bob@example.com"], &[]);
    assert_refused(&s, "5.7.1", "belongs to no user");
    // An intern: external refused, internal accepted.
    let s = rig.send(Some("carol"), "carol@example.com", &["someone@example.net"], &[]);
    assert_refused(&s, "5.7.1", "external_recipients");
    ok(rig.send(Some("carol"), "carol@example.com", &["bob@example.com"], &[]), "intern inside");
    let s = rig.send(None, "carol@example.com", &["someone@example.net"], &[]);
    assert_refused(&s, "5.7.1", "external_recipients");
    // The distribution list: refused for interns and the default profile,
    // accepted for sales (a member group through nesting).
    let s = rig.send(Some("carol"), "carol@example.com", &["all-staff@example.com"], &[]);
    assert_refused(&s, "5.7.1", "distribution_lists");
    let s = rig.send(Some("bob"), "bob@example.com", &["all-staff@example.com"], &[]);
    assert_refused(&s, "5.7.1", "distribution_lists");
    ok(rig.send(Some("alice"), "alice@example.com", &["all-staff@example.com"], &[]), "sales to the list");
    // Send-as grant.
    ok(rig.send(Some("dave"), "helpdesk@example.com", &["someone@example.net"], &[]), "dave as helpdesk");
    // 100 recipients pass, 101 are refused at DATA.
    let hundred: Vec<String> = (1..=100).map(|i| format!("r{i}@example.com")).collect();
    let refs: Vec<&str> = hundred.iter().map(String::as_str).collect();
    ok(rig.send(Some("bob"), "bob@example.com", &refs, &[]), "100 recipients");
    let mut more = refs.clone();
    more.push("r101@example.com");
    let s = rig.send(Some("bob"), "bob@example.com", &more, &[]);
    assert_refused(&s, "5.5.3", "101 recipients");
}

#[test]
fn rate_limit_through_real_postfix_survives_restart() {
    let mut rig = Rig::start("rate_limits = [{ rate = \"3/1d\" }]\nmax_message_size = 4000");
    let send = |rig: &Rig, body: Option<&str>| {
        let extra: Vec<&str> = body.map(|b| vec!["--body", b]).unwrap_or_default();
        rig.send(Some("bob"), "bob@example.com", &["alice@example.com", "carol@example.com"], &extra)
    };
    for i in 0..2 {
        let s = send(&rig, None);
        assert!(s.queued, "message {i}:\n{}\n{}", s.transcript, rig.log());
    }
    // Refused at END-OF-MESSAGE for its size: not counted.
    let big = "x".repeat(6000);
    let s = send(&rig, Some(&big));
    assert_refused(&s, "5.3.4", "max_message_size");
    let s = send(&rig, None);
    assert!(s.queued, "third message:\n{}\n{}", s.transcript, rig.log());
    // The fourth is deferred, with the reset time.
    let s = send(&rig, None);
    assert_refused(&s, "4.7.1", "3/3 messages today, resets 00:00 IST");
    let reference = s.transcript.split("(ref ").nth(1).and_then(|r| r.get(..12)).unwrap().to_owned();

    // The counter survives a restart of mailwarrant.
    rig.restart_mailwarrant();
    let s = send(&rig, None);
    assert_refused(&s, "4.7.1", "3/3 messages today");
    let (ok, out) = rig.cli(&["explain", "bob"]);
    assert!(ok && out.contains("3/3"), "{out}");
    let (ok, out) = rig.cli(&["explain", "--ref", &reference]);
    assert!(ok && out.contains("rate_limit:user_messages_1d") && out.contains("\"bob\""), "{out}");
    // Another user is not affected.
    let s = rig.send(Some("alice"), "alice@example.com", &["bob@example.com"], &[]);
    assert!(s.queued, "{}", s.transcript);
}

#[test]
fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_old_one() {
    let rig = Rig::start("");
    let external = || rig.send(Some("carol"), "carol@example.com", &["someone@example.net"], &[]);
    assert_refused(&external(), "5.7.1", "external_recipients");

    let original = std::fs::read_to_string(&rig.config).unwrap();
    let allowed =
        original.replace("priority = 20\nmay_send_external = false", "priority = 20\nmay_send_external = true");
    assert_ne!(allowed, original);
    std::fs::write(&rig.config, &allowed).unwrap();
    rig.signal_mailwarrant("HUP");
    assert!(
        mailwarrant::testkit::wait_until(std::time::Duration::from_secs(20), || external().queued),
        "the reloaded policy never applied:\n{}",
        rig.log()
    );

    // A broken file is refused with its errors; the last good policy serves on.
    std::fs::write(&rig.config, allowed.replace("may_send_external = true", "may_send_externl = true")).unwrap();
    rig.signal_mailwarrant("HUP");
    assert!(
        mailwarrant::testkit::wait_until(std::time::Duration::from_secs(20), || rig
            .log()
            .contains("configuration not reloaded")),
        "{}",
        rig.log()
    );
    assert!(rig.log().contains("may_send_externl"), "the refusal names the problem:\n{}", rig.log());
    assert!(external().queued, "{}", rig.log());
}

/// The whole chain: Postfix asks mailwarrant's Dovecot auth listener for
/// the password (checked against slapd), then asks mailwarrant's policy
/// service with the `sasl_username` that listener returned.
#[test]
fn authenticated_through_mailwarrant_auth_then_policy() {
    let rig = Rig::start_with("", crate::policy_rig::SaslVia::Mailwarrant);
    let s = rig.send(Some("alice"), "alice@example.com", &["bob@example.com"], &[]);
    assert!(s.queued, "{}\n{}\n{}", s.transcript, rig.log(), rig.postfix.maillog());
    let s = rig.send(Some("bob"), "alice@example.com", &["carol@example.com"], &[]);
    assert_refused(&s, "5.7.1", "not owned by bob");
    let s = rig.send(Some("carol"), "carol@example.com", &["someone@example.net"], &[]);
    assert_refused(&s, "5.7.1", "external_recipients");
    let s = rig.send(Some("alice"), "alice@example.com", &["all-staff@example.com"], &[]);
    assert!(s.queued, "{}", s.transcript);
}
