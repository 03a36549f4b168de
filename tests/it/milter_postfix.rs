//! Issue 8 through the real client: a private Postfix with
//! `smtpd_milters = inet:127.0.0.1:PORT` (and the policy service) in front
//! of mailwarrant and the test slapd; swaks sends real mail with header
//! `From:`s and attachments, authenticated through Postfix's Cyrus SASL so
//! the milter gets `{auth_authen}`.

use std::net::SocketAddr;
use std::time::Duration;

use mailwarrant::testkit::{free_port, wait_for_port};

use crate::policy_rig::{Rig, Sent};

fn assert_refused(rig: &Rig, sent: &Sent, code: &str, needle: &str) {
    assert!(!sent.queued, "expected a refusal:\n{}", sent.transcript);
    let line = sent
        .transcript
        .lines()
        .find(|l| l.contains(code) && l.contains(needle))
        .unwrap_or_else(|| panic!("no {code} … {needle} in:\n{}\n{}", sent.transcript, rig.log()));
    assert!(line.contains("(ref "), "refusals carry a reference: {line}");
}

/// Writes `n` small files and returns swaks `--attach @file` arguments.
fn attachments(dir: &std::path::Path, n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| {
            let path = dir.join(format!("file{i}.pdf"));
            std::fs::write(&path, format!("%PDF-1.4 file {i}\n").repeat(20)).unwrap();
            ["--attach".to_owned(), format!("@{}", path.display())]
        })
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A nested message: mixed → (alternative text/html, related html+inline
/// logo+named zip, a pdf, a forwarded message holding one more pdf).
const NESTED: &str = "From: Bob <bob@example.com>\r
To: alice@example.com\r
Subject: nested\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary=\"outer\"\r
\r
--outer\r
Content-Type: multipart/alternative; boundary=\"alt\"\r
\r
--alt\r
Content-Type: text/plain\r
\r
hello\r
--alt\r
Content-Type: multipart/related; boundary=\"rel\"\r
\r
--rel\r
Content-Type: text/html\r
\r
<p>hello <img src=\"cid:logo\"></p>\r
--rel\r
Content-Type: image/png\r
Content-Disposition: inline\r
Content-ID: <logo>\r
Content-Transfer-Encoding: base64\r
\r
iVBORw0KGgo=\r
--rel\r
Content-Type: application/zip; name=\"data.zip\"\r
Content-Transfer-Encoding: base64\r
\r
UEsDBA==\r
--rel--\r
--alt--\r
--outer\r
Content-Type: application/pdf; name=\"a.pdf\"\r
Content-Disposition: attachment; filename=\"a.pdf\"\r
Content-Transfer-Encoding: base64\r
\r
JVBERi0xLjQ=\r
--outer\r
Content-Type: message/rfc822\r
Content-Disposition: attachment\r
\r
From: carol@example.com\r
Subject: inner\r
Content-Type: multipart/mixed; boundary=\"inner\"\r
\r
--inner\r
Content-Type: text/plain\r
\r
inner text\r
--inner\r
Content-Type: application/pdf; name=\"b.pdf\"\r
Content-Transfer-Encoding: base64\r
\r
JVBERi0xLjQ=\r
--inner--\r
--outer--\r
";

#[test]
fn header_from_and_attachments_through_real_postfix() {
    let milter_port = free_port();
    // Header From checked for everyone; at most 3 attachments by default;
    // interns none.
    let rig = Rig::start_milter("require_header_from_match = true\nmax_attachments = 3", milter_port);
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], milter_port)), Duration::from_secs(20)).unwrap();
    let ok = |sent: Sent, what: &str| {
        assert!(sent.queued, "{what}:\n{}\n{}\n{}", sent.transcript, rig.log(), rig.postfix.maillog())
    };
    let send = |login: &str, from: &str, extra: &[&str]| rig.send(Some(login), from, &["bob@example.com"], extra);

    // Header From = the login, as swaks writes it by default.
    ok(send("alice", "alice@example.com", &[]), "From = login");
    // Another user's address in From, the envelope right: refused at end of data.
    let s = send("alice", "alice@example.com", &["--header", "From: Bob <bob@example.com>"]);
    assert_refused(&rig, &s, "550 5.7.1", "header sender <bob@example.com> not owned by alice; rule header_from_match");
    // An alias in From.
    ok(send("alice", "alice@example.com", &["--header", "From: Alice Smith <a.smith@example.com>"]), "alias");
    // An RFC 2047 display name with the right address.
    ok(
        send(
            "alice",
            "alice@example.com",
            &["--header", "From: =?UTF-8?Q?Al=C3=AFce_Sm=C3=AFth?= <alice@example.com>"],
        ),
        "encoded word",
    );
    // Two From headers; a From that does not parse.
    let s = send("alice", "alice@example.com", &["--add-header", "From: alice@example.com"]);
    assert_refused(&rig, &s, "550 5.7.1", "several From or Sender headers");
    let s = send("alice", "alice@example.com", &["--header", "From: Alice <alice@example.com"]);
    assert_refused(&rig, &s, "550 5.7.1", "does not parse");
    // A send-as grant in From with Sender: dave.
    ok(
        send(
            "dave",
            "dave@example.com",
            &["--header", "From: helpdesk@example.com", "--add-header", "Sender: dave@example.com"],
        ),
        "send-as in From",
    );

    // Attachments. The intern may send none; bob up to 3.
    let files = attachments(rig.dir.path(), 11);
    let s = rig.send(Some("carol"), "carol@example.com", &["bob@example.com"], &strs(&files[..2]));
    assert_refused(&rig, &s, "550 5.7.1", "carol may not send attachments (1 found); rule attachments");
    ok(rig.send(Some("carol"), "carol@example.com", &["bob@example.com"], &[]), "intern without attachment");
    ok(send("bob", "bob@example.com", &strs(&files[..6])), "3 attachments");
    let s = send("bob", "bob@example.com", &strs(&files[..8]));
    assert_refused(&rig, &s, "550 5.7.1", "4 attachments, bob allows at most 3; rule max_attachments");

    // The nested message: data.zip, a.pdf, the forwarded message and b.pdf
    // are 4; the inline logo and the text parts are not attachments.
    let nested = rig.dir.path().join("nested.eml");
    std::fs::write(&nested, NESTED).unwrap();
    let data = format!("@{}", nested.display());
    let s = send("bob", "bob@example.com", &["--data", &data]);
    assert_refused(&rig, &s, "550 5.7.1", "4 attachments, bob allows at most 3; rule max_attachments");
    let reference = s.transcript.split("(ref ").nth(1).and_then(|r| r.get(..12)).unwrap().to_owned();
    let (ok_cli, out) = rig.cli(&["explain", "--ref", &reference]);
    assert!(ok_cli && out.contains("max_attachments") && out.contains("\"bob\""), "{out}");
    let _ = files;
}

