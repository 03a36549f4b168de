//! Random bytes into the milter codec and the session state machine: no
//! panic, and every command decoded re-encodes to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::protocols::milter::codec::{decode, decode_reply, encode_command};
use mailwarrant::protocols::milter::session::{Session, Step};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut session = Session::new();
    for _ in 0..4096 {
        let before = buf.clone();
        match decode(&mut buf) {
            Ok(Some(command)) => {
                let packet = encode_command(&command);
                // Strings are read up to their NUL and lossily decoded, so
                // only well-formed UTF-8 round-trips byte for byte.
                let used = before.len() - buf.len();
                if std::str::from_utf8(&before[..used]).is_ok() {
                    let mut again = packet.clone();
                    assert_eq!(decode(&mut again).ok().flatten(), Some(command.clone()));
                }
                if let Step::Close = session.feed(command) {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = decode_reply(&mut data.to_vec());
});
