//! The Postfix fixture itself: a private instance accepts and relays.

use std::time::Duration;

use mailwarrant::testkit::postfix::Postfix;

#[test]
fn a_private_postfix_relays_to_the_sink() {
    let postfix = Postfix::start(&[("mynetworks", "127.0.0.0/8")]).unwrap();
    let out = postfix.swaks(&["--from", "bob@example.com", "--to", "someone@example.org"]);
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("250 2.0.0 Ok: queued as"), "{transcript}");
    assert!(postfix.wait_for_log("status=sent", Duration::from_secs(20)), "{}", postfix.maillog());
}
