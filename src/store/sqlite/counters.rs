//! The embedded store's counters, live in memory and written behind.
//!
//! One process owns the SQLite file (several instances share Redis
//! instead), so every charge passes through here and this table is the
//! truth: a rate-limit answer costs a map lookup under a mutex, with no
//! hop to the SQLite thread and no wait for its disk. The SQLite worker
//! writes the changed entries (absolute values, so a key changed a
//! thousand times is written once) every [`FLUSH_EVERY`](super::FLUSH_EVERY),
//! and the table is loaded from the file at start, so counters survive
//! restarts and a clean stop loses nothing. What a power cut or `kill -9`
//! can take is the last flush interval's changes, as with Redis's
//! `appendfsync everysec`: an undercount, never a double count.
//!
//! The `once` keys of charged messages are written only at a clean stop,
//! as one snapshot: each is a new random key, so writing them behind
//! would cost a B-tree insert per message for a guard that matters only
//! when Postfix re-asks a message across a restart. After a crash they
//! are gone, and such a re-asked message may be counted twice.
//!
//! Expiry uses the same millisecond clock as the rows in the file.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use super::super::{ChargeOutcome, Expiry, Increment};

/// A live counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: i64,
    pub expires_at: i64,
}

/// Changes not yet in the file.
#[derive(Default)]
pub struct Dirty {
    /// Changed counters; `None` is a deletion.
    pub counters: HashMap<String, Option<Entry>>,
    /// At a clean stop, when this process charged or deleted any: every
    /// live `once` key with its expiry, to replace the file's.
    pub charged: Option<Vec<(String, i64)>>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.charged.is_none()
    }

    pub fn len(&self) -> usize {
        self.counters.len() + self.charged.as_ref().map_or(0, Vec::len)
    }
}

#[derive(Default)]
struct Table {
    counters: HashMap<String, Entry>,
    charged: HashMap<String, i64>,
    /// Whether `charged` differs from what was loaded.
    charged_changed: bool,
    dirty: HashMap<String, Option<Entry>>,
    /// Expired entries are dropped when the maps reach this size.
    purge_at: usize,
    /// The store is gone: nobody waits for changes any more.
    closed: bool,
}

/// Entries kept before the first purge of expired ones.
const FIRST_PURGE: usize = 4096;

#[derive(Default)]
pub struct Counters {
    table: Mutex<Table>,
    /// Signalled when the first change after a write arrives, so the
    /// flush timer sleeps for as long as nothing changes.
    changed: Condvar,
}

impl Counters {
    /// The live entries read from the file at start.
    pub fn load(
        counters: impl IntoIterator<Item = (String, Entry)>,
        charged: impl IntoIterator<Item = (String, i64)>,
    ) -> Self {
        let counters: HashMap<_, _> = counters.into_iter().collect();
        let charged: HashMap<_, _> = charged.into_iter().collect();
        let purge_at = FIRST_PURGE.max(2 * (counters.len() + charged.len()));
        let table = Table { counters, charged, charged_changed: false, dirty: HashMap::new(), purge_at, closed: false };
        Self { table: Mutex::new(table), changed: Condvar::new() }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str, now: i64) -> Option<Entry> {
        self.table().counters.get(key).filter(|e| e.expires_at > now).copied()
    }

    pub fn incr(&self, key: &str, delta: i64, ttl_ms: i64, now: i64) -> i64 {
        self.change(|t| {
            let value = t.raise(key, delta, ttl_ms, now);
            t.purge_if_large(now);
            value
        })
    }

    /// [`Store::incr_within`](super::super::Store::incr_within): all or
    /// nothing, under one lock.
    pub fn incr_within(&self, once: Option<(&str, i64)>, increments: &[Increment], now: i64) -> ChargeOutcome {
        self.change(|t| t.incr_within(once, increments, now))
    }

    /// Removes a counter and a `once` key of that name; true when either
    /// was live.
    pub fn delete(&self, key: &str, now: i64) -> bool {
        self.change(|t| {
            let counter = t.counters.remove(key).is_some_and(|e| e.expires_at > now);
            let charged = t.charged.remove(key).is_some_and(|at| at > now);
            t.mark(key, None);
            t.charged_changed |= charged;
            counter || charged
        })
    }

