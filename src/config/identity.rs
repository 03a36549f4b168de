//! `[identity]`: how long what the directory said is trusted.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::{duration, Validate};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// How long a found user is served from memory.
    #[serde(default = "default_ttl")]
    pub cache_ttl: String,
    /// How long "no such user" is remembered.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: String,
    /// Entries older than this are served and refreshed in the background.
    #[serde(default = "default_refresh_after")]
    pub refresh_after: String,
    /// Most identities kept; the oldest are dropped beyond it.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            cache_ttl: default_ttl(),
            negative_ttl: default_negative_ttl(),
            refresh_after: default_refresh_after(),
            capacity: default_capacity(),
        }
    }
}

fn default_ttl() -> String {
    "5m".into()
}
fn default_negative_ttl() -> String {
    "1m".into()
}
fn default_refresh_after() -> String {
    "4m".into()
}
fn default_capacity() -> usize {
    200_000
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub refresh_after: Duration,
    pub capacity: usize,
}

impl Validate for RawIdentity {
    type Output = IdentitySettings;

    fn validate(&self, p: &mut Problems, _: &Path) -> Option<IdentitySettings> {
        let ttl = duration::parse(p, "identity.cache_ttl", &self.cache_ttl);
        let negative = duration::parse(p, "identity.negative_ttl", &self.negative_ttl);
        let refresh = duration::parse(p, "identity.refresh_after", &self.refresh_after);
        if let (Some(t), Some(r)) = (ttl, refresh) {
            if r > t {
                p.error("identity.refresh_after", "must not be longer than identity.cache_ttl");
            }
        }
        if self.capacity == 0 {
            p.error("identity.capacity", "must be at least 1");
        }
        Some(IdentitySettings {
            cache_ttl: ttl?,
            negative_ttl: negative?,
            refresh_after: refresh?,
            capacity: self.capacity,
        })
    }
}
