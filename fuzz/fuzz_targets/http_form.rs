//! Random bytes as a posted HTML form and its `Cookie` header: the admin
//! sign-in form decodes (as axum's `Form` does, with serde_urlencoded) or
//! is refused, never panics; a CSRF token from the input is never taken
//! for one this service signed, and the cookie parser finds only what
//! follows `mw_csrf=`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailwarrant::http::admin::LoginForm;
use mailwarrant::http::csrf::{from_cookie_header, verify, COOKIE};

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(data) {
        if let Some(token) = form.csrf.as_deref() {
            assert!(verify(&[7u8; 32], token, 0).is_none(), "an unsigned token passed");
        }
    }
    let header = String::from_utf8_lossy(data);
    if let Some(token) = from_cookie_header(&header) {
        assert!(header.contains(&format!("{COOKIE}={token}")));
    }
});
