//! Random bytes into the saslauthd request decoder: no panic, and a
//! decoded request re-encodes to the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::protocols::saslauthd::codec::{decode, encode_request};

fuzz_target!(|data: &[u8]| {
    if let Ok((request, used)) = decode(data) {
        assert!(used <= data.len());
        let mut fields: Vec<&[u8]> = vec![&request.login, &request.password, &request.service, &request.realm];
        if let Some(remote) = &request.remote {
            fields.push(remote);
        }
        assert_eq!(encode_request(&fields), &data[..used]);
    }
});
