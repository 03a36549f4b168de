use time::macros::datetime;

use super::*;
use crate::policy::{AttachmentSummary, HeaderSenders, RuleKind};
use crate::policy_service::tests::service;
use crate::policy_service::Rates;

/// Postfix 3.x offers every action and every protocol bit.
const POSTFIX_ACTIONS: u32 = 0x1ff;
const POSTFIX_PROTOCOL: u32 = 0x1f_ffff;

fn negotiated() -> Session {
    let mut s = Session::new();
    match s.feed(Command::OptNeg { version: 6, actions: POSTFIX_ACTIONS, protocol: POSTFIX_PROTOCOL }) {
        Step::Reply(Reply::OptNeg { version, actions, protocol, macros }) => {
            assert_eq!(version, 6);
            assert_eq!(actions, SMFIF_SETSYMLIST);
            assert_eq!(protocol, SKIP | NO_REPLY);
            assert_eq!(protocol & (SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOHDRS | SMFIP_NOBODY), 0);
            assert_eq!(macros, [(SMFIM_ENVFROM, MAIL_MACROS.to_owned()), (SMFIM_EOM, EOM_MACROS.to_owned())]);
        }
        other => panic!("{other:?}"),
    }
    s
}

fn silent(s: &mut Session, c: Command) {
    assert!(matches!(s.feed(c), Step::Silent));
}

/// A message as Postfix sends it after negotiation; returns the request.
fn message(s: &mut Session, login: Option<&str>, from_header: &str, body: &str) -> SendRequest<'static> {
    let mut macros = vec![("{client_addr}".to_owned(), "192.0.2.7".to_owned())];
    if let Some(l) = login {
        macros.push(("{auth_authen}".into(), l.into()));
    }
    silent(s, Command::Macro { stage: b'M', pairs: macros });
    silent(s, Command::Mail(vec!["<alice@example.com>".into(), "SIZE=100".into()]));
    silent(s, Command::Rcpt(vec!["<bob@example.com>".into()]));
    silent(s, Command::Rcpt(vec!["<carol@example.com>".into()]));
    silent(s, Command::Header { name: "From".into(), value: from_header.into() });
    silent(s, Command::Header { name: "Subject".into(), value: "hi".into() });
    silent(s, Command::Header { name: "Content-Type".into(), value: "multipart/mixed; boundary=\"b\"".into() });
    silent(s, Command::Body(body.as_bytes().to_vec()));
    silent(s, Command::Macro { stage: b'E', pairs: vec![("i".into(), "4XyZ1".into())] });
    match s.feed(Command::EndOfBody(Vec::new())) {
        Step::Decide(req) => *req,
        other => panic!("{other:?}"),
    }
}

const TWO_FILES: &str = "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n--b\r\nContent-Disposition: attachment; filename=x.txt\r\n\r\nx\r\n--b--\r\n";

#[test]
fn end_of_message_builds_one_request() {
    let mut s = negotiated();
    let req = message(&mut s, Some("alice"), "Alice <alice@example.com>", TWO_FILES);
    assert_eq!(req.stage, Some(Stage::EndOfMessage));
    assert_eq!(req.sasl_username.as_deref(), Some("alice"));
    assert_eq!(req.sender.as_deref(), Some("alice@example.com"));
    assert_eq!(req.recipient_count, 2);
    assert_eq!(req.client_address.as_deref(), Some("192.0.2.7"));
    assert_eq!(req.queue_id.as_deref(), Some("4XyZ1"));
    assert_eq!(req.instance.as_deref(), Some("milter.4XyZ1"));
    assert_eq!(req.policy_context.as_deref(), Some("milter"));
    assert!(req.size > TWO_FILES.len() as u64);
    let content = req.content.unwrap();
    assert_eq!(content.attachments.map(|a| a.count), Some(2));
    assert!(matches!(content.senders, Some(HeaderSenders::Parsed { ref from, .. }) if from.len() == 1));
}

