use proptest::prelude::*;

use super::*;

fn one(bytes: &[u8]) -> Result<Option<Command>, CodecError> {
    let mut buf = bytes.to_vec();
    let r = decode(&mut buf);
    if let Ok(Some(_)) = r {
        assert!(buf.is_empty(), "leftover {buf:?}");
    }
    r
}

#[test]
fn optneg_as_postfix_sends_it() {
    // Postfix 3.x, milter_protocol = 6: version 6, actions 0x1ff, events 0x1fffff.
    let bytes = [0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff];
    assert_eq!(one(&bytes).unwrap(), Some(Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }));
    assert_eq!(encode_command(&Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }), bytes);
}

#[test]
fn optneg_reply_with_symbol_list_bytes() {
    let reply = Reply::OptNeg {
        version: 6,
        actions: SMFIF_SETSYMLIST,
        protocol: SMFIP_NOCONNECT | SMFIP_NR_HDR,
        macros: vec![(SMFIM_ENVFROM, "{auth_authen}".into())],
    };
    let mut want = vec![0, 0, 0, 31, b'O', 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 0, 0x81, 0, 0, 0, 2];
    want.extend_from_slice(b"{auth_authen}\0");
    assert_eq!(encode(&reply), want);
    let mut buf = want.clone();
    assert_eq!(decode_reply(&mut buf).unwrap(), Some(reply));
}

#[test]
fn simple_replies_bytes() {
    assert_eq!(encode(&Reply::Continue), [0, 0, 0, 1, b'c']);
    assert_eq!(encode(&Reply::Accept), [0, 0, 0, 1, b'a']);
    assert_eq!(encode(&Reply::Tempfail), [0, 0, 0, 1, b't']);
    assert_eq!(encode(&Reply::Reject), [0, 0, 0, 1, b'r']);
    let y = encode(&Reply::ReplyCode("550 5.7.1 no\r\nway".into()));
    assert_eq!(y, b"\0\0\0\x11y550 5.7.1 noway\0");
}

#[test]
fn macros_mail_header_body_bytes() {
    let d = b"\0\0\0\x1cDM{auth_authen}\0alice\0i\0ABC\0";
    assert_eq!(
        one(d).unwrap(),
        Some(Command::Macro {
            stage: b'M',
            pairs: vec![("{auth_authen}".into(), "alice".into()), ("i".into(), "ABC".into())]
        })
    );
    let m = b"\0\0\0\x1cM<alice@example.com>\0SIZE=9\0";
    assert_eq!(one(m).unwrap(), Some(Command::Mail(vec!["<alice@example.com>".into(), "SIZE=9".into()])));
    let h = b"\0\0\0\x1aLFrom\0Alice <a@b.example>\0";
    assert_eq!(one(h).unwrap(), Some(Command::Header { name: "From".into(), value: "Alice <a@b.example>".into() }));
    assert_eq!(one(b"\0\0\0\x04Bab\n").unwrap(), Some(Command::Body(b"ab\n".to_vec())));
    assert_eq!(one(b"\0\0\0\x01E").unwrap(), Some(Command::EndOfBody(vec![])));
    for (b, c) in [
        (b'A', Command::Abort),
        (b'Q', Command::Quit),
        (b'K', Command::QuitNewConnection),
        (b'N', Command::EndOfHeaders),
        (b'T', Command::Data),
    ] {
        assert_eq!(one(&[0, 0, 0, 1, b]).unwrap(), Some(c.clone()));
        assert_eq!(encode_command(&c), [0, 0, 0, 1, b]);
    }
}

#[test]
fn connect_with_ipv4_and_unknown_family() {
    let c = b"\0\0\0\x18Clocalhost\x004\x00\x19127.0.0.1\0";
    assert_eq!(
        one(c).unwrap(),
        Some(Command::Connect { hostname: "localhost".into(), address: Some("127.0.0.1".into()) })
    );
    assert_eq!(
        encode_command(&Command::Connect { hostname: "localhost".into(), address: Some("127.0.0.1".into()) }),
        c
    );
    assert_eq!(one(b"\0\0\0\x04Cx\0U").unwrap(), Some(Command::Connect { hostname: "x".into(), address: None }));
}

#[test]
fn partial_frames_wait_for_more() {
    let full = encode_command(&Command::Header { name: "Subject".into(), value: "hi".into() });
    for cut in 0..full.len() {
        assert_eq!(one(&full[..cut]).unwrap(), None, "cut at {cut}");
    }
    // Two packets in one read come out one at a time.
    let mut buf = [full.clone(), encode_command(&Command::EndOfHeaders)].concat();
    assert!(matches!(decode(&mut buf), Ok(Some(Command::Header { .. }))));
    assert_eq!(decode(&mut buf), Ok(Some(Command::EndOfHeaders)));
    assert_eq!(decode(&mut buf), Ok(None));
}

#[test]
fn bad_frames_are_errors_not_panics() {
    assert_eq!(one(&[0, 0x10, 0, 1, b'B']), Err(CodecError::FrameTooLarge(0x10_0001)));
    assert_eq!(one(&[0xff, 0xff, 0xff, 0xff]), Err(CodecError::FrameTooLarge(0xffff_ffff)));
    assert_eq!(one(&[0, 0, 0, 0]), Err(CodecError::EmptyFrame));
    assert_eq!(one(&[0, 0, 0, 1, b'Z']), Err(CodecError::UnknownCommand(b'Z')));
    assert!(matches!(one(&[0, 0, 0, 3, b'O', 0, 6]), Err(CodecError::Malformed { command: 'O', .. })));
    assert!(matches!(one(b"\0\0\0\x04Lab\0"), Err(CodecError::Malformed { command: 'L', .. })));
    assert!(matches!(one(b"\0\0\0\x03Mab"), Err(CodecError::Malformed { command: 'M', .. })));
    assert!(matches!(one(b"\0\0\0\x01D"), Err(CodecError::Malformed { command: 'D', .. })));
    assert!(matches!(one(b"\0\0\0\x04Cx\0Z"), Err(CodecError::Malformed { command: 'C', .. })));
    // 1 MiB exactly is allowed.
    let mut big = frame(SMFIC_BODY, &vec![b'x'; MAX_FRAME - 1]);
    assert!(matches!(decode(&mut big), Ok(Some(Command::Body(b))) if b.len() == MAX_FRAME - 1));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = bytes;
        for _ in 0..64 {
            match decode(&mut buf) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = decode_reply(&mut buf.clone());
    }

    #[test]
    fn encoded_commands_round_trip(name in "[A-Za-z-]{1,20}", value in "[ -~]{0,60}", body in proptest::collection::vec(any::<u8>(), 0..300)) {
        for c in [
            Command::Header { name: name.clone(), value: value.clone() },
            Command::Body(body.clone()),
            Command::Mail(vec![format!("<{name}@example.com>")]),
            Command::Macro { stage: b'M', pairs: vec![(name.clone(), value.clone())] },
        ] {
            let mut buf = encode_command(&c);
            prop_assert_eq!(decode(&mut buf), Ok(Some(c)));
        }
    }
}
