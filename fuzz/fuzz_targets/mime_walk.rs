//! Random bytes into the streaming MIME walker, whole and cut in two at a
//! fuzzer-chosen point: no panic, and the same summary however the input
//! is split. Also the From/Sender parser on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::protocols::milter::headers::SenderHeaders;
use mailwarrant::protocols::milter::mime::MimeWalker;

fuzz_target!(|data: &[u8]| {
    let (cut, message) = match data.split_first() {
        Some((c, rest)) => (*c as usize * rest.len() / 255, rest),
        None => return,
    };
    let mut whole = MimeWalker::new();
    whole.feed(message);
    let whole = whole.finish();
    let mut split = MimeWalker::new();
    split.feed(&message[..cut]);
    split.feed(&message[cut..]);
    assert_eq!(split.finish(), whole);

    let mut h = SenderHeaders::default();
    h.add("From", &String::from_utf8_lossy(message));
    let _ = h.finish();
});
