use time::macros::datetime;

use super::super::codec::{decode, Request};
use super::*;
use crate::policy_service::tests::service;

const RECORDED: &[u8] = include_bytes!("../../../tests/data/postfix-3.7-policy-requests.txt");

fn recorded() -> Vec<Request> {
    let mut buf = RECORDED.to_vec();
    let mut out = Vec::new();
    while let Some(r) = decode(&mut buf).unwrap() {
        out.push(r);
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn recorded_postfix_requests_map_onto_send_requests() {
    let reqs = recorded();
    assert_eq!(reqs.len(), 21);
    let first = to_send_request(&reqs[0]).unwrap();
    assert_eq!(first.stage, Some(Stage::Rcpt));
    assert_eq!(first.sasl_username.as_deref(), Some("alice"));
    assert_eq!(first.sender.as_deref(), Some("alice@example.com"));
    assert_eq!(first.recipient.as_deref(), Some("bob@example.com"));
    assert_eq!(first.instance.as_deref(), Some("4d4f.6b0a04dc.36c76.0"));
    assert_eq!(first.queue_id, None);
    let eom = to_send_request(&reqs[1]).unwrap();
    assert_eq!((eom.stage, eom.recipient_count, eom.size), (Some(Stage::EndOfMessage), 1, 260));
    let three = to_send_request(&reqs[5]).unwrap();
    assert_eq!((three.recipient.as_deref(), three.recipient_count), (None, 3));
}

#[test]
fn garbage_requests_are_refused() {
    let r = Request::new(vec![("request".into(), "junk".into())]);
    assert_eq!(to_send_request(&r).unwrap_err(), SessionError::NotAPolicyRequest("junk".into()));
    assert!(to_send_request(&Request::default()).is_err());
    // Numbers that are not numbers count as absent.
    let r = Request::new(vec![
        ("request".into(), REQUEST_TYPE.into()),
        ("protocol_state".into(), "DATA".into()),
        ("recipient_count".into(), "lots".into()),
        ("size".into(), "-1".into()),
        ("sender".into(), "".into()),
    ]);
    let s = to_send_request(&r).unwrap();
    assert_eq!((s.recipient_count, s.size, s.sender.as_deref()), (0, 0, Some("")));
    assert_eq!(stage("VRFY"), Stage::Other);
}

#[tokio::test]
async fn recorded_postfix_session_gets_the_demo_answers() {
    let (_d, service) = service(|_| {}).await;
    let session = Session::new(service);
    let now = datetime!(2026-11-27 12:00 UTC);
    let mut answers = Vec::new();
    for r in recorded() {
        let a = session.handle(&r, now).await.unwrap();
        // Strip the reference, which is random.
        answers.push(a.split(" (ref ").next().unwrap().to_owned());
    }
    let unknown = "550 5.7.1 login \"eve\" is not in the directory; rule unknown_user".to_owned();
    let mut want = vec!["DUNNO".to_owned(); 7];
    want.push("553 5.7.1 sender <alice@example.com> not owned by bob; rule sender_match".into());
    want.extend(std::iter::repeat_n(unknown, 13));
    assert_eq!(answers, want);
}

#[tokio::test]
async fn prepend_names_the_profile_at_data() {
    let (_d, service) = service(|_| {}).await;
    let session = Session::new(service);
    let data = Request::new(vec![
        ("request".into(), REQUEST_TYPE.into()),
        ("protocol_state".into(), "DATA".into()),
        ("sasl_username".into(), "alice".into()),
        ("sender".into(), "alice@example.com".into()),
        ("recipient_count".into(), "2".into()),
    ]);
    let now = datetime!(2026-11-27 12:00 UTC);
    assert_eq!(session.handle(&data, now).await.unwrap(), "PREPEND X-Mailwarrant-Policy: profile=sales");
}
