//! CSRF protection for the change form: a synchronizer token that is also
//! a one-time nonce (RELIABILITY T20, W1, W2).
//!
//! The GET that renders the form stores a random token in the store and
//! sets it in a `SameSite=Strict`, `HttpOnly` cookie; the form carries the
//! same token in a hidden field. A POST is accepted only when the field
//! equals the cookie *and* the token is still in the store, and the store
//! entry is deleted on use, so a captured request cannot be replayed and a
//! token from another browser does not fit this one's cookie.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use base64::Engine;
use rand::RngCore;

use crate::store::{Store, StoreError};

pub const COOKIE: &str = "mw_csrf";
/// How long a rendered form stays usable.
pub const LIFETIME: Duration = Duration::from_secs(30 * 60);

fn key(token: &str) -> String {
    format!("csrf:password:{token}")
}

/// A fresh token, remembered in the store.
pub async fn issue(store: &Arc<dyn Store>) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    store.set(&key(&token), b"1", Some(LIFETIME)).await?;
    Ok(token)
}

/// True when `form` and `cookie` carry the same live token; the token is
/// used up either way.
async fn consume(store: &Arc<dyn Store>, form: Option<&str>, cookie: Option<&str>) -> Result<bool, StoreError> {
    let Some(form) = form else { return Ok(false) };
    if form.is_empty() || form.len() > 64 || !form.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(false);
    }
    // A token shown once, in any attempt, is spent.
    let live = store.delete(&key(form)).await?;
    Ok(live && cookie.is_some_and(|c| subtle_eq(form, c)))
}

/// What a posted form's CSRF check found.
#[derive(Debug, PartialEq, Eq)]
pub enum FormCheck {
    Valid,
    /// A live token with its cookie, but posted from another origin.
    CrossOrigin,
    /// Missing, spent, expired or not this session's.
    BadToken,
}

/// The one check every HTML form post passes: the form's token is spent
/// first (so a refused cross-origin post burns it), then it must match
/// the session cookie, and the browser must say the post came from
/// `public_origin`.
pub async fn check_form(
    store: &Arc<dyn Store>,
    public_origin: &str,
    form: Option<&str>,
    headers: &HeaderMap,
) -> Result<FormCheck, StoreError> {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(from_cookie_header);
    Ok(match consume(store, form, cookie).await? {
        false => FormCheck::BadToken,
        true if same_origin(public_origin, headers) => FormCheck::Valid,
        true => FormCheck::CrossOrigin,
    })
}

/// `Sec-Fetch-Site` and `Origin`, when the browser sends them, name this
/// origin.
fn same_origin(public_origin: &str, headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origin.eq_ignore_ascii_case(public_origin),
    }
}

fn subtle_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `Set-Cookie` value; `Secure` when the public URL is https.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs())
}

/// The token from a `Cookie` header.
fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_token_fits_once_and_only_its_own_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        let a = issue(&store).await.unwrap();
        let b = issue(&store).await.unwrap();
        assert!(!consume(&store, Some(&a), Some(&b)).await.unwrap(), "token from another session");
        assert!(!consume(&store, Some(&a), Some(&a)).await.unwrap(), "used up by the failed try");
        assert!(consume(&store, Some(&b), Some(&b)).await.unwrap());
        assert!(!consume(&store, Some(&b), Some(&b)).await.unwrap(), "replay");
        assert!(!consume(&store, None, Some(&b)).await.unwrap());
        let c = issue(&store).await.unwrap();
        assert!(!consume(&store, Some(&c), None).await.unwrap(), "no cookie");
        assert!(!consume(&store, Some(&c), Some(&c)).await.unwrap(), "spent by the try without a cookie");
        assert!(!consume(&store, Some("x%00"), Some("x%00")).await.unwrap());
        assert_eq!(from_cookie_header("a=1; mw_csrf=tok; b=2"), Some("tok"));
        assert_eq!(from_cookie_header("mw_csrfx=tok"), None);
    }

    #[tokio::test]
    async fn a_form_post_needs_its_token_its_cookie_and_this_origin() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        let origin = "https://mail.example.com";
        let headers = |token: &str, from: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, format!("{COOKIE}={token}").parse().unwrap());
            if let Some(from) = from {
                h.insert(header::ORIGIN, from.parse().unwrap());
            }
            h
        };
        let t = issue(&store).await.unwrap();
        let evil = headers(&t, Some("https://evil.example.net"));
        assert_eq!(check_form(&store, origin, Some(&t), &evil).await.unwrap(), FormCheck::CrossOrigin);
        let ours = headers(&t, Some("HTTPS://mail.example.com"));
        assert_eq!(check_form(&store, origin, Some(&t), &ours).await.unwrap(), FormCheck::BadToken, "burnt");
        let t = issue(&store).await.unwrap();
        assert_eq!(check_form(&store, origin, Some(&t), &headers(&t, None)).await.unwrap(), FormCheck::Valid);
        let t = issue(&store).await.unwrap();
        let mut site = headers(&t, None);
        site.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(check_form(&store, origin, Some(&t), &site).await.unwrap(), FormCheck::CrossOrigin);
    }
}
