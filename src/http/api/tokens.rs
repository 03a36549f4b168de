//! API tokens: `Authorization: Bearer <token>` checked against
//! `[[http.tokens]]`.
//!
//! Tokens are written `ID.SECRET`: the public key id picks the one entry
//! to check, so an invented token costs no hash at all, and a wrong
//! secret for a real id costs one SHA-256 (`hash = "sha256:…"`, from
//! `mailwarrant new-token`; a random 256-bit secret needs no slow hash).
//! Entries without an id (argon2 hashes from before) are still checked,
//! with argon2, against tokens that name no id; a verified token is then
//! remembered by its HMAC-SHA256 under a key drawn at start-up and never
//! stored (a memory dump yields no token), and at most two argon2 checks
//! run at once. Every client gets [`FAILURES_PER_MINUTE`] wrong tokens a
//! minute; past that its tokens are refused unchecked until the minute
//! is over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use hmac::{Hmac, Mac};
use rand::{RngCore, TryRngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::http::{Scope, TokenEntry, TokenHash};

/// Longest token looked at; longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 512;
/// Remembered wrong tokens (oldest dropped first).
const REFUSED_KEPT: usize = 1024;
/// Argon2 checks running at once.
const ARGON2_AT_ONCE: usize = 2;
/// Wrong tokens a client may present per [`FAILURE_WINDOW`].
pub const FAILURES_PER_MINUTE: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Clients whose failures are remembered; beyond, the oldest windows go.
const CLIENTS_KEPT: usize = 4096;

/// What a verified token may do.
#[derive(Debug)]
pub struct Grant {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Grant {
    /// `admin` implies every other scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }
}

type Mac32 = [u8; 32];

pub struct TokenVerifier {
    key: [u8; 32],
    entries: Vec<TokenEntry>,
    verified: RwLock<Vec<(Mac32, Arc<Grant>)>>,
    refused: Mutex<std::collections::VecDeque<Mac32>>,
    argon2: Semaphore,
    /// Wrong tokens per client in the current window.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl TokenVerifier {
    pub fn new(entries: Vec<TokenEntry>) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.unwrap_err().fill_bytes(&mut key);
        Self {
            key,
            entries,
            verified: RwLock::new(Vec::new()),
            refused: Mutex::new(Default::default()),
            argon2: Semaphore::new(ARGON2_AT_ONCE),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn mac(&self, token: &str) -> Mac32 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(token.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The grant of a token presented by `client`, or `None`.
    pub async fn verify(self: &Arc<Self>, token: &str, client: IpAddr) -> Option<Arc<Grant>> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || self.entries.is_empty() {
            return None;
        }
        if self.throttled(client) {
            tracing::debug!(%client, "bearer token refused unchecked: too many wrong ones");
            return None;
        }
        let found = self.check(token).await;
        if found.is_none() {
            self.failed(client);
        }
        found
    }

    async fn check(self: &Arc<Self>, token: &str) -> Option<Arc<Grant>> {
        if let Some((id, _)) = token.split_once('.') {
            if let Some(entry) = self.entries.iter().find(|e| e.id.as_deref() == Some(id)) {
                return match &entry.hash {
                    TokenHash::Sha256(digest) => {
                        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                        bool::from(presented.ct_eq(digest)).then(|| grant(entry))
                    }
                    TokenHash::Argon2(_) => self.slow(token, vec![entry.clone()]).await,
                };
            }
        }
        // No id of ours: only entries without an id can match.
        let legacy: Vec<TokenEntry> = self.entries.iter().filter(|e| e.id.is_none()).cloned().collect();
        if legacy.is_empty() {
            return None;
        }
        self.slow(token, legacy).await
    }

    /// Argon2 against `entries`, remembering the answer by HMAC.
    async fn slow(self: &Arc<Self>, token: &str, entries: Vec<TokenEntry>) -> Option<Arc<Grant>> {
        let mac = self.mac(token);
        if let Some(grant) = self.remembered(&mac) {
            return Some(grant);
        }
        if self.refused.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|m| bool::from(m.ct_eq(&mac))) {
            return None;
        }
        let _permit = self.argon2.acquire().await.ok()?;
        // Another request may have verified it while this one waited.
        if let Some(grant) = self.remembered(&mac) {
            return Some(grant);
        }
        let token = zeroize::Zeroizing::new(token.to_owned());
        let found = tokio::task::spawn_blocking(move || argon2_verify(&token, &entries)).await.ok()?;
        match found {
            Some(grant) => {
                self.verified.write().unwrap_or_else(|e| e.into_inner()).push((mac, grant.clone()));
                Some(grant)
            }
            None => {
                let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if refused.len() >= REFUSED_KEPT {
                    refused.pop_front();
                }
                refused.push_back(mac);
                None
            }
        }
    }

    /// A constant-time scan of every remembered token (no early exit).
    fn remembered(&self, mac: &Mac32) -> Option<Arc<Grant>> {
        let verified = self.verified.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (m, grant) in verified.iter() {
            if bool::from(m.ct_eq(mac)) {
                found = Some(grant.clone());
            }
        }
        found
    }

    fn throttled(&self, client: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(&client).is_some_and(|(n, since)| *n >= FAILURES_PER_MINUTE && since.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= CLIENTS_KEPT && !failures.contains_key(&client) {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if failures.len() >= CLIENTS_KEPT {
                // Still full of live windows: a flood of addresses. Start over
                // rather than grow; each address is again allowed its share.
                failures.clear();
            }
        }
        let slot = failures.entry(client).or_insert((0, Instant::now()));
        if slot.1.elapsed() >= FAILURE_WINDOW {
            *slot = (0, Instant::now());
        }
        slot.0 += 1;
    }
}

fn grant(entry: &TokenEntry) -> Arc<Grant> {
    Arc::new(Grant { name: entry.name.clone(), scopes: entry.scopes.clone() })
}

fn argon2_verify(token: &str, entries: &[TokenEntry]) -> Option<Arc<Grant>> {
    entries.iter().find_map(|e| {
        let TokenHash::Argon2(phc) = &e.hash else { return None };
        let hash = PasswordHash::new(phc).ok()?;
        Argon2::default().verify_password(token.as_bytes(), &hash).ok().map(|()| grant(e))
    })
}

/// A new `ID.SECRET` token (256 random bits) and its `sha256:` hash, for
/// `mailwarrant new-token`.
pub fn new_token(id: &str) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut secret);
    use base64::Engine;
    let token = format!("{id}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (token, format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn entry(name: &str, token: &str, scopes: Vec<Scope>) -> TokenEntry {
        let hash = crate::directory::ldif::password::hash(token.as_bytes()).unwrap();
        let hash = TokenHash::Argon2(hash.trim_start_matches("{ARGON2}").into());
        TokenEntry { name: name.into(), id: None, hash, scopes }
    }

    fn keyed(id: &str, scopes: Vec<Scope>) -> (String, TokenEntry) {
        let (token, hash) = new_token(id);
        let digest = hash.strip_prefix("sha256:").unwrap();
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap();
        }
        (token, TokenEntry { name: id.into(), id: Some(id.into()), hash: TokenHash::Sha256(d), scopes })
    }

    #[tokio::test]
    async fn tokens_are_verified_once_and_scopes_hold() {
        let v = Arc::new(TokenVerifier::new(vec![
            entry("mx", "tok-lookup-1", vec![Scope::Lookup]),
            entry("ops", "tok-admin-1", vec![Scope::Admin]),
        ]));
        let mx = v.verify("tok-lookup-1", CLIENT).await.unwrap();
        assert_eq!(mx.name, "mx");
        assert!(mx.allows(Scope::Lookup) && !mx.allows(Scope::Admin) && !mx.allows(Scope::Auth));
        let ops = v.verify("tok-admin-1", CLIENT).await.unwrap();
        assert!(ops.allows(Scope::Auth) && ops.allows(Scope::Lookup) && ops.allows(Scope::Admin));
        assert!(v.verify("tok-lookup-2", CLIENT).await.is_none());
        assert!(v.verify("tok-lookup-2", CLIENT).await.is_none(), "remembered as wrong");
        assert!(v.verify("", CLIENT).await.is_none());
        assert!(v.verify(&"x".repeat(600), CLIENT).await.is_none());
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(v.verify("tok-lookup-1", CLIENT).await.is_some());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "no argon2 per request");
    }

    /// With ids, an invented token is refused without any slow hash, even
    /// in thousands, and a client past its share of wrong tokens is
    /// refused unchecked, its right token too, while others go on.
    #[tokio::test]
    async fn invented_tokens_cost_no_argon2_and_wrong_ones_are_throttled_per_client() {
        let (webmail, e1) = keyed("webmail", vec![Scope::Lookup]);
        let (ops, e2) = keyed("ops", vec![Scope::Admin]);
        let v = Arc::new(TokenVerifier::new(vec![e1, e2]));
        assert_eq!(v.verify(&webmail, CLIENT).await.unwrap().name, "webmail");
        assert!(v.verify(&ops, CLIENT).await.unwrap().allows(Scope::Auth));
        let started = std::time::Instant::now();
        for i in 0..5000u32 {
            let client = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            assert!(v.verify(&format!("random-{i}"), client).await.is_none());
            assert!(v.verify(&format!("webmail.random-{i}"), client).await.is_none());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());

        for i in 0..FAILURES_PER_MINUTE {
            assert!(v.verify(&format!("ops.wrong-{i}"), CLIENT).await.is_none());
        }
        assert!(v.verify(&ops, CLIENT).await.is_none(), "throttled: refused unchecked");
        let other = IpAddr::from([192, 0, 2, 8]);
        assert!(v.verify(&ops, other).await.is_some(), "another client is not affected");
        assert!(v.failures.lock().unwrap().len() <= CLIENTS_KEPT);
    }
}
