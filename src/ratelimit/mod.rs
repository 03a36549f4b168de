//! Rate-limit counters over the [`Store`] trait.
//!
//! One algorithm, two store primitives (`counter_with_ttl` to read,
//! `incr_within` to check and charge atomically), so SQLite and Redis
//! supply only those. Windows are fixed (`policy::window`): a `1d` window
//! is a calendar day of `[policy] time_zone` (23 or 25 hours on DST
//! days), which is what a refusal can promise ("resets 00:00 CET"); a
//! `1m` burst window resets at the next minute. Each window is its own key
//! (`…:<window start in UTC seconds>`), with a TTL of the time left plus a
//! minute, so no key outlives its window by more than that and a rollover
//! can never reset a counter twice.
//!
//! A message is charged once, when it is accepted: the charge carries a
//! `once` key built from Postfix's `instance`, so a re-asked request is
//! not counted again, and a refused charge changes nothing.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use time::OffsetDateTime;

use crate::policy::evaluate::cost;
use crate::policy::{CounterReading, LimitSubject, RateLimit};
use crate::store::{ChargeOutcome, Expiry, Increment, Store, StoreError};

/// How long past its window a counter key lives.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(60);
/// How long a charged message's `once` key is remembered: longer than
/// Postfix keeps one SMTP transaction open.
pub const ONCE_TTL: Duration = Duration::from_secs(3600);

/// Who the counters are for in one request.
#[derive(Clone, Copy, Debug)]
pub struct Subjects<'a> {
    /// The canonical login.
    pub login: &'a str,
    /// The client IP; limits per client address are skipped without it.
    pub client_address: Option<&'a str>,
}

/// The moment of a request and the calendar its windows follow.
#[derive(Clone, Copy, Debug)]
pub struct When<'a> {
    pub now: OffsetDateTime,
    /// `[policy] time_zone`.
    pub zone: &'a TimeZone,
}

/// The current window of `limit`: its start (Unix seconds) and when it
/// resets.
pub fn window(limit: &RateLimit, when: When<'_>) -> (i64, OffsetDateTime) {
    let w = crate::policy::window::current(limit.window, when.now, when.zone);
    (w.start.unix_timestamp(), w.resets_at)
}

/// The store key of one limit's counter for one subject and window.
pub fn counter_key(limit: &RateLimit, subjects: Subjects<'_>, window_start: i64) -> Option<String> {
    let (tag, who) = match limit.per {
        LimitSubject::User => ("u", subjects.login),
        LimitSubject::ClientAddress => ("c", subjects.client_address?),
    };
    Some(format!("rl:{}:{tag}:{who}:{window_start}", limit.name))
}

/// What a charge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Counted now; readings after the charge.
    Charged(Vec<CounterReading>),
    /// This message was counted before (Postfix asked again).
    AlreadyCharged,
    /// Over a limit: nothing counted; the reading of the limit that refused.
    Refused(CounterReading),
}

/// Reads and charges rate-limit counters.
#[derive(Clone)]
pub struct RateLimiter {
    store: Arc<dyn Store>,
}

impl RateLimiter {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The counters of every limit that applies, without changing them.
    pub async fn read(
        &self,
        limits: &[RateLimit],
        subjects: Subjects<'_>,
        when: When<'_>,
    ) -> Result<Vec<CounterReading>, StoreError> {
        let mut readings = Vec::with_capacity(limits.len());
        for (i, limit) in limits.iter().enumerate() {
            let (start, resets_at) = window(limit, when);
            let Some(key) = counter_key(limit, subjects, start) else { continue };
            let used = self.store.counter_with_ttl(&key).await?.map_or(0, |(v, _)| v.max(0) as u64);
            readings.push(CounterReading { limit: i, used, resets_at });
        }
        Ok(readings)
    }

    /// Charges one accepted message against every limit, all or nothing.
    /// Limits whose `capped[i]` is false (observe mode) are counted but
    /// never refuse. `once` identifies the message (login + Postfix
    /// `instance`); without it every call counts.
    pub async fn charge(
        &self,
        limits: &[RateLimit],
        capped: &[bool],
        subjects: Subjects<'_>,
        once: Option<&str>,
        recipient_count: u32,
        when: When<'_>,
    ) -> Result<Charge, StoreError> {
        let mut increments = Vec::with_capacity(limits.len());
        let mut meta = Vec::with_capacity(limits.len());
        for (i, limit) in limits.iter().enumerate() {
            let (start, resets_at) = window(limit, when);
            let Some(key) = counter_key(limit, subjects, start) else { continue };
            let left = (resets_at - when.now).try_into().unwrap_or(Duration::ZERO);
            let cap = if capped.get(i).copied().unwrap_or(true) { clamp(limit.limit) } else { i64::MAX };
            increments.push(Increment {
                key,
                delta: clamp(cost(limit, recipient_count)),
                limit: cap,
                ttl: left + EXPIRY_GRACE,
                expiry: Expiry::FromFirst,
            });
            meta.push((i, resets_at));
        }
        let once_key = once.map(|id| format!("rl:once:{}:{id}", subjects.login));
        let outcome = self.store.incr_within(once_key.as_deref().map(|k| (k, ONCE_TTL)), &increments).await?;
        let reading =
            |j: usize, value: i64| CounterReading { limit: meta[j].0, used: value.max(0) as u64, resets_at: meta[j].1 };
        Ok(match outcome {
            ChargeOutcome::Charged(values) => {
                Charge::Charged(values.into_iter().enumerate().map(|(j, v)| reading(j, v)).collect())
            }
            ChargeOutcome::AlreadyCharged => Charge::AlreadyCharged,
            ChargeOutcome::Refused { index, values } => Charge::Refused(reading(index, values[index])),
        })
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
