//! The credential cache: proof that a password was right a moment ago,
//! without keeping the password.
//!
//! A verifier is HMAC-SHA256 over `canonical login NUL password` with a key
//! drawn at start-up and never stored, so a memory dump yields nothing
//! that works elsewhere and a cached entry can only ever match its own
//! login (CVE-2007-6598 and CVE-2025-30189 were cross-user hits; here the
//! login is inside the MAC *and* the map key). Entries live under the
//! canonical login; what clients type (`Alice`, `a.smith@example.com`)
//! maps to it, so forgetting a login forgets every spelling.
//!
//! Failed passwords are remembered the same way (the last few per login),
//! so a phone retrying a stale password neither reaches the directory nor
//! counts twice.
//!
//! A guessing burst against a login whose right password is cached sends
//! a different wrong password each time. The first goes to the directory;
//! for `mismatch_ttl` after the directory refused one, other passwords
//! that differ from the cached right one are refused without asking
//! (Dovecot's negative cache does the same for its whole negative TTL).
//! The price: a password changed outside mailwarrant in that moment is
//! refused for at most `mismatch_ttl`; the directory is asked again once
//! it has passed, so a change is never missed for longer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::{RngCore, TryRngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::identity::{Login, LookupKey};

/// A keyed hash of one (login, password) pair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Verifier([u8; 32]);