#[test]
fn ten_attachments_pass_and_eleven_are_refused() {
    let milter_port = free_port();
    let rig = Rig::start_milter("max_attachments = 10", milter_port);
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], milter_port)), Duration::from_secs(20)).unwrap();
    let files = attachments(rig.dir.path(), 11);
    let s = rig.send(Some("bob"), "bob@example.com", &["alice@example.com"], &strs(&files[..20]));
    assert!(s.queued, "10 attachments:\n{}\n{}", s.transcript, rig.log());
    let s = rig.send(Some("bob"), "bob@example.com", &["alice@example.com"], &strs(&files));
    assert_refused(&rig, &s, "550 5.7.1", "11 attachments, bob allows at most 10; rule max_attachments");
    // Without require_header_from_match, a foreign From passes the milter
    // (the envelope rule still applies at RCPT).
    let s = rig.send(Some("bob"), "bob@example.com", &["alice@example.com"], &["--header", "From: alice@example.com"]);
    assert!(s.queued, "{}", s.transcript);
    // Unauthenticated mail (the by_sender path) is judged too.
    let s = rig.send(None, "bob@example.com", &["alice@example.com"], &strs(&files));
    assert_refused(&rig, &s, "550 5.7.1", "rule max_attachments");

    // mailwarrant down: milter_default_action = tempfail, nothing passes
    // unchecked (README guidance). Postfix tempfails the whole session
    // (an authenticating client already gets `454 4.3.0` at AUTH).
    rig.signal_mailwarrant("TERM");
    let last = std::cell::RefCell::new(String::new());
    let deferred = mailwarrant::testkit::wait_until(Duration::from_secs(20), || {
        let s = rig.send(Some("bob"), "bob@example.com", &["alice@example.com"], &[]);
        *last.borrow_mut() = s.transcript.clone();
        !s.queued && s.transcript.lines().any(|l| l.starts_with("<** 4"))
    });
    assert!(deferred, "{}", last.borrow());
    let s = rig.send(None, "bob@example.com", &["alice@example.com"], &[]);
    assert!(!s.queued && s.transcript.contains("451 4.7.1"), "{}", s.transcript);
    assert!(rig.postfix.maillog().contains("milter-reject: CONNECT"), "{}", rig.postfix.maillog());
}
