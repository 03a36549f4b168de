//! The session state machine, fed decoded commands; no sockets.

use secrecy::ExposeSecret;

use super::*;
use crate::auth::{AuthDecision, Reason};
use crate::identity::Login;
use crate::protocols::dovecot_auth::codec::decode;

fn cmd(line: &str) -> Command {
    decode(format!("{line}\n").as_bytes()).expect("valid line").0
}

fn session() -> Session {
    let mut s = Session::new(TempFailStyle::Disconnect);
    assert!(matches!(s.handle(cmd("VERSION\t1\t0")), Step::Nothing));
    assert!(matches!(s.handle(cmd("CPID\t4242")), Step::Nothing));
    s
}

fn sent(step: Step) -> Reply {
    match step {
        Step::Send(r) => r,
        Step::Authenticate { .. } => panic!("expected a reply, got Authenticate"),
        Step::Close(why) => panic!("expected a reply, got Close({why})"),
        Step::Nothing => panic!("expected a reply, got Nothing"),
    }
}

/// (id, login, authzid, password) of an Authenticate step.
fn asked(step: Step) -> (u32, String, Option<String>, String) {
    match step {
        Step::Authenticate { id, request } => {
            (id, request.login, request.authzid, request.password.expose_secret().to_owned())
        }
        _ => panic!("expected Authenticate"),
    }
}

fn closed(step: Step) -> &'static str {
    match step {
        Step::Close(why) => why,
        _ => panic!("expected Close"),
    }
}

fn decision(kind: DecisionKind, login: Option<&str>, text: &str) -> AuthDecision {
    AuthDecision {
        kind,
        reason: Reason::Verified,
        login: login.map(Login::new),
        reply_text: text.into(),
        not_before: None,
    }
}

#[test]
fn plain_with_initial_response() {
    let mut s = session();
    let step =
        s.handle(cmd("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAGFsaWNlLXB3"));
    assert_eq!(asked(step), (1, "alice".into(), None, "alice-pw".into()));
    let ok = sent(s.finish(1, "alice", &decision(DecisionKind::Accepted, Some("alice"), "")));
    assert_eq!(ok, Reply::Ok { id: 1, user: "alice".into() });
}

#[test]
fn plain_without_initial_response_gets_an_empty_challenge() {
    let mut s = session();
    assert_eq!(sent(s.handle(cmd("AUTH\t10\tPLAIN\tservice=smtp"))), Reply::Cont { id: 10, data: String::new() });
    assert_eq!(asked(s.handle(cmd("CONT\t10\tAGFsaWNlAGFsaWNlLXB3"))).1, "alice");
}

#[test]
fn login_asks_username_then_password() {
    let mut s = session();
    let c = sent(s.handle(cmd("AUTH\t3\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1")));
    assert_eq!(c, Reply::Cont { id: 3, data: LOGIN_USERNAME_CHALLENGE.into() });
    assert_eq!(sent(s.handle(cmd("CONT\t3\tYm9i"))), Reply::Cont { id: 3, data: LOGIN_PASSWORD_CHALLENGE.into() });
    assert_eq!(asked(s.handle(cmd("CONT\t3\tYm9iLXB3"))), (3, "bob".into(), None, "bob-pw".into()));
}

#[test]
fn login_with_resp_takes_it_as_the_username() {
    let mut s = session();
    let c = sent(s.handle(cmd("AUTH\t1\tLOGIN\tservice=smtp\tresp=Ym9i")));
    assert_eq!(c, Reply::Cont { id: 1, data: LOGIN_PASSWORD_CHALLENGE.into() });
    assert_eq!(asked(s.handle(cmd("CONT\t1\tYm9iLXB3"))).1, "bob");
}

#[test]
fn exim_pipelines_the_handshake_and_request() {
    let mut s = Session::new(TempFailStyle::Disconnect);
    let mut buf: &[u8] = b"VERSION\t1\t0\nCPID\t77\nAUTH\t1\tPLAIN\tservice=smtp\trip=127.0.0.1\tlip=127.0.0.1\tnologin\tresp=AGFsaWNlAGFsaWNlLXB3\n";
    let mut steps = Vec::new();
    while let Ok((c, used)) = decode(buf) {
        buf = &buf[used..];
        steps.push(s.handle(c));
    }
    assert_eq!(asked(steps.pop().unwrap()).1, "alice");
}

