//! Which addresses are distribution lists: the directory's lists, fetched
//! once per `lists_ttl` (not one search per RCPT), plus the addresses the
//! config names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::directory::{Directory, DirectoryError};
use crate::identity::Address;

type ListMap = Arc<HashMap<String, String>>;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct ListCache {
    directory: Arc<dyn Directory>,
    state: Arc<Mutex<Option<(Instant, ListMap)>>>,
}

/// Lists are matched as the directory matches `mail`: ASCII
/// case-insensitively.
fn key(address: &Address) -> String {
    address.as_str().to_ascii_lowercase()
}

impl ListCache {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Self { directory, state: Arc::new(Mutex::new(None)) }
    }

    /// The list's name when `address` (or its base address without a
    /// sub-address) is a distribution list.
    pub async fn list_name(
        &self,
        address: &Address,
        listed: &[Address],
        delimiter: &str,
        ttl: Duration,
    ) -> Result<Option<String>, DirectoryError> {
        let base = (!delimiter.is_empty()).then(|| address.without_subaddress(delimiter));
        let candidates = std::iter::once(address).chain(base.as_ref());
        for candidate in candidates.clone() {
            if listed.iter().any(|l| l.same_mailbox(candidate)) {
                return Ok(Some(candidate.local_part().to_owned()));
            }
        }
        let lists = self.lists(ttl).await?;
        Ok(candidates.into_iter().find_map(|c| lists.get(&key(c)).cloned()))
    }

    async fn lists(&self, ttl: Duration) -> Result<ListMap, DirectoryError> {
        if let Some((at, map)) = &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < ttl {
                return Ok(map.clone());
            }
        }
        let fetched: HashMap<String, String> =
            self.directory.distribution_lists().await?.into_iter().map(|l| (key(&l.address), l.name)).collect();
        let map = Arc::new(fetched);
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), map.clone()));
        Ok(map)
    }

    /// Forgets the lists (SIGHUP).
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
