//! API tokens: `Authorization: Bearer <token>` checked against the argon2
//! hashes of `[[http.tokens]]`.
//!
//! Argon2 on every request would cap the API at a few hundred requests a
//! second per core, so a token is verified with argon2 once and then
//! remembered by its HMAC-SHA256 under a key drawn at start-up and never
//! stored (as the AUTH credential cache does): a memory dump yields no
//! token, and a lookup costs one HMAC and a constant-time scan. Wrong
//! tokens are remembered too, so replaying one costs no argon2; and at
//! most two argon2 checks run at once, so a flood of invented tokens
//! cannot take the CPU from mail.

use std::sync::{Arc, Mutex, RwLock};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::http::{Scope, TokenEntry};

/// Longest token looked at; longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 512;
/// Remembered wrong tokens (oldest dropped first).
const REFUSED_KEPT: usize = 1024;
/// Argon2 checks running at once.
const ARGON2_AT_ONCE: usize = 2;

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
}

impl TokenVerifier {
    pub fn new(entries: Vec<TokenEntry>) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            key,
            entries,
            verified: RwLock::new(Vec::new()),
            refused: Mutex::new(Default::default()),
            argon2: Semaphore::new(ARGON2_AT_ONCE),
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

    /// The grant of a presented token, or `None`.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Option<Arc<Grant>> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || self.entries.is_empty() {
            return None;
        }
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
        let this = self.clone();
        let token = zeroize::Zeroizing::new(token.to_owned());
        let found = tokio::task::spawn_blocking(move || this.slow_verify(&token)).await.ok()?;
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

    fn slow_verify(&self, token: &str) -> Option<Arc<Grant>> {
        self.entries.iter().find_map(|e| {
            let hash = PasswordHash::new(&e.hash).ok()?;
            Argon2::default()
                .verify_password(token.as_bytes(), &hash)
                .ok()
                .map(|()| Arc::new(Grant { name: e.name.clone(), scopes: e.scopes.clone() }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, scopes: Vec<Scope>) -> TokenEntry {
        let hash = crate::directory::ldif::password::hash(token.as_bytes()).unwrap();
        TokenEntry { name: name.into(), hash: hash.trim_start_matches("{ARGON2}").into(), scopes }
    }

    #[tokio::test]
    async fn tokens_are_verified_once_and_scopes_hold() {
        let v = Arc::new(TokenVerifier::new(vec![
            entry("mx", "tok-lookup-1", vec![Scope::Lookup]),
            entry("ops", "tok-admin-1", vec![Scope::Admin]),
        ]));
        let mx = v.verify("tok-lookup-1").await.unwrap();
        assert_eq!(mx.name, "mx");
        assert!(mx.allows(Scope::Lookup) && !mx.allows(Scope::Admin) && !mx.allows(Scope::Auth));
        let ops = v.verify("tok-admin-1").await.unwrap();
        assert!(ops.allows(Scope::Auth) && ops.allows(Scope::Lookup) && ops.allows(Scope::Admin));
        assert!(v.verify("tok-lookup-2").await.is_none());
        assert!(v.verify("tok-lookup-2").await.is_none(), "remembered as wrong");
        assert!(v.verify("").await.is_none());
        assert!(v.verify(&"x".repeat(600)).await.is_none());
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(v.verify("tok-lookup-1").await.is_some());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "no argon2 per request");
    }
}
