//! The identity cache: a hot path never waits on the directory for a known
//! user.
//!
//! Entries are `Arc<Identity>` handed out without copying. A found user is
//! served for `cache_ttl`; past `refresh_after` the cached value is still
//! returned while one background task refreshes it. "No such user" is
//! remembered for `negative_ttl`, so a spray of unknown logins does not
//! reach the directory. Directory errors are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Identity, LookupKey};
use crate::config::IdentitySettings;
use crate::directory::{Directory, Result};

#[derive(Clone)]
struct Entry {
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
    shards: Vec<Mutex<HashMap<LookupKey, Entry>>>,
}

const SHARDS: usize = 32;

impl IdentityCache {
    pub fn new(directory: Arc<dyn Directory>, settings: IdentitySettings) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self { inner: Arc::new(Inner { directory, settings, shards }) }
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.inner.directory
    }

    /// The identity for what a client typed, from memory when fresh enough.
    pub async fn get(&self, typed: &str) -> Result<Option<Arc<Identity>>> {
        let key = LookupKey::new(typed);
        let now = Instant::now();
        if let Some(hit) = self.cached(&key, now) {
            return Ok(hit);
        }
        self.fetch(key).await
    }

    /// Drops what is known about a login, e.g. after a password change.
    pub fn forget(&self, typed: &str) {
        let key = LookupKey::new(typed);
        self.inner.shard(&key).lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
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
    fn cached(&self, key: &LookupKey, now: Instant) -> Option<Option<Arc<Identity>>> {
        let s = &self.inner.settings;
        let mut shard = self.inner.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get_mut(key)?;
        let age = now.saturating_duration_since(entry.fetched);
        let ttl = if entry.identity.is_some() { s.cache_ttl } else { s.negative_ttl };
        if age >= ttl {
            return None;
        }
        if entry.identity.is_some() && age >= s.refresh_after && !entry.refreshing {
            entry.refreshing = true;
            let this = self.clone();
            let key = key.clone();
            tokio::spawn(async move {
                if this.fetch(key.clone()).await.is_err() {
                    // Keep serving the cached value until its TTL; let a
                    // later hit try the refresh again.
                    if let Some(e) = this.inner.shard(&key).lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
                        e.refreshing = false;
                    }
                }
            });
        }
        Some(entry.identity.clone())
    }

    async fn fetch(&self, key: LookupKey) -> Result<Option<Arc<Identity>>> {
        let found = self.inner.directory.lookup(key.as_str()).await?.map(Arc::new);
        let entry = Entry { identity: found.clone(), fetched: Instant::now(), refreshing: false };
        let mut shard = self.inner.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.inner.settings.capacity.div_ceil(SHARDS) {
            evict_oldest(&mut shard);
        }
        shard.insert(key, entry);
        Ok(found)
    }
}

impl Inner {
    fn shard(&self, key: &LookupKey) -> &Mutex<HashMap<LookupKey, Entry>> {
        use std::hash::BuildHasher;
        // Randomly seeded per process, so clients cannot aim many logins at
        // one shard.
        let h = SHARD_HASHER.hash_one(key);
        &self.shards[(h as usize) % SHARDS]
    }
}

static SHARD_HASHER: std::sync::LazyLock<std::hash::RandomState> =
    std::sync::LazyLock::new(std::hash::RandomState::new);

/// Drops the eighth of a full shard that was fetched longest ago.
fn evict_oldest(shard: &mut HashMap<LookupKey, Entry>) {
    let mut ages: Vec<Instant> = shard.values().map(|e| e.fetched).collect();
    ages.sort_unstable();
    let cut = ages[ages.len() / 8];
    shard.retain(|_, e| e.fetched > cut);
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