    /// Every change goes through here: only the first one after a write
    /// wakes the flush timer, so the hot path pays for a signal once a
    /// flush interval, not per charge.
    fn change<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut t = self.table();
        let was_clean = t.dirty.is_empty();
        let out = f(&mut t);
        if was_clean && !t.dirty.is_empty() {
            self.changed.notify_all();
        }
        out
    }

    /// Blocks until there are changes to write (true) or the store has
    /// closed (false).
    pub fn wait_for_changes(&self) -> bool {
        let mut t = self.table();
        while t.dirty.is_empty() && !t.closed {
            t = self.changed.wait(t).unwrap_or_else(|e| e.into_inner());
        }
        !t.closed
    }

    /// Ends every [`wait_for_changes`](Self::wait_for_changes).
    pub fn close(&self) {
        self.table().closed = true;
        self.changed.notify_all();
    }

    #[cfg(test)]
    pub fn is_dirty(&self) -> bool {
        !self.table().dirty.is_empty()
    }

    /// The changed counters to write, leaving none behind.
    pub fn take_dirty(&self) -> Dirty {
        Dirty { counters: std::mem::take(&mut self.table().dirty), charged: None }
    }

    /// The last write at a clean stop: the changed counters and, when
    /// this process changed any, the live `once` keys.
    pub fn take_last(&self, now: i64) -> Dirty {
        let mut t = self.table();
        let charged = std::mem::take(&mut t.charged_changed)
            .then(|| t.charged.iter().filter(|(_, &at)| at > now).map(|(k, &at)| (k.clone(), at)).collect());
        Dirty { counters: std::mem::take(&mut t.dirty), charged }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table().counters.len()
    }
}

impl Table {
    fn incr_within(&mut self, once: Option<(&str, i64)>, increments: &[Increment], now: i64) -> ChargeOutcome {
        if let Some((key, _)) = once {
            if self.charged.get(key).is_some_and(|&at| at > now) {
                return ChargeOutcome::AlreadyCharged;
            }
        }
        let values: Vec<i64> = increments
            .iter()
            .map(|inc| self.counters.get(&inc.key).filter(|e| e.expires_at > now).map_or(0, |e| e.value))
            .collect();
        if let Some(index) = increments.iter().zip(&values).position(|(inc, v)| v.saturating_add(inc.delta) > inc.limit)
        {
            return ChargeOutcome::Refused { index, values };
        }
        let values = increments
            .iter()
            .map(|inc| {
                let value = self.raise(&inc.key, inc.delta, ttl_ms(inc), now);
                if inc.expiry == Expiry::AfterLast {
                    self.extend(&inc.key, ttl_ms(inc), now);
                }
                value
            })
            .collect();
        if let Some((key, ttl)) = once {
            self.charged.insert(key.to_owned(), now.saturating_add(ttl));
            self.charged_changed = true;
        }
        self.purge_if_large(now);
        ChargeOutcome::Charged(values)
    }

    fn raise(&mut self, key: &str, delta: i64, ttl_ms: i64, now: i64) -> i64 {
        let fresh = Entry { value: 0, expires_at: now.saturating_add(ttl_ms) };
        let entry = match self.counters.get_mut(key) {
            Some(e) => e,
            None => self.counters.entry(key.to_owned()).or_insert(fresh),
        };
        if entry.expires_at <= now {
            *entry = fresh;
        }
        entry.value = entry.value.saturating_add(delta);
        let entry = *entry;
        self.mark(key, Some(entry));
        entry.value
    }

    /// Moves a live counter's expiry to `ttl_ms` from now.
    fn extend(&mut self, key: &str, ttl_ms: i64, now: i64) {
        if let Some(entry) = self.counters.get_mut(key) {
            entry.expires_at = now.saturating_add(ttl_ms);
            let entry = *entry;
            self.mark(key, Some(entry));
        }
    }

