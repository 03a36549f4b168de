//! Exact bytes, from the Postfix ↔ Dovecot capture, and malformed input.

use proptest::prelude::*;

use super::*;
use crate::protocols::dovecot_auth::session::Session;

fn encoded(replies: &[Reply]) -> String {
    let mut out = Vec::new();
    replies.iter().for_each(|r| encode(r, &mut out));
    String::from_utf8(out).unwrap()
}

#[test]
fn handshake_bytes_are_dovecots_order() {
    let cookie = *b"\xca\x84\xc1\x2e\x62\x83\x2a\x2c\xde\x38\xed\x9c\x17\xfd\x79\xd5";
    assert_eq!(
        encoded(&Session::handshake(17390, 19, cookie)),
        "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t17390\nCUID\t19\n\
         COOKIE\tca84c12e62832a2cde38ed9c17fd79d5\nDONE\n"
    );
}

#[test]
fn replies_are_pinned() {
    let check = |r: Reply, bytes: &str| assert_eq!(encoded(&[r]), bytes);
    check(Reply::Ok { id: 1, user: "alice".into() }, "OK\t1\tuser=alice\n");
    check(Reply::Cont { id: 3, data: "VXNlcm5hbWU6".into() }, "CONT\t3\tVXNlcm5hbWU6\n");
    check(Reply::Cont { id: 10, data: String::new() }, "CONT\t10\t\n");
    check(
        Reply::Fail { id: 2, user: Some("alice".into()), code: None, reason: Some("Authentication failed".into()) },
        "FAIL\t2\tuser=alice\treason=Authentication failed\n",
    );
    check(
        Reply::Fail {
            id: 5,
            user: None,
            code: Some(fail_code::PASS_EXPIRED),
            reason: Some("Password expired: change it at https://x/pw".into()),
        },
        "FAIL\t5\tcode=pass_expired\treason=Password expired: change it at https://x/pw\n",
    );
    check(
        Reply::Fail { id: 7, user: None, code: Some(fail_code::TEMP_FAIL), reason: None },
        "FAIL\t7\tcode=temp_fail\n",
    );
    // A value can never split a field or a line.
    check(Reply::Ok { id: 1, user: "a\tb\nc".into() }, "OK\t1\tuser=a\u{1}tb\u{1}nc\n");
}

#[test]
fn postfix_lines_decode() {
    let line = b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAGFsaWNlLXB3\n";
    let (cmd, used) = decode(line).unwrap();
    assert_eq!(used, line.len());
    assert_eq!(
        cmd,
        Command::Auth(AuthCommand {
            id: 1,
            mechanism: "PLAIN".into(),
            service: Some("smtp".into()),
            remote_ip: Some("127.0.0.1".parse().unwrap()),
            response: Some("AGFsaWNlAGFsaWNlLXB3".into()),
        })
    );
    assert_eq!(decode(b"VERSION\t1\t0\nCPID\t1\n").unwrap(), (Command::Version { major: 1, minor: 0 }, 12));
    assert_eq!(decode(b"CPID\t19791\n").unwrap().0, Command::Cpid("19791".into()));
    assert_eq!(decode(b"CONT\t3\tYm9i\n").unwrap().0, Command::Cont { id: 3, data: "Ym9i".into() });
}

#[test]
fn exim_lines_decode_with_empty_resp_and_params_in_its_order() {
    let line = b"AUTH\t1\tlogin\tservice=smtp\tsecured\trip=10.0.0.9\tlip=10.0.0.1\tnologin\tresp=\n";
    let Command::Auth(a) = decode(line).unwrap().0 else { panic!("not AUTH") };
    assert_eq!((a.mechanism.as_str(), a.response, a.remote_ip), ("LOGIN", None, Some("10.0.0.9".parse().unwrap())));
}

#[test]
fn unknown_parameters_are_ignored_and_resp_is_last() {
    let line = b"AUTH\t4\tPLAIN\tservice=smtp\tsession=abc\tdebug\tfuture-flag=1\tresp=QQ==\tignored=after\n";
    let Command::Auth(a) = decode(line).unwrap().0 else { panic!("not AUTH") };
    assert_eq!(a.response.as_deref(), Some("QQ=="));
}

fn check(input: &[u8], expected: Result<(), DecodeError>) {
    assert_eq!(decode(input).map(|_| ()), expected, "{:?}", String::from_utf8_lossy(input));
}

/// A whole one-line input that must be refused.
fn bad(input: &[u8], id: Option<u32>, why: Invalid) {
    check(input, invalid(input.len(), id, why));
}

fn invalid(consumed: usize, id: Option<u32>, why: Invalid) -> Result<(), DecodeError> {
    Err(DecodeError::Invalid { consumed, id, why })
}

#[test]
fn malformed_lines_are_told_apart() {
    check(b"", Err(DecodeError::Incomplete));
    check(b"AUTH\t1\tPLAIN", Err(DecodeError::Incomplete));
    check(&vec![b'A'; MAX_LINE], Err(DecodeError::TooLarge));
    check(&[vec![b'A'; MAX_LINE - 1], b"\n".to_vec()].concat(), invalid(MAX_LINE, None, Invalid::UnknownCommand));
    check(
        &[b"AUTH\t1\tPLAIN\tservice=smtp\tresp=".to_vec(), vec![b'Q'; MAX_LINE], b"\n".to_vec()].concat(),
        Err(DecodeError::TooLarge),
    );
    check(&vec![b'x'; 1 << 20], Err(DecodeError::TooLarge));
    bad(b"HELLO\n", None, Invalid::UnknownCommand);
    bad(b"\n", None, Invalid::UnknownCommand);
    bad(b"auth\t1\tPLAIN\n", None, Invalid::UnknownCommand);
    bad(b"AUTH\tx\tPLAIN\n", None, Invalid::BadId);
    bad(b"AUTH\t-1\tPLAIN\n", None, Invalid::BadId);
    bad(b"AUTH\t99999999999\tPLAIN\n", None, Invalid::BadId);
    bad(b"AUTH\t1\n", Some(1), Invalid::MissingField);
    bad(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=\xff\n", Some(1), Invalid::NotUtf8);
    bad(b"AUTH\t2\tPLAIN\tservice=sm\0tp\n", Some(2), Invalid::ControlCharacter);
    bad(b"AUTH\t2\tPLAIN\tservice=smtp\rresp=x\n", Some(2), Invalid::ControlCharacter);
    bad(b"VERSION\t2\n", None, Invalid::BadVersion);
    bad(b"VERSION\n", None, Invalid::BadVersion);
    bad(b"CPID\n", None, Invalid::MissingField);
    bad(b"CONT\n", None, Invalid::BadId);
    // CRLF is tolerated; a bare CR inside a field is not.
    check(b"CPID\t1\r\n", Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut rest: &[u8] = &input;
        while !rest.is_empty() {
            match decode(rest) {
                Ok((_, used)) | Err(DecodeError::Invalid { consumed: used, .. }) => {
                    prop_assert!(used > 0 && used <= rest.len());
                    rest = &rest[used..];
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn mutated_valid_exchanges_never_panic(
        cut in 0usize..200,
        byte in any::<u8>(),
        at in 0usize..200,
    ) {
        let mut line = b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAGFsaWNlLXB3\n".to_vec();
        let at = at % line.len();
        line[at] ^= byte;
        line.truncate(cut.max(1).min(line.len()));
        let _ = decode(&line);
    }
}
