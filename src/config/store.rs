//! `[store]`: where counters, throttles and the audit trail live.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::Validate;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite`, the embedded default.
    #[serde(default)]
    pub kind: StoreKind,
    /// SQLite database file, relative to the config file.
    #[serde(default = "default_sqlite_path")]
    pub path: PathBuf,
    /// SQLite durability: `full` (default) fsyncs every commit and survives
    /// power loss; `normal` (WAL without an fsync per commit) survives a
    /// crash or `kill -9` of mailwarrant but may lose the last commits on
    /// power loss or an OS crash, for a much lower commit latency.
    #[serde(default)]
    pub synchronous: Synchronous,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    /// The value of SQLite's `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self { kind: StoreKind::default(), path: default_sqlite_path(), synchronous: Synchronous::default() }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Sqlite,
}

fn default_sqlite_path() -> PathBuf {
    "mailwarrant.sqlite".into()
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Sqlite { path: PathBuf, synchronous: Synchronous },
}

impl Validate for RawStore {
    type Output = StoreSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<StoreSettings> {
        let path = base_dir.join(&self.path);
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                p.error("store.path", format!("folder {} does not exist", parent.display()));
            }
        }
        Some(StoreSettings::Sqlite { path, synchronous: self.synchronous })
    }
}
