//! Random bytes into the Postfix policy delegation decoder and the
//! request → `SendRequest` mapping: no panic; a request either decodes
//! (consuming its bytes) or the connection would close.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::protocols::policy_delegation::codec::{decode, encode_reply};
use mailwarrant::protocols::policy_delegation::session::to_send_request;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    for _ in 0..1024 {
        let before = buf.len();
        match decode(&mut buf) {
            Ok(Some(request)) => {
                assert!(buf.len() < before, "a decoded request consumes bytes");
                let _ = to_send_request(&request);
            }
            _ => break,
        }
    }
    let mut reply = Vec::new();
    encode_reply(&String::from_utf8_lossy(data), &mut reply);
    assert!(reply.starts_with(b"action=") && reply.ends_with(b"\n\n"));
    assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 2, "one reply, never an injected line");
});
