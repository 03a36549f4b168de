//! CSRF protection for the HTML forms (the password page, the admin
//! sign-in): a signed double-submit token that is also a one-time nonce
//! (docs/threat-model.md T20, W1, W2).
//!
//! Rendering a form stores nothing: the token is `expiry.nonce.mac`, an
//! HMAC-SHA256 under one key per deployment (drawn once, kept in the
//! store so every instance behind a balancer shares it), set in a
//! `SameSite=Strict`, `HttpOnly` cookie and repeated in a hidden field.
//! Anonymous GETs therefore cannot grow the store. A POST is accepted only
//! when the field equals the cookie, the signature holds, the token has
//! not expired, and it was not spent before: a signed token is spent on
//! its first post (a short-lived marker until it would expire anyway), so
//! a captured request cannot be replayed. Only posts of tokens this
//! service signed reach the store.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{RngCore, TryRngCore};
use sha2::Sha256;

use crate::store::{Store, StoreError};

pub const COOKIE: &str = "mw_csrf";
/// How long a rendered form stays usable.
pub const LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The signing key's place in the store.
const KEY: &str = "csrf:key";
/// Longest token looked at.
const MAX_TOKEN: usize = 128;

/// The signing key, read from (or first written to) the store once per
/// process.
static SIGNING_KEY: OnceLock<[u8; 32]> = OnceLock::new();

async fn signing_key(store: &Arc<dyn Store>) -> Result<&'static [u8; 32], StoreError> {
    if let Some(key) = SIGNING_KEY.get() {
        return Ok(key);
    }
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut fresh);
    // The first instance to start writes it; everyone uses that one.
    store.set_if_absent(KEY, &fresh, None).await?;
    let stored = store.get(KEY).await?.unwrap_or_default();
    let key: [u8; 32] = stored
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Unavailable("the CSRF key in the store is damaged".into()))?;
    Ok(SIGNING_KEY.get_or_init(|| key))
}

fn mac(key: &[u8; 32], expiry: u64, nonce: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(format!("csrf|{expiry}|{nonce}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh signed token; nothing is stored.
pub async fn issue(store: &Arc<dyn Store>) -> Result<String, StoreError> {
    let key = signing_key(store).await?;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut bytes);
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let expiry = now_secs() + LIFETIME.as_secs();
    Ok(format!("{expiry}.{nonce}.{}", mac(key, expiry, &nonce)))
}

/// The nonce and remaining lifetime of a token this service signed and
/// that has not expired (public for the `http_form` fuzz target).
pub fn verify<'a>(key: &[u8; 32], token: &'a str, now: u64) -> Option<(&'a str, Duration)> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let mut parts = token.splitn(3, '.');
    let (expiry, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let expiry: u64 = expiry.parse().ok()?;
    if !subtle_eq(&mac(key, expiry, nonce), tag) || expiry <= now {
        return None;
    }
    Some((nonce, Duration::from_secs(expiry - now)))
}

/// True when `form` and `cookie` carry the same live token that was not
/// spent before; a signed token is spent either way.
async fn consume(store: &Arc<dyn Store>, form: Option<&str>, cookie: Option<&str>) -> Result<bool, StoreError> {
    let Some(form) = form else { return Ok(false) };
    let key = signing_key(store).await?;
    let Some((nonce, left)) = verify(key, form, now_secs()) else { return Ok(false) };
    // A token shown once, in any attempt, is spent.
    let first_use = store.set_if_absent(&format!("csrf:spent:{nonce}"), b"1", Some(left)).await?;
    Ok(first_use && cookie.is_some_and(|c| subtle_eq(form, c)))
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
pub fn from_cookie_header(header: &str) -> Option<&str> {
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
        // Forged, tampered, expired.
        let d = issue(&store).await.unwrap();
        let forged = format!("{}.AAAA", d.rsplit_once('.').unwrap().0);
        assert!(!consume(&store, Some(&forged), Some(&forged)).await.unwrap());
        let key = signing_key(&store).await.unwrap();
        let (nonce, left) = verify(key, &d, now_secs()).unwrap();
        assert!(left <= LIFETIME && !nonce.is_empty());
        assert!(verify(key, &d, now_secs() + LIFETIME.as_secs() + 1).is_none(), "expired");
        let later = format!("{}{}", d.split('.').next().unwrap(), 9);
        assert!(verify(key, &format!("{later}.{}", d.split_once('.').unwrap().1), now_secs()).is_none());
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
