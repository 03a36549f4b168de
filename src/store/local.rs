//! Counters inside this process, with the store's charge semantics: what
//! the AUTH throttle falls back on while the shared store cannot answer,
//! so wrong passwords stay away from the directory during the outage.
//!
//! It is the embedded store's in-memory table without its writer: nothing
//! is written anywhere and nothing is shared with other instances.

use std::time::Instant;

use super::sqlite::counters::Counters;
use super::{ChargeOutcome, Increment};

pub struct LocalCounters {
    counters: Counters,
    epoch: Instant,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self { counters: Counters::load([], []), epoch: Instant::now() }
    }
}

impl LocalCounters {
    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis().min(i64::MAX as u128) as i64
    }

    /// As [`Store::incr_within`](super::Store::incr_within) without `once`.
    pub fn incr_within(&self, increments: &[Increment]) -> ChargeOutcome {
        let outcome = self.counters.incr_within(None, increments, self.now_ms());
        self.forget_changes();
        outcome
    }

    /// As [`Store::incr`](super::Store::incr).
    pub fn incr(&self, key: &str, delta: i64, ttl: std::time::Duration) -> i64 {
        let ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        let value = self.counters.incr(key, delta, ttl_ms, self.now_ms());
        self.forget_changes();
        value
    }

    pub fn counter(&self, key: &str) -> i64 {
        self.counters.get(key, self.now_ms()).map_or(0, |e| e.value)
    }

    pub fn delete(&self, key: &str) {
        self.counters.delete(key, self.now_ms());
        self.forget_changes();
    }

    /// The table records changes for a writer; there is none here.
    fn forget_changes(&self) {
        drop(self.counters.take_dirty());
    }
}
