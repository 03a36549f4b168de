use proptest::prelude::*;

use super::*;

fn check(input: &[u8], expected: Result<Option<Vec<(&str, &str)>>, CodecError>) {
    let mut buf = input.to_vec();
    let got = decode(&mut buf)
        .map(|r| r.map(|r| r.attributes().map(|(n, v)| (n.to_owned(), v.to_owned())).collect::<Vec<_>>()));
    let want =
        expected.map(|o| o.map(|v| v.into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())).collect::<Vec<_>>()));
    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
}

#[test]
fn pinned_bytes() {
    check(
        b"request=smtpd_access_policy\nprotocol_state=RCPT\n\n",
        Ok(Some(vec![("request", "smtpd_access_policy"), ("protocol_state", "RCPT")])),
    );
    // Empty values and values holding '=' are kept as sent.
    check(b"queue_id=\nccert_subject=CN=x=y\n\n", Ok(Some(vec![("queue_id", ""), ("ccert_subject", "CN=x=y")])));
    // Incomplete: no terminating empty line yet.
    check(b"request=smtpd_access_policy\n", Ok(None));
    check(b"request=smtpd_acc", Ok(None));
    check(b"", Ok(None));
    // A lone empty line is an empty request (the session refuses it).
    check(b"\n", Ok(Some(vec![])));
    check(b"garbage line\n\n", Err(CodecError::Invalid("line without '='")));
    check(b"=value\n\n", Err(CodecError::Invalid("empty attribute name")));
    check(b"a=b\0c\n\n", Err(CodecError::Invalid("NUL byte")));
    // 8-bit values decode lossily.
    check(b"helo_name=h\xe9llo\n\n", Ok(Some(vec![("helo_name", "h\u{fffd}llo")])));
}

#[test]
fn size_caps() {
    let long = format!("sender={}", "a".repeat(MAX_LINE));
    check(long.as_bytes(), Err(CodecError::TooLarge));
    check(format!("{long}\n\n").as_bytes(), Err(CodecError::TooLarge));
    let many: String = (0..=MAX_ATTRIBUTES).map(|i| format!("a{i}=b\n")).collect::<String>() + "\n";
    check(many.as_bytes(), Err(CodecError::TooLarge));
    let huge: String = (0..MAX_REQUEST / 100 + 1).map(|_| format!("x={}\n", "v".repeat(97))).collect();
    check(huge.as_bytes(), Err(CodecError::TooLarge));
}

#[test]
fn two_requests_in_one_read_come_out_one_at_a_time() {
    let mut buf = b"a=1\n\nb=2\n\nc=".to_vec();
    assert_eq!(decode(&mut buf).unwrap().unwrap().get("a"), Some("1"));
    assert_eq!(decode(&mut buf).unwrap().unwrap().get("b"), Some("2"));
    assert_eq!(decode(&mut buf).unwrap(), None);
    assert_eq!(buf, b"c=");
}

fn reply(action: &str) -> Vec<u8> {
    let mut out = b"kept".to_vec();
    encode_reply(action, &mut out);
    assert!(out.starts_with(b"kept"), "appends");
    out.split_off(4)
}

#[test]
fn replies() {
    assert_eq!(reply("DUNNO"), b"action=DUNNO\n\n");
    assert_eq!(reply("550 5.7.1 a\nb\rc"), b"action=550 5.7.1 a b c\n\n");
    assert_eq!(reply("450 4.7.1 a\u{85}b"), "action=450 4.7.1 a b\n\n".as_bytes());
    let long = reply(&"é".repeat(400));
    assert!(long.len() <= MAX_REPLY_TEXT + 9);
    assert!(std::str::from_utf8(&long).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic, and a successful decode only consumes.
    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut buf = bytes.clone();
        if let Ok(Some(_)) = decode(&mut buf) {
            prop_assert!(buf.len() < bytes.len());
        }
    }

    /// encode → decode gives the same attributes, however the bytes are split.
    #[test]
    fn encode_decode_round_trip(
        attrs in proptest::collection::vec(("[a-z_]{1,20}", "[^\n\0]{0,60}"), 1..40),
        split in 0usize..2000,
    ) {
        let request = Request::new(attrs);
        let bytes = request.encode();
        let split = split.min(bytes.len());
        let mut buf = bytes[..split].to_vec();
        let early = decode(&mut buf).unwrap();
        if split < bytes.len() {
            prop_assert_eq!(early, None);
            buf.extend_from_slice(&bytes[split..]);
            prop_assert_eq!(decode(&mut buf).unwrap(), Some(request));
        } else {
            prop_assert_eq!(early, Some(request));
        }
        prop_assert!(buf.is_empty());
    }
}
