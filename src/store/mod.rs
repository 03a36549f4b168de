//! Shared state that must outlive a request: counters, short-lived
//! key/value entries (throttles, ledgers, locks) and append-only records
//! (audit trail).
//!
//! The trait is deliberately narrow so each method maps onto one Redis
//! command or script ([`redis`]): `incr` is `INCRBY`+`PEXPIRE` in one
//! script, `set_if_absent` is `SET NX PX`, `append` is `LPUSH`+`LTRIM`.
//! The store keeps its own clock for expiry, so several instances agree
//! on it. Both backends pass the same behavioural suite
//! ([`conformance`]).

pub mod conformance;
pub mod local;
pub mod redis;
pub mod sqlite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

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

/// One counter of an all-or-nothing charge ([`Store::incr_within`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    pub key: String,
    pub delta: i64,
    /// The counter may reach this value, not pass it.
    pub limit: i64,
    /// How long the counter lives; see [`Expiry`].
    pub ttl: Duration,
    pub expiry: Expiry,
}

/// When a counter of an [`Increment`] is forgotten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// `ttl` after the charge that created it: a fixed window (rate
    /// limits on the calendar).
    #[default]
    FromFirst,
    /// `ttl` after the latest charge: forgotten only after a quiet `ttl`,
    /// as Active Directory forgets `badPwdCount` only after a
    /// `lockoutObservationWindow` without failures. No pacing of charges
    /// resets it early.
    AfterLast,
}

/// What [`Store::incr_within`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Every counter was raised; the new values, in order.
    Charged(Vec<i64>),
    /// The `once` key was already live: nothing changed.
    AlreadyCharged,
    /// Counter `index` would pass its limit: nothing changed. `values` are
    /// the current values, in order.
    Refused { index: usize, values: Vec<i64> },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds `delta` to a counter and returns the new value. A missing or
    /// expired counter starts at zero and expires `ttl` from now; an
    /// existing one keeps its expiry. Atomic: concurrent callers never
    /// lose an increment.
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64>;

    /// Check-and-charge for rate limits, atomic as one transaction (SQLite)
    /// or one script (Redis): when `once` names a live key, nothing changes
    /// (`AlreadyCharged`: the same message asked twice); otherwise, when
    /// every counter plus its delta stays within its limit, all are raised
    /// (missing or expired ones start at zero; each expires as its
    /// [`Expiry`] says) and `once`
    /// is set for its duration; else nothing changes. Several windows are
    /// charged together or not at all, so concurrent callers can never
    /// overshoot a limit, and a refused message leaves no trace.
    async fn incr_within(&self, once: Option<(&str, Duration)>, increments: &[Increment]) -> Result<ChargeOutcome>;

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

/// At most one of a repeated log line per period: during a store outage
/// every request fails the same way, and an admin needs a few clear lines,
/// not one per request. One per call site (`static`).
pub struct LogEvery {
    period_ms: u64,
    /// Milliseconds since [`START`] of the last line; `u64::MAX`: never.
    last: AtomicU64,
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

impl LogEvery {
    pub const fn new(period: Duration) -> Self {
        Self { period_ms: period.as_millis() as u64, last: AtomicU64::new(u64::MAX) }
    }

    /// True when the line should be written now (then not again for the
    /// period, whichever thread asks).
    pub fn due(&self) -> bool {
        let now = START.elapsed().as_millis() as u64;
        let last = self.last.load(Ordering::Relaxed);
        if last != u64::MAX && now.saturating_sub(last) < self.period_ms {
            return false;
        }
        self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Forgets the last line: the next `due` is true (an outage ended).
    pub fn reset(&self) {
        self.last.store(u64::MAX, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_lets_one_line_through_per_period() {
        let every = LogEvery::new(Duration::from_secs(3600));
        assert!(every.due());
        assert!(!every.due());
        every.reset();
        assert!(every.due());
        let always = LogEvery::new(Duration::ZERO);
        assert!(always.due() && always.due());
    }
}