impl Verifier {
    fn matches(&self, other: &Verifier) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// A short hex form, for store keys (never logged).
    pub fn hex(&self) -> String {
        self.0[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

/// Failed verifiers kept per login (Dovecot keeps the last 10 attempts).
const FAILED_PER_LOGIN: usize = 8;
const SHARDS: usize = 32;

struct Success {
    verifier: Verifier,
    verified_at: Instant,
}

#[derive(Default)]
struct Shard {
    ok: HashMap<Login, Success>,
    failed: HashMap<Login, Vec<(Verifier, Instant)>>,
    /// When the directory last refused a password of the login.
    refused: HashMap<Login, Instant>,
}

/// How a presented password compares with what is remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recall {
    /// Right within the TTL: no directory needed.
    Fresh,
    /// Right, verified within the grace period only: usable while the
    /// directory is down.
    Grace,
    /// The same wrong password was refused within the negative TTL.
    KnownBad,
    /// Not the right password verified within the TTL, and the directory
    /// refused another one within the mismatch TTL.
    Mismatch,
    Unknown,
}

pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    grace: Duration,
    negative_ttl: Duration,
    mismatch_ttl: Duration,
    capacity_per_shard: usize,
    /// What was typed → the canonical login it resolved to.
    spelling_shards: Vec<Mutex<HashMap<LookupKey, Login>>>,
    shards: Vec<Mutex<Shard>>,
}

impl CredentialCache {
    pub fn new(
        ttl: Duration,
        grace: Duration,
        negative_ttl: Duration,
        mismatch_ttl: Duration,
        capacity: usize,
    ) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.unwrap_err().fill_bytes(&mut key);
        Self {
            key,
            ttl,
            grace,
            negative_ttl,
            mismatch_ttl,
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
            spelling_shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// True when successes are remembered at all (`ttl > 0`).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The keyed hash of a password for a canonical login.
    pub fn verifier(&self, login: &Login, password: &[u8]) -> Verifier {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(login.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(password);
        Verifier(mac.finalize().into_bytes().into())
    }

    /// The canonical login a spelling resolved to last time, for use while
    /// the directory cannot be asked.
    pub fn resolve(&self, typed: &LookupKey) -> Option<Login> {
        lock(&self.spelling_shards[shard_of(typed)]).get(typed).cloned()
    }

    pub fn recall(&self, login: &Login, verifier: &Verifier, now: Instant) -> Recall {
        let shard = lock(&self.shards[shard_of(login)]);
        let ok = shard.ok.get(login);
        if let Some(ok) = ok {
            if ok.verifier.matches(verifier) {
                let age = now.saturating_duration_since(ok.verified_at);
                if age < self.ttl {
                    return Recall::Fresh;
                }
                if age < self.grace {
                    return Recall::Grace;
                }
            }
        }
        if let Some(failed) = shard.failed.get(login) {
            let cut = self.negative_ttl;
            if failed.iter().any(|(v, at)| v.matches(verifier) && now.saturating_duration_since(*at) < cut) {
                return Recall::KnownBad;
            }
        }
        if let (Some(ok), Some(refused)) = (ok, shard.refused.get(login)) {
            if now.saturating_duration_since(ok.verified_at) < self.ttl
                && now.saturating_duration_since(*refused) < self.mismatch_ttl
            {
                return Recall::Mismatch;
            }
        }
        Recall::Unknown
    }

    /// Remembers a verified password (and forgets failures of this login:
    /// the user got it right, so an old failure says nothing any more).
    pub fn remember_success(&self, typed: &LookupKey, login: &Login, verifier: Verifier, now: Instant) {
        if !self.enabled() {
            return;
        }
        {
            let mut spelling = lock(&self.spelling_shards[shard_of(typed)]);
            if spelling.len() >= self.capacity_per_shard && !spelling.contains_key(typed) {
                spelling.clear();
            }
            spelling.insert(typed.clone(), login.clone());
        }
        let mut shard = lock(&self.shards[shard_of(login)]);
        let horizon = self.ttl.max(self.grace);
        let live = |s: &Success| now.saturating_duration_since(s.verified_at) < horizon;
        if still_full(&mut shard.ok, login, self.capacity_per_shard, live) {
            // Still full of live entries: drop the oldest eighth.
            let mut ages: Vec<Instant> = shard.ok.values().map(|s| s.verified_at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 8];
            shard.ok.retain(|_, s| s.verified_at > cut);
        }
        shard.failed.remove(login);
        shard.refused.remove(login);
        shard.ok.insert(login.clone(), Success { verifier, verified_at: now });
    }

    /// The directory refused a password of `login` (starts the mismatch
    /// TTL; only the directory's answer does, so it is asked again once
    /// the TTL has passed, however many guesses came meanwhile).
    pub fn directory_refused(&self, login: &Login, now: Instant) {
        if self.mismatch_ttl.is_zero() {
            return;
        }
        let mut shard = lock(&self.shards[shard_of(login)]);
        let cut = self.mismatch_ttl;
        if still_full(&mut shard.refused, login, self.capacity_per_shard, |at| now.saturating_duration_since(*at) < cut)
        {
            shard.refused.clear();
        }
        shard.refused.insert(login.clone(), now);
    }

    /// Remembers a refused password; false when it was already known (so
    /// the caller counts it only once).
    pub fn remember_failure(&self, login: &Login, verifier: Verifier, now: Instant) -> bool {
        let mut shard = lock(&self.shards[shard_of(login)]);
        let cut = self.negative_ttl;
        let live = |v: &Vec<(Verifier, Instant)>| v.iter().any(|(_, at)| now.saturating_duration_since(*at) < cut);
        if still_full(&mut shard.failed, login, self.capacity_per_shard, live) {
            shard.failed.clear();
        }
        let list = shard.failed.entry(login.clone()).or_default();
        list.retain(|(_, at)| now.saturating_duration_since(*at) < cut);
        if list.iter().any(|(v, _)| v.matches(&verifier)) {
            return false;
        }
        if list.len() >= FAILED_PER_LOGIN {
            list.remove(0);
        }
        list.push((verifier, now));
        true
    }

    /// Forgets every success of a login: its account was seen disabled,
    /// locked or expired, or its password changed.
    pub fn forget(&self, login: &Login) {
        let mut shard = lock(&self.shards[shard_of(login)]);
        shard.ok.remove(login);
        shard.failed.remove(login);
        shard.refused.remove(login);
    }

    /// Forgets the right password of a login but not its refused ones: a
    /// disabled or locked account keeps counting repeated guesses once,
    /// exactly as an unknown login does.
    pub fn forget_success(&self, login: &Login) {
        let mut shard = lock(&self.shards[shard_of(login)]);
        shard.ok.remove(login);
        shard.refused.remove(login);
    }

    /// Drops everything (SIGHUP).
    pub fn clear(&self) {
        for s in &self.shards {
            *lock(s) = Shard::default();
        }
        for s in &self.spelling_shards {
            lock(s).clear();
        }
    }

    /// Remembered successes.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).ok.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Before `login` is added to a map bounded at `capacity`: when the map
/// is full, drops the entries that are no longer `live`; true when it is
/// still full (the caller decides what else goes).
fn still_full<V>(
    map: &mut HashMap<Login, V>,
    login: &Login,
    capacity: usize,
    mut live: impl FnMut(&V) -> bool,
) -> bool {
    if map.len() < capacity || map.contains_key(login) {
        return false;
    }
    map.retain(|_, v| live(v));
    map.len() >= capacity
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_of<K: std::hash::Hash>(key: &K) -> usize {
    use std::hash::BuildHasher;
    (SHARD_HASHER.hash_one(key) as usize) % SHARDS
}

static SHARD_HASHER: std::sync::LazyLock<std::hash::RandomState> =
    std::sync::LazyLock::new(std::hash::RandomState::new);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    fn cache() -> CredentialCache {
        CredentialCache::new(10 * MIN, 15 * MIN, 5 * MIN, Duration::from_secs(10), 1000)
    }

    #[test]
    fn other_passwords_right_after_a_refusal_are_refused_unasked() {
        let c = cache();
        let alice = Login::new("alice");
        let right = c.verifier(&alice, b"right");
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        // No cached success: every new password goes to the directory.
        c.directory_refused(&alice, t0);
        assert_eq!(c.recall(&alice, &c.verifier(&alice, b"guess1"), t0), Recall::Unknown);
        c.remember_success(&LookupKey::new("alice"), &alice, right, t0);
        // A success forgets the refusal: the next other password is asked.
        assert_eq!(c.recall(&alice, &c.verifier(&alice, b"guess1"), t0 + secs(1)), Recall::Unknown);
        c.directory_refused(&alice, t0 + secs(1));
        assert_eq!(c.recall(&alice, &c.verifier(&alice, b"guess2"), t0 + secs(2)), Recall::Mismatch);
        assert_eq!(c.recall(&alice, &right, t0 + secs(2)), Recall::Fresh, "the right one still works");
        // Once the mismatch TTL has passed, the directory is asked again
        // (a password changed outside mailwarrant is seen).
        assert_eq!(c.recall(&alice, &c.verifier(&alice, b"new"), t0 + secs(12)), Recall::Unknown);
        c.forget(&alice);
        assert_eq!(c.recall(&alice, &c.verifier(&alice, b"guess3"), t0 + secs(2)), Recall::Unknown);
        let off = CredentialCache::new(10 * MIN, 15 * MIN, 5 * MIN, Duration::ZERO, 1000);
        let right = off.verifier(&alice, b"right");
        off.remember_success(&LookupKey::new("alice"), &alice, right, t0);
        off.directory_refused(&alice, t0);
        assert_eq!(off.recall(&alice, &off.verifier(&alice, b"guess"), t0), Recall::Unknown, "0s turns it off");
    }

    #[test]
    fn a_full_map_drops_stale_entries_before_anything_else() {
        let mut m: HashMap<Login, u32> = (0..4).map(|i| (Login::new(format!("u{i}")), i)).collect();
        let new = Login::new("new");
        assert!(!still_full(&mut m, &Login::new("u1"), 4, |_| false), "a login already there needs no room");
        assert!(!still_full(&mut m, &new, 5, |_| false), "room left");
        assert_eq!(m.len(), 4, "nothing dropped while there is room");
        assert!(!still_full(&mut m, &new, 4, |&v| v >= 2), "two stale entries went");
        assert_eq!(m.len(), 2);
        assert!(still_full(&mut m, &new, 2, |_| true), "all live: the caller decides");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn fresh_then_grace_then_forgotten() {
        let c = cache();
        let alice = Login::new("alice");
        let v = c.verifier(&alice, b"pw");
        let t0 = Instant::now();
        c.remember_success(&LookupKey::new("Alice"), &alice, v, t0);
        assert_eq!(c.recall(&alice, &v, t0 + MIN), Recall::Fresh);
        assert_eq!(c.recall(&alice, &v, t0 + 11 * MIN), Recall::Grace);
        assert_eq!(c.recall(&alice, &v, t0 + 16 * MIN), Recall::Unknown);
        assert_eq!(c.resolve(&LookupKey::new("ALICE")), Some(alice.clone()));
        c.forget(&alice);
        assert_eq!(c.recall(&alice, &v, t0), Recall::Unknown);
    }

    #[test]
    fn a_repeated_failure_is_new_only_once() {
        let c = cache();
        let bob = Login::new("bob");
        let t0 = Instant::now();
        let stale = c.verifier(&bob, b"old");
        assert!(c.remember_failure(&bob, stale, t0));
        assert!(!c.remember_failure(&bob, stale, t0 + MIN));
        assert_eq!(c.recall(&bob, &stale, t0 + MIN), Recall::KnownBad);
        assert!(c.remember_failure(&bob, c.verifier(&bob, b"other"), t0 + MIN));
        assert_eq!(c.recall(&bob, &stale, t0 + 6 * MIN), Recall::Unknown);
    }

    #[test]
    fn verifiers_never_hold_the_password() {
        let c = cache();
        let v = c.verifier(&Login::new("alice"), b"Alice-Demo-2026!");
        assert_eq!(format!("{v:?}"), "Verifier(..)");
        assert!(!v.0.windows(5).any(|w| w == b"Alice"));
    }

    proptest! {
        // S6: random interleavings of users, case variants and passwords
        // never let one user's password open another's entry.
        #[test]
        fn no_cross_user_hit(ops in proptest::collection::vec((0usize..3, 0usize..3, 0usize..4, any::<bool>()), 1..60)) {
            let c = cache();
            let users = ["alice", "bob", "carol"];
            let passwords = ["pw-a", "pw-b", "pw-c", "wrong"];
            let t0 = Instant::now();
            for (user, case, pw, succeeded) in ops {
                let login = Login::new(users[user]);
                let typed = if case == 0 { users[user].to_uppercase() } else { users[user].to_owned() };
                let v = c.verifier(&login, passwords[pw].as_bytes());
                // Only the user's own password (index == user) may ever be
                // remembered as a success.
                if succeeded && pw == user {
                    c.remember_success(&LookupKey::new(&typed), &login, v, t0);
                } else if pw != user {
                    c.remember_failure(&login, v, t0);
                }
                for (other, other_pw) in users.iter().zip(passwords) {
                    let other = Login::new(*other);
                    for (i, candidate) in passwords.iter().enumerate() {
                        let recall = c.recall(&other, &c.verifier(&other, candidate.as_bytes()), t0);
                        if recall == Recall::Fresh {
                            prop_assert_eq!(*candidate, other_pw, "cross-user hit for {} with password #{}", other.as_str(), i);
                        }
                    }
                }
            }
        }
    }
}
