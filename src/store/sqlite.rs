//! The embedded store: one SQLite file (WAL, `synchronous=FULL`).
//!
//! One worker thread owns the connection. Requests arrive over a channel
//! and are applied in batches, one transaction per batch (group commit),
//! so a burst of policy requests costs one fsync, not one each. Async
//! callers never block on SQLite. Expiry is checked against the store's
//! own clock at read time, and expired rows are purged periodically.
//!
//! Two kinds of answer. Counters and reads are answered as soon as the
//! worker has applied them, before the batch commits: the worker is the
//! only writer, so every later request already sees the new value, and a
//! rate-limit answer never waits for a disk flush. The price is bounded:
//! a power cut (or a failed commit) in the moment between answer and
//! commit forgets the charges of that one batch, an undercount of at
//! most a few milliseconds of traffic, logged when the commit fails.
//! Claims that must not be forgotten once granted (ledger and lock keys,
//! values, deletions, audit records) are answered only after the commit.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{ChargeOutcome, Increment, Result, Store, StoreError};
use crate::config::store::Synchronous;

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 512;
/// Purge expired rows after this many batches.
const PURGE_EVERY: u64 = 1024;

enum Op {
    Incr { key: String, delta: i64, ttl: Duration },
    IncrWithin { once: Option<(String, Duration)>, increments: Vec<Increment> },
    Counter { key: String },
    CounterTtl { key: String },
    Set { key: String, value: Vec<u8>, ttl: Option<Duration> },
    SetIfAbsent { key: String, value: Vec<u8>, ttl: Option<Duration> },
    Get { key: String },
    Delete { key: String },
    Append { log: String, record: Vec<u8>, keep: usize },
    Tail { log: String, limit: usize },
    Ping,
}

impl Op {
    /// Whether the caller must wait for the commit (see the module doc).
    fn needs_commit(&self) -> bool {
        matches!(self, Op::Set { .. } | Op::SetIfAbsent { .. } | Op::Delete { .. } | Op::Append { .. })
    }
}

enum Answer {
    Int(i64),
    CounterTtl(Option<(i64, Duration)>),
    Bool(bool),
    Bytes(Option<Vec<u8>>),
    Records(Vec<Vec<u8>>),
    Charge(ChargeOutcome),
    Unit,
}

type Reply = oneshot::Sender<Result<Answer>>;

/// Handle to the worker; cheap to clone, the worker stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<(Op, Reply)>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database and starts the worker,
    /// with `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Synchronous::Full)
    }

    /// Opens with the given durability (`[store] synchronous`).
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        init(&conn, synchronous).map_err(backend)?;
        let (tx, rx) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("mailwarrant-sqlite".into())
            .spawn(move || worker(conn, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite worker: {e}")))?;
        Ok(Self { tx })
    }

    async fn call(&self, op: Op) -> Result<Answer> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((op, reply)).await.map_err(|_| StoreError::WorkerGone)?;
        answer.await.map_err(|_| StoreError::WorkerGone)?
    }
}