#[test]
fn authzid_is_passed_to_the_core() {
    let mut s = session();
    // "bob\0alice\0alice-pw": alice asking to act as bob.
    let step = s.handle(cmd("AUTH\t7\tPLAIN\tservice=smtp\tresp=Ym9iAGFsaWNlAGFsaWNlLXB3"));
    assert_eq!(asked(step).2.as_deref(), Some("bob"));
    let f = sent(s.finish(7, "alice", &decision(DecisionKind::AuthzRefused, None, "Authentication failed")));
    assert!(matches!(f, Reply::Fail { id: 7, code: Some(fail_code::AUTHZ_FAIL), .. }));
}

#[test]
fn refusals_carry_the_right_code() {
    let mut s = session();
    let expired = decision(DecisionKind::PasswordExpired, Some("erin"), "Password expired: change it at https://x");
    assert_eq!(
        sent(s.finish(5, "erin", &expired)),
        Reply::Fail {
            id: 5,
            user: Some("erin".into()),
            code: Some(fail_code::PASS_EXPIRED),
            reason: Some("Password expired: change it at https://x".into())
        }
    );
    let disabled = decision(DecisionKind::Disabled, Some("grace"), "Authentication failed");
    assert!(matches!(sent(s.finish(6, "grace", &disabled)), Reply::Fail { code: Some(fail_code::USER_DISABLED), .. }));
    let refused = decision(DecisionKind::Refused, None, "Authentication failed");
    assert!(matches!(sent(s.finish(8, "x\ny", &refused)), Reply::Fail { user: None, code: None, .. }));
}

#[test]
fn temporary_failures_disconnect_or_fail_with_temp_fail() {
    let temp = decision(DecisionKind::Temporary, None, "try later");
    assert_eq!(closed(session().finish(1, "alice", &temp)), "temporary failure");
    let mut s = Session::new(TempFailStyle::FailCode);
    assert!(matches!(sent(s.finish(1, "alice", &temp)), Reply::Fail { code: Some(fail_code::TEMP_FAIL), .. }));
}

#[test]
fn bad_requests_fail_alone_and_violations_close() {
    let mut s = session();
    let bad = sent(s.handle(cmd("AUTH\t8\tPLAIN\tservice=smtp\tresp=!!!")));
    assert!(matches!(bad, Reply::Fail { id: 8, code: Some(fail_code::INVALID_BASE64), .. }));
    let unknown = sent(s.handle(cmd("AUTH\t9\tCRAM-MD5\tservice=smtp")));
    assert!(matches!(unknown, Reply::Fail { id: 9, code: None, .. }));
    assert!(matches!(sent(s.handle(cmd("AUTH\t11\tPLAIN"))), Reply::Fail { id: 11, .. }), "no service=");
    // Still usable after those.
    assert_eq!(asked(s.handle(cmd("AUTH\t12\tPLAIN\tservice=smtp\tresp=AGFsaWNlAGFsaWNlLXB3"))).0, 12);
    // Violations.
    closed(s.handle(cmd("CONT\t99\tQQ==")));
    let mut s = Session::new(TempFailStyle::Disconnect);
    closed(s.handle(cmd("AUTH\t1\tPLAIN\tservice=smtp")));
    closed(Session::new(TempFailStyle::Disconnect).handle(cmd("VERSION\t2\t0")));
    let mut s = session();
    closed(s.handle(cmd("VERSION\t1\t0")));
    let mut s = session();
    sent(s.handle(cmd("AUTH\t1\tPLAIN\tservice=smtp")));
    closed(s.handle(cmd("AUTH\t1\tPLAIN\tservice=smtp")));
}

#[test]
fn degenerate_plain_payloads_reach_the_core_as_empty_logins() {
    // "" / "\0" / "a\0b" / "\0alice\0" / "a\0b\0c\0d" / non-UTF-8.
    for b64 in ["AA==", "YQBi", "AGFsaWNlAA==", "YQBiAGMAZA==", "AP8AeA=="] {
        let mut s = session();
        let (_, login, _, password) = asked(s.handle(cmd(&format!("AUTH\t1\tPLAIN\tservice=smtp\tresp={b64}"))));
        assert!(login.is_empty() || password.is_empty(), "{b64}");
    }
}

#[test]
fn pending_requests_are_capped() {
    let mut s = session();
    for id in 0..MAX_PENDING as u32 {
        sent(s.handle(cmd(&format!("AUTH\t{id}\tLOGIN\tservice=smtp"))));
    }
    closed(s.handle(cmd("AUTH\t999\tLOGIN\tservice=smtp")));
}

#[test]
fn invalid_lines_fail_their_request_only() {
    let mut s = session();
    assert!(matches!(sent(s.invalid(Some(4), Invalid::NotUtf8)), Reply::Fail { id: 4, .. }));
    closed(s.invalid(None, Invalid::UnknownCommand));
}