#[test]
fn messages_on_one_connection_are_independent_and_abort_resets() {
    let mut s = negotiated();
    let first = message(&mut s, Some("alice"), "alice@example.com", TWO_FILES);
    // Second message: half sent, then aborted.
    silent(&mut s, Command::Macro { stage: b'M', pairs: vec![("{auth_authen}".into(), "bob".into())] });
    silent(&mut s, Command::Mail(vec!["<bob@example.com>".into()]));
    silent(&mut s, Command::Rcpt(vec!["<x@example.com>".into()]));
    silent(&mut s, Command::Header { name: "From".into(), value: "bob@example.com".into() });
    silent(&mut s, Command::Abort);
    // Third: unauthenticated, no attachments, a fresh recipient count.
    silent(&mut s, Command::Mail(vec!["<>".into()]));
    silent(&mut s, Command::Rcpt(vec!["<x@example.com>".into()]));
    silent(&mut s, Command::Header { name: "From".into(), value: "carol@example.com".into() });
    let Step::Decide(third) = s.feed(Command::EndOfBody(b"hello\r\n".to_vec())) else { panic!() };
    assert_eq!(third.sasl_username, None);
    assert_eq!(third.sender.as_deref(), Some(""));
    assert_eq!(third.recipient_count, 1);
    assert_eq!(third.queue_id, None);
    assert_ne!(third.instance, first.instance);
    let c = third.content.unwrap();
    assert_eq!(c.attachments, Some(AttachmentSummary::default()));
    assert_eq!(
        c.senders,
        Some(HeaderSenders::Parsed {
            from: vec![crate::identity::Address::parse("carol@example.com").unwrap()],
            sender: None
        })
    );
    // Quit-new-connection keeps the session usable; quit closes.
    silent(&mut s, Command::QuitNewConnection);
    assert!(matches!(s.feed(Command::Quit), Step::Close));
}

#[test]
fn without_no_reply_flags_every_stage_is_answered() {
    // An MTA offering only the version-2 skip bits: nothing waived.
    let mut s = Session::new();
    let Step::Reply(Reply::OptNeg { protocol, actions, macros, .. }) =
        s.feed(Command::OptNeg { version: 2, actions: 0x3f, protocol: 0x7f })
    else {
        panic!()
    };
    assert_eq!((protocol, actions, macros.len()), (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOEOH, 0, 0));
    for c in [
        Command::Connect { hostname: "h".into(), address: Some("127.0.0.1".into()) },
        Command::Helo("h".into()),
        Command::Mail(vec!["<a@example.com>".into()]),
        Command::Rcpt(vec!["<b@example.com>".into()]),
        Command::Data,
        Command::Header { name: "From".into(), value: "a@example.com".into() },
        Command::EndOfHeaders,
        Command::Body(b"x".to_vec()),
        Command::Unknown(b"XYZZY\0".to_vec()),
    ] {
        assert!(matches!(s.feed(c.clone()), Step::Reply(Reply::Continue)), "{c:?}");
    }
    silent(&mut s, Command::Macro { stage: b'C', pairs: vec![] });
}

const NOW: time::OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

async fn decide(svc: &crate::policy_service::PolicyService, req: &SendRequest<'_>) -> Reply {
    Session::verdict(&svc.check_with(crate::metrics::MILTER, req, NOW, Rates::Skip).await)
}

#[tokio::test]
async fn the_service_decides_from_headers_and_attachments() {
    let (_d, svc) = service(|p| {
        let set = std::sync::Arc::make_mut(&mut p.set);
        set.default.fields.require_header_from_match = Some(true);
        set.default.fields.max_attachments = Some(1);
    })
    .await;
    let mut s = negotiated();
    let ok = message(&mut s, Some("alice"), "Alice <alice@example.com>", "--b\r\n\r\nhi\r\n--b--\r\n");
    assert_eq!(decide(&svc, &ok).await, Reply::Continue);
    let spoof = message(&mut s, Some("alice"), "Bob <bob@example.com>", "--b\r\n\r\nhi\r\n--b--\r\n");
    let Reply::ReplyCode(line) = decide(&svc, &spoof).await else { panic!() };
    assert!(
        line.starts_with("550 5.7.1 header sender <bob@example.com> not owned by alice; rule header_from_match (ref "),
        "{line}"
    );
    let two = message(&mut s, Some("alice"), "alice@example.com", TWO_FILES);
    let Reply::ReplyCode(line) = decide(&svc, &two).await else { panic!() };
    assert!(line.contains(RuleKind::MaxAttachments.as_str()), "{line}");
    // The intern may send none.
    let mut carol = message(&mut s, Some("carol"), "carol@example.com", TWO_FILES);
    carol.sender = Some("carol@example.com".into());
    let Reply::ReplyCode(line) = decide(&svc, &carol).await else { panic!() };
    assert!(line.contains("carol may not send attachments (2 found); rule attachments"), "{line}");
}
