//! Random bytes into the Dovecot auth codec and the session state machine
//! (what a Postfix or Exim peer, or anything else on the socket, can
//! send): no panic, decoding always makes progress or asks for more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::config::auth::TempFailStyle;
use mailwarrant::protocols::dovecot_auth::codec::{decode, DecodeError};
use mailwarrant::protocols::dovecot_auth::session::Session;

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(TempFailStyle::default());
    let mut at = 0;
    while at < data.len() {
        match decode(&data[at..]) {
            Ok((command, used)) => {
                assert!(used > 0 && at + used <= data.len());
                at += used;
                let _ = session.handle(command);
            }
            Err(DecodeError::Invalid { consumed, id, why }) => {
                assert!(consumed > 0 && at + consumed <= data.len());
                at += consumed;
                let _ = session.invalid(id, why);
            }
            Err(_) => break,
        }
    }
});
