//! The identity cache: a hot path never waits on the directory for a known
//! user.
//!
//! Entries are `Arc<Identity>` handed out without copying. A found user is
//! served for `cache_ttl`; past `refresh_after` the cached value is still
//! returned while one background task refreshes it. "No such user" is
//! remembered for `negative_ttl`, so a spray of unknown logins does not
//! reach the directory. Directory errors are never cached.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex};

use hashbrown::HashTable;
use tokio::time::Instant;

use super::{Identity, LookupKey};
use crate::config::IdentitySettings;
use crate::directory::{Directory, Result};

struct Slot {
    /// The folded lookup key (see [`LookupKey`]).
    key: Box<str>,
    /// Hashed once; picks the shard and the bucket.
    hash: u64,
    identity: Option<Arc<Identity>>,
    fetched: Instant,
    refreshing: bool,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct IdentityCache {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Arc<dyn Directory>,
    settings: IdentitySettings,
    shards: Vec<Mutex<HashTable<Slot>>>,
}

const SHARDS: usize = 32;

/// Randomly seeded per process, so clients cannot aim many logins at one
/// shard or bucket.
static HASHER: LazyLock<std::hash::RandomState> = LazyLock::new(std::hash::RandomState::new);

/// The folded key and its hash; borrows when the input is already folded
/// (the common case: logins arrive lower-case), so a hit allocates nothing.
fn fold(typed: &str) -> (Cow<'_, str>, u64) {
    let trimmed = typed.trim();
    let key = if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(LookupKey::new(trimmed).as_str().to_owned())
    } else {
        Cow::Borrowed(trimmed)
    };
    let hash = HASHER.hash_one(&*key);
    (key, hash)
}

impl IdentityCache {
    pub fn new(directory: Arc<dyn Directory>, settings: IdentitySettings) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect();
        Self { inner: Arc::new(Inner { directory, settings, shards }) }
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.inner.directory
    }

    /// The identity for what a client typed, from memory when fresh enough.
    pub async fn get(&self, typed: &str) -> Result<Option<Arc<Identity>>> {
        let (key, hash) = fold(typed);
        if let Some(hit) = self.cached(&key, hash, Instant::now()) {
            crate::metrics::identity_cache(true);
            return Ok(hit);
        }
        crate::metrics::identity_cache(false);
        self.fetch(key.into_owned().into_boxed_str(), hash).await
    }

    /// Drops what is known about a login, e.g. after a password change.
    pub fn forget(&self, typed: &str) {
        let (key, hash) = fold(typed);
        let mut shard = self.inner.shard(hash);
        if let Ok(slot) = shard.find_entry(hash, |s| *s.key == *key) {
            slot.remove();
        }
    }

    /// Drops everything (SIGHUP, `cache flush`).
    pub fn clear(&self) {
        for shard in &self.inner.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache hit, or `None` when the directory must be asked. Starts a
    /// background refresh for entries past `refresh_after`.
    fn cached(&self, key: &str, hash: u64, now: Instant) -> Option<Option<Arc<Identity>>> {
        let s = &self.inner.settings;
        let mut shard = self.inner.shard(hash);
        let slot = shard.find_mut(hash, |slot| *slot.key == *key)?;
        let age = now.saturating_duration_since(slot.fetched);
        let ttl = if slot.identity.is_some() { s.cache_ttl } else { s.negative_ttl };
        if age >= ttl {
            return None;
        }
        if slot.identity.is_some() && age >= s.refresh_after && !slot.refreshing {
            slot.refreshing = true;
            let this = self.clone();
            let key = slot.key.clone();
            tokio::spawn(async move {
                if this.fetch(key.clone(), hash).await.is_err() {
                    // Keep serving the cached value until its TTL; let a
                    // later hit try the refresh again.
                    if let Some(slot) = this.inner.shard(hash).find_mut(hash, |s| s.key == key) {
                        slot.refreshing = false;
                    }
                }
            });
        }
        Some(slot.identity.clone())
    }

    async fn fetch(&self, key: Box<str>, hash: u64) -> Result<Option<Arc<Identity>>> {
        let found = self.inner.directory.lookup(&key).await?.map(Arc::new);
        let mut shard = self.inner.shard(hash);
        if shard.len() >= self.inner.settings.capacity.div_ceil(SHARDS) {
            evict_oldest(&mut shard);
        }
        let slot = Slot { key, hash, identity: found.clone(), fetched: Instant::now(), refreshing: false };
        match shard.find_mut(hash, |s| s.key == slot.key) {
            Some(existing) => *existing = slot,
            None => {
                shard.insert_unique(hash, slot, |s| s.hash);
            }
        }
        Ok(found)
    }
}

