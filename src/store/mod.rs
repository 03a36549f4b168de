//! Shared state that must outlive a request: counters, short-lived
//! key/value entries (throttles, ledgers, locks) and append-only records
//! (audit trail).
//!
//! The trait is deliberately narrow so each method maps onto one Redis
//! command or script (the Redis backend comes later): `incr` is
//! `INCRBY`+`EXPIRE NX` in one script, `set_if_absent` is `SET NX PX`,
//! `append` is `XADD` with a cap. The store keeps its own clock for
//! expiry, so several instances agree on it.

pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

/// The store cannot answer; callers apply their configured outage action.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store operation failed: {0}")]
    Backend(String),
    #[error("store worker stopped")]
    WorkerGone,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds `delta` to a counter and returns the new value. A missing or
    /// expired counter starts at zero and expires `ttl` from now; an
    /// existing one keeps its expiry. Atomic: concurrent callers never
    /// lose an increment.
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64>;

    /// The counter's value, 0 when missing or expired.
    async fn counter(&self, key: &str) -> Result<i64>;

    /// The counter's value and the time left before it expires.
    async fn counter_with_ttl(&self, key: &str) -> Result<Option<(i64, Duration)>>;

    /// Stores a value, replacing any; `None` keeps it until deleted.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Stores a value only when the key is missing or expired; true when
    /// this call stored it. The basis of ledgers and locks.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool>;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// True when a live key was removed.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Appends a record to a named log, keeping at most `keep` records.
    async fn append(&self, log: &str, record: &[u8], keep: usize) -> Result<()>;

    /// The newest records of a log, newest first.
    async fn tail(&self, log: &str, limit: usize) -> Result<Vec<Vec<u8>>>;

    /// A cheap round trip, for readiness checks.
    async fn check_health(&self) -> Result<()>;
}
