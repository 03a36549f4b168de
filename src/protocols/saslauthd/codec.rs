//! saslauthd's request and reply framing.
//!
//! Request: four counted strings — login, password, service, realm — each
//! a 16-bit big-endian length and that many bytes (no NUL). Newer Cyrus
//! clients may append a fifth (the client address); it is read when its
//! bytes are already there and otherwise ignored. Reply: one counted
//! string, `OK` or `NO <text>`. (cyrus-sasl `saslauthd/ipc_unix.c`.)

use zeroize::Zeroizing;

/// saslauthd's `MAX_REQ_LEN`: longest field accepted.
pub const MAX_FIELD: usize = 1024;
/// Four fields plus an optional fifth, with their length prefixes.
pub const MAX_REQUEST: usize = 5 * (2 + MAX_FIELD);
pub const REPLY_OK: &str = "OK";
pub const REPLY_NO: &str = "NO";

/// One decoded request. The password is wiped when dropped.
pub struct Request {
    pub login: Vec<u8>,
    pub password: Zeroizing<Vec<u8>>,
    pub service: Vec<u8>,
    pub realm: Vec<u8>,
    /// The fifth field, when a client sent one.
    pub remote: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Incomplete,
    /// A field longer than [`MAX_FIELD`]: answer `NO` and close.
    TooLarge,
}

/// Decodes a request from the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<(Request, usize), DecodeError> {
    let mut at = 0;
    let mut fields: [Vec<u8>; 4] = Default::default();
    for field in &mut fields {
        *field = counted(buf, &mut at)?.to_vec();
    }
    let [login, password, service, realm] = fields;
    let password = Zeroizing::new(password);
    // A fifth field only when at least its length prefix is here.
    let remote = if buf.len() >= at + 2 { Some(counted(buf, &mut at)?.to_vec()) } else { None };
    Ok((Request { login, password, service, realm, remote }, at))
}

fn counted<'a>(buf: &'a [u8], at: &mut usize) -> Result<&'a [u8], DecodeError> {
    let Some(prefix) = buf.get(*at..*at + 2) else { return Err(DecodeError::Incomplete) };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len > MAX_FIELD {
        return Err(DecodeError::TooLarge);
    }
    let start = *at + 2;
    let field = buf.get(start..start + len).ok_or(DecodeError::Incomplete)?;
    *at = start + len;
    Ok(field)
}

/// `OK`, or `NO <text>`, as a counted string.
pub fn encode_reply(ok: bool, text: &str) -> Vec<u8> {
    let body = if ok {
        REPLY_OK.to_owned()
    } else if text.is_empty() {
        REPLY_NO.to_owned()
    } else {
        format!("{REPLY_NO} {text}")
    };
    let body = &body.as_bytes()[..body.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes a request, for tests and the benchmark client.
pub fn encode_request(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn four_fields_and_an_optional_fifth() {
        let four = encode_request(&[b"alice", b"pw", b"smtp", b""]);
        assert_eq!(four, b"\x00\x05alice\x00\x02pw\x00\x04smtp\x00\x00");
        let (r, used) = decode(&four).unwrap();
        assert_eq!(
            (r.login.as_slice(), r.password.as_slice(), r.service.as_slice(), used),
            (&b"alice"[..], &b"pw"[..], &b"smtp"[..], four.len())
        );
        assert!(r.remote.is_none());
        let five = encode_request(&[b"alice", b"pw", b"smtp", b"", b"192.0.2.1"]);
        assert_eq!(decode(&five).unwrap().0.remote.as_deref(), Some(&b"192.0.2.1"[..]));
    }

    #[test]
    fn partial_and_oversized_input() {
        let four = encode_request(&[b"alice", b"pw", b"smtp", b""]);
        for cut in 0..four.len() {
            assert_eq!(decode(&four[..cut]).err(), Some(DecodeError::Incomplete), "cut at {cut}");
        }
        let mut five = four.clone();
        five.extend_from_slice(b"\x00\x09192.0");
        assert_eq!(decode(&five).err(), Some(DecodeError::Incomplete));
        assert_eq!(decode(b"\x04\x01").err(), Some(DecodeError::TooLarge));
        assert_eq!(decode(b"\xff\xff").err(), Some(DecodeError::TooLarge));
    }

    #[test]
    fn replies_are_counted_strings() {
        assert_eq!(encode_reply(true, "ignored"), b"\x00\x02OK");
        assert_eq!(encode_reply(false, "Authentication failed"), b"\x00\x18NO Authentication failed");
        assert_eq!(encode_reply(false, ""), b"\x00\x02NO");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..6000)) {
            if let Ok((_, used)) = decode(&input) {
                prop_assert!(used <= input.len());
            }
        }
    }
}