impl Inner {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, HashTable<Slot>> {
        // The top bits pick the shard; hashbrown uses the low and top-7 bits
        // inside the table, and 32 shards only need 5 bits.
        let index = (hash >> 32) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops the eighth of a full shard that was fetched longest ago.
fn evict_oldest(shard: &mut HashTable<Slot>) {
    let mut ages: Vec<Instant> = shard.iter().map(|s| s.fetched).collect();
    ages.sort_unstable();
    let cut = ages[ages.len() / 8];
    shard.retain(|s| s.fetched > cut);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use secrecy::SecretString;

    use super::*;
    use crate::directory::{AddressOwner, BindOutcome, DirectoryError, DistributionList};
    use crate::identity::{AccountState, Address, Login};

    /// Counts lookups; fails them while `down` is set.
    #[derive(Default)]
    struct Counting {
        lookups: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Directory for Counting {
        async fn lookup(&self, login: &str) -> Result<Option<Identity>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DirectoryError::Unreachable("test".into()));
            }
            Ok((login == "alice").then(|| Identity {
                login: Login::new("alice"),
                dn: "uid=alice".into(),
                display_name: "Alice".into(),
                primary_address: None,
                aliases: vec![],
                send_as: vec![],
                groups: vec![],
                account: AccountState { enabled: true, ..Default::default() },
            }))
        }
        async fn lookup_address(&self, _: &Address) -> Result<Option<AddressOwner>> {
            Ok(None)
        }
        async fn authenticate(&self, _: &Identity, _: &SecretString) -> Result<BindOutcome> {
            Ok(BindOutcome::ACCEPTED)
        }
        async fn list_users(&self) -> Result<Vec<crate::directory::UserSummary>> {
            Ok(vec![])
        }
        async fn distribution_lists(&self) -> Result<Vec<DistributionList>> {
            Ok(vec![])
        }
        async fn check_health(&self) -> Result<()> {
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "counting"
        }
    }

    fn cache(dir: Arc<Counting>) -> IdentityCache {
        IdentityCache::new(
            dir,
            IdentitySettings {
                cache_ttl: Duration::from_secs(300),
                negative_ttl: Duration::from_secs(60),
                refresh_after: Duration::from_secs(240),
                capacity: 1000,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn hits_skip_the_directory_until_the_ttl() {
        let dir = Arc::new(Counting::default());
        let c = cache(dir.clone());
        c.get("alice").await.unwrap();
        c.get("ALICE").await.unwrap();
        assert_eq!(dir.lookups.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(301)).await;
        c.get("alice").await.unwrap();
        assert_eq!(dir.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn absence_is_remembered_for_the_negative_ttl() {
        let dir = Arc::new(Counting::default());
        let c = cache(dir.clone());
        assert!(c.get("mallory").await.unwrap().is_none());
        assert!(c.get("mallory").await.unwrap().is_none());
        assert_eq!(dir.lookups.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        c.get("mallory").await.unwrap();
        assert_eq!(dir.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn old_entries_are_served_while_refreshing_in_the_background() {
        let dir = Arc::new(Counting::default());
        let c = cache(dir.clone());
        let first = c.get("alice").await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(250)).await;
        let served = c.get("alice").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &served), "the caller did not wait for the refresh");
        tokio::task::yield_now().await;
        assert_eq!(dir.lookups.load(Ordering::SeqCst), 2, "one background refresh");
        let refreshed = c.get("alice").await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &refreshed));
    }

    #[tokio::test(start_paused = true)]
    async fn directory_errors_are_not_cached() {
        let dir = Arc::new(Counting::default());
        let c = cache(dir.clone());
        dir.down.store(true, Ordering::SeqCst);
        assert!(c.get("alice").await.is_err());
        dir.down.store(false, Ordering::SeqCst);
        assert!(c.get("alice").await.unwrap().is_some());
    }
}
