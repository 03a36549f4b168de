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