    /// Records a change for the next write; a key already pending is
    /// updated in place (no new key per charge of a busy user).
    fn mark(&mut self, key: &str, value: Option<Entry>) {
        match self.dirty.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                self.dirty.insert(key.to_owned(), value);
            }
        }
    }

    /// Drops expired entries once the maps have doubled since the last
    /// purge: amortised constant time per insert, bounded memory.
    fn purge_if_large(&mut self, now: i64) {
        if self.counters.len() + self.charged.len() < self.purge_at {
            return;
        }
        self.counters.retain(|_, e| e.expires_at > now);
        self.charged.retain(|_, &mut at| at > now);
        self.purge_at = FIRST_PURGE.max(2 * (self.counters.len() + self.charged.len()));
    }
}

fn ttl_ms(inc: &Increment) -> i64 {
    inc.ttl.as_millis().min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn inc(key: &str, delta: i64, limit: i64) -> Increment {
        Increment { key: key.into(), delta, limit, ttl: Duration::from_secs(60), expiry: Expiry::FromFirst }
    }

    #[test]
    fn changes_are_handed_to_the_writer_once() {
        let c = Counters::default();
        assert!(!c.is_dirty());
        assert_eq!(c.incr("a", 2, 1000, 0), 2);
        assert_eq!(c.incr("a", 3, 1000, 1), 5);
        let dirty = c.take_dirty();
        assert_eq!(dirty.counters["a"], Some(Entry { value: 5, expires_at: 1000 }), "the latest value, once");
        assert!(!c.is_dirty() && c.take_dirty().is_empty());
        assert!(c.delete("a", 2));
        assert_eq!(c.take_dirty().counters["a"], None, "a deletion is written too");
        assert_eq!(c.take_last(3).charged, None, "no once key changed");
        c.incr_within(Some(("m", 10)), &[inc("b", 1, 5)], 4);
        assert_eq!(c.take_dirty().charged, None, "once keys wait for the clean stop");
        assert_eq!(c.take_last(5).charged, Some(vec![("m".to_owned(), 14)]));
        assert!(c.take_last(6).is_empty());
    }

    /// The flush timer sleeps until the first change, and wakes for good
    /// when the store closes.
    #[test]
    fn the_flush_timer_waits_for_a_change_or_the_close() {
        let c = std::sync::Arc::new(Counters::default());
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_for_changes())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "nothing changed yet");
        c.incr("a", 1, 1000, 0);
        assert!(waiter.join().unwrap(), "woken by the change");
        assert!(c.wait_for_changes(), "the change is still pending");
        c.take_dirty();
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_for_changes())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "written: nothing to wait for again");
        c.close();
        assert!(!waiter.join().unwrap(), "woken by the close");
        c.incr("b", 1, 1000, 0);
        assert!(!c.wait_for_changes(), "closed stays closed");
    }

    #[test]
    fn expired_counters_start_over_and_are_purged() {
        let c = Counters::default();
        c.incr("a", 5, 10, 0);
        assert_eq!(c.get("a", 9).map(|e| e.value), Some(5));
        assert_eq!(c.get("a", 10), None);
        assert_eq!(c.incr("a", 1, 10, 10), 1);
        for i in 0..FIRST_PURGE {
            c.incr(&format!("k{i}"), 1, 1, 100);
        }
        assert!(c.len() <= FIRST_PURGE, "expired entries went: {}", c.len());
    }

    #[test]
    fn a_refused_charge_changes_nothing() {
        let c = Counters::default();
        let once = Some(("m", 1000));
        assert_eq!(c.incr_within(once, &[inc("d", 1, 1)], 0), ChargeOutcome::Charged(vec![1]));
        assert_eq!(c.incr_within(once, &[inc("d", 1, 1)], 1), ChargeOutcome::AlreadyCharged);
        c.take_dirty();
        let refused = c.incr_within(Some(("n", 1000)), &[inc("d", 1, 1)], 2);
        assert_eq!(refused, ChargeOutcome::Refused { index: 0, values: vec![1] });
        assert!(!c.is_dirty());
    }
}