fn init(conn: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, log TEXT NOT NULL, record BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS records_by_log ON records (log, seq);",
    )
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn expiry(ttl: Duration) -> i64 {
    now_ms().saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64)
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn worker(mut conn: Connection, mut rx: mpsc::Receiver<(Op, Reply)>) {
    let mut batches: u64 = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // IMMEDIATE takes the write lock up front (waiting up to the busy
        // timeout): a deferred transaction that reads first and then writes
        // fails at once with SQLITE_BUSY when another process (a second
        // instance, `remind` beside `serve`) committed in between.
        match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => {
                let mut waiting = Vec::new();
                let mut answered_early = 0usize;
                for (op, reply) in batch.drain(..) {
                    let needs_commit = op.needs_commit();
                    let answer = apply(&tx, op);
                    if needs_commit {
                        waiting.push((reply, answer));
                    } else {
                        answered_early += 1;
                        let _ = reply.send(answer);
                    }
                }
                match tx.commit() {
                    Ok(()) => waiting.into_iter().for_each(|(reply, answer)| {
                        let _ = reply.send(answer);
                    }),
                    Err(e) => {
                        let msg = e.to_string();
                        tracing::error!(error = %msg, lost_counter_updates = answered_early, "SQLite commit failed; the batch was rolled back");
                        for (reply, _) in waiting {
                            let _ = reply.send(Err(StoreError::Backend(msg.clone())));
                        }
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
        batches += 1;
        if batches % PURGE_EVERY == 0 {
            let now = now_ms();
            let _ = conn.execute("DELETE FROM counters WHERE expires_at <= ?1", [now]);
            let _ = conn.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now]);
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: Op) -> Result<Answer> {
    let now = now_ms();
    let answer = match op {
        Op::Incr { key, delta, ttl } => Answer::Int(
            tx.prepare_cached(
                "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET
                   value = CASE WHEN expires_at <= ?4 THEN ?2 ELSE value + ?2 END,
                   expires_at = CASE WHEN expires_at <= ?4 THEN ?3 ELSE expires_at END
                 RETURNING value",
            )
            .and_then(|mut s| s.query_row(params![key, delta, expiry(ttl), now], |r| r.get(0)))
            .map_err(backend)?,
        ),
        Op::IncrWithin { once, increments } => Answer::Charge(incr_within(tx, once, &increments, now)?),
        Op::Counter { key } => Answer::Int(
            tx.prepare_cached("SELECT value FROM counters WHERE key = ?1 AND expires_at > ?2")
                .and_then(|mut s| s.query_row(params![key, now], |r| r.get(0)).optional())
                .map_err(backend)?
                .unwrap_or(0),
        ),
        Op::CounterTtl { key } => Answer::CounterTtl(
            tx.prepare_cached("SELECT value, expires_at FROM counters WHERE key = ?1 AND expires_at > ?2")
                .and_then(|mut s| {
                    s.query_row(params![key, now], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()
                })
                .map_err(backend)?
                .map(|(v, at)| (v, Duration::from_millis((at - now).max(0) as u64))),
        ),
        Op::Set { key, value, ttl } => {
            tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![key, value, ttl.map(expiry)]))
                .map_err(backend)?;
            Answer::Unit
        }
        Op::SetIfAbsent { key, value, ttl } => Answer::Bool(
            tx.prepare_cached(
                "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = ?2, expires_at = ?3
                 WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?4",
            )
            .and_then(|mut s| s.execute(params![key, value, ttl.map(expiry), now]))
            .map_err(backend)?
                == 1,
        ),
        Op::Get { key } => Answer::Bytes(
            tx.prepare_cached("SELECT value FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")
                .and_then(|mut s| s.query_row(params![key, now], |r| r.get(0)).optional())
                .map_err(backend)?,
        ),
        Op::Delete { key } => {
            let kv = tx
                .prepare_cached("DELETE FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")
                .and_then(|mut s| s.execute(params![key, now]))
                .map_err(backend)?;
            let counters = tx
                .prepare_cached("DELETE FROM counters WHERE key = ?1 AND expires_at > ?2")
                .and_then(|mut s| s.execute(params![key, now]))
                .map_err(backend)?;
            Answer::Bool(kv + counters > 0)
        }
        Op::Append { log, record, keep } => {
            tx.prepare_cached("INSERT INTO records (log, record) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![log, record]))
                .map_err(backend)?;
            let seq = tx.last_insert_rowid();
            tx.prepare_cached(
                "DELETE FROM records WHERE log = ?1 AND seq <= (SELECT seq FROM records WHERE log = ?1 AND seq <= ?2
                 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )
            .and_then(|mut s| s.execute(params![log, seq, keep as i64]))
            .map_err(backend)?;
            Answer::Unit
        }
        Op::Tail { log, limit } => Answer::Records(
            tx.prepare_cached("SELECT record FROM records WHERE log = ?1 ORDER BY seq DESC LIMIT ?2")
                .and_then(|mut s| {
                    s.query_map(params![log, limit as i64], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?,
        ),
        Op::Ping => {
            tx.query_row("SELECT 1", [], |_| Ok(())).map_err(backend)?;
            Answer::Unit
        }
    };
    Ok(answer)
}

/// [`Store::incr_within`] inside the batch transaction. The worker applies
/// operations one at a time, so the reads and writes here cannot
/// interleave with another caller's.
fn incr_within(
    tx: &rusqlite::Transaction<'_>,
    once: Option<(String, Duration)>,
    increments: &[Increment],
    now: i64,
) -> Result<ChargeOutcome> {
    if let Some((key, _)) = &once {
        let live: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")
            .and_then(|mut s| s.query_row(params![key, now], |r| r.get(0)).optional())
            .map_err(backend)?;
        if live.is_some() {
            return Ok(ChargeOutcome::AlreadyCharged);
        }
    }
    let mut values = Vec::with_capacity(increments.len());
    for inc in increments {
        let value: i64 = tx
            .prepare_cached("SELECT value FROM counters WHERE key = ?1 AND expires_at > ?2")
            .and_then(|mut s| s.query_row(params![inc.key, now], |r| r.get(0)).optional())
            .map_err(backend)?
            .unwrap_or(0);
        values.push(value);
    }
    if let Some(index) = increments.iter().zip(&values).position(|(inc, v)| v.saturating_add(inc.delta) > inc.limit) {
        return Ok(ChargeOutcome::Refused { index, values });
    }
    for (inc, value) in increments.iter().zip(values.iter_mut()) {
        *value = tx
            .prepare_cached(
                "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET
                   value = CASE WHEN expires_at <= ?4 THEN ?2 ELSE value + ?2 END,
                   expires_at = CASE WHEN expires_at <= ?4 THEN ?3 ELSE expires_at END
                 RETURNING value",
            )
            .and_then(|mut s| s.query_row(params![inc.key, inc.delta, expiry(inc.ttl), now], |r| r.get(0)))
            .map_err(backend)?;
    }
    if let Some((key, ttl)) = once {
        tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?1, x'', ?2)")
            .and_then(|mut s| s.execute(params![key, expiry(ttl)]))
            .map_err(backend)?;
    }
    Ok(ChargeOutcome::Charged(values))
}

fn unexpected() -> StoreError {
    StoreError::Backend("the SQLite worker answered another kind of request".into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64> {
        match self.call(Op::Incr { key: key.to_owned(), delta, ttl }).await? {
            Answer::Int(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn incr_within(&self, once: Option<(&str, Duration)>, increments: &[Increment]) -> Result<ChargeOutcome> {
        let once = once.map(|(k, t)| (k.to_owned(), t));
        match self.call(Op::IncrWithin { once, increments: increments.to_vec() }).await? {
            Answer::Charge(c) => Ok(c),
            _ => Err(unexpected()),
        }
    }

    async fn counter(&self, key: &str) -> Result<i64> {
        match self.call(Op::Counter { key: key.to_owned() }).await? {
            Answer::Int(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn counter_with_ttl(&self, key: &str) -> Result<Option<(i64, Duration)>> {
        match self.call(Op::CounterTtl { key: key.to_owned() }).await? {
            Answer::CounterTtl(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        match self.call(Op::Set { key: key.to_owned(), value: value.to_vec(), ttl }).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        match self.call(Op::SetIfAbsent { key: key.to_owned(), value: value.to_vec(), ttl }).await? {
            Answer::Bool(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.call(Op::Get { key: key.to_owned() }).await? {
            Answer::Bytes(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        match self.call(Op::Delete { key: key.to_owned() }).await? {
            Answer::Bool(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn append(&self, log: &str, record: &[u8], keep: usize) -> Result<()> {
        match self.call(Op::Append { log: log.to_owned(), record: record.to_vec(), keep }).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn tail(&self, log: &str, limit: usize) -> Result<Vec<Vec<u8>>> {
        match self.call(Op::Tail { log: log.to_owned(), limit }).await? {
            Answer::Records(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn check_health(&self) -> Result<()> {
        match self.call(Op::Ping).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, Arc::new(s))
    }

    /// The shared behaviour ([`conformance`]), one test per check.
    macro_rules! conformance {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                let (_d, s) = store();
                conformance::$name(s).await;
            }
        )*};
    }

    conformance!(
        counters_add_expire_and_restart_from_zero,
        concurrent_increments_are_never_lost,
        incr_within_is_all_or_nothing_and_once,
        concurrent_charges_stop_exactly_at_the_limit,
        set_if_absent_is_a_lock,
        values_replace_expire_and_delete,
        logs_keep_only_the_newest,
    );

    #[test]
    fn every_conformance_check_runs_here() {
        // Keep the macro list above in step with `conformance::CHECKS`.
        assert_eq!(conformance::CHECKS.len(), 7);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.incr("day", 7, Duration::from_secs(3600)).await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.counter("day").await.unwrap(), 7);
        assert!(!s.is_shared());
    }
}
