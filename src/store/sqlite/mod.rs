//! The embedded store: one SQLite file (WAL, `synchronous=FULL`).
//!
//! One worker thread owns the connection. Requests arrive over a channel
//! and are applied in batches, one transaction per batch (group commit),
//! so a burst of requests costs one fsync, not one each. Async callers
//! never block on SQLite. Expiry is checked against the store's own clock
//! at read time, and expired rows are purged periodically.
//!
//! Counters are the hot path (every AUTH failure, every accepted message)
//! and never wait for the worker: they live in memory ([`counters`]) and
//! the worker writes them behind, every [`FLUSH_EVERY`]. Claims that
//! must not be forgotten once granted (ledger and lock keys, values,
//! deletions, audit records) are answered only after their commit.
//!
//! The file belongs to one serving process: a second `serve` on the same
//! file would keep its own counters (use Redis for several instances).
//! Other commands (`explain`, `remind`) may open it beside `serve`.

pub(in crate::store) mod counters;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{ChargeOutcome, Increment, Result, Store, StoreError};
use crate::config::store::Synchronous;
use counters::{Counters, Dirty, Entry};

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 512;
/// How often changed counters are written to the file: what a power cut
/// can take (Redis's `appendfsync everysec` makes the same trade). Each
/// flush rewrites every page its keys touch, and per-user keys are spread
/// over the whole table, so fewer, larger flushes write fewer pages and
/// fsync once a second. (At 50 ms, with a `once` key written per message
/// as well, the writes took 9 % of the CPU under the policy benchmark;
/// most of that was the `once` keys, which now wait for a clean stop.)
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Purge expired rows after this many batches.
const PURGE_EVERY: u64 = 1024;

enum Op {
    /// Only wakes the worker to write the counters' changes.
    Flush,
    Set {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    SetIfAbsent {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    Append {
        log: String,
        record: Vec<u8>,
        keep: usize,
    },
    Tail {
        log: String,
        limit: usize,
    },
    Ping,
}

impl Op {
    /// Whether the caller must wait for the commit (see the module doc).
    /// A health check waits too: it proves the file takes writes.
    fn needs_commit(&self) -> bool {
        matches!(self, Op::Set { .. } | Op::SetIfAbsent { .. } | Op::Delete { .. } | Op::Append { .. } | Op::Ping)
    }
}

enum Answer {
    Bool(bool),
    Bytes(Option<Vec<u8>>),
    Records(Vec<Vec<u8>>),
    Unit,
}

type Reply = oneshot::Sender<Result<Answer>>;

/// Handle to the store; cheap to clone. When the last handle is dropped,
/// the worker writes what is left and stops, and the drop waits for it
/// (so a restart finds every counter).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<(Op, Reply)>>,
    counters: Arc<Counters>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.counters.close();
        drop(self.tx.take());
        if let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = worker.join();
        }
    }
}

/// Creates an empty database file readable by its owner only, unless it
/// exists (an admin may have chosen 0640 with the service group).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database and starts the worker,
    /// with `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Synchronous::Full)
    }

    /// Opens with the given durability (`[store] synchronous`). A new
    /// file is created 0600 (it holds password-history hashes and
    /// sessions); SQLite gives its WAL and SHM files the same mode.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<Self> {
        create_private(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        init(&conn, synchronous).map_err(backend)?;
        let counters = Arc::new(load_counters(&conn).map_err(backend)?);
        let (tx, rx) = mpsc::channel(4096);
        let writer = counters.clone();
        let worker = std::thread::Builder::new()
            .name("mailwarrant-sqlite".into())
            .spawn(move || worker(conn, rx, &writer))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite worker: {e}")))?;
        let (ticker, dirty) = (tx.downgrade(), counters.clone());
        std::thread::Builder::new()
            .name("mailwarrant-sqlite-flush".into())
            .spawn(move || flush_ticks(ticker, &dirty))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite flush timer: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { tx: Some(tx), counters, worker: Mutex::new(Some(worker)) }) })
    }

    fn sender(&self) -> Result<&mpsc::Sender<(Op, Reply)>> {
        self.inner.tx.as_ref().ok_or(StoreError::WorkerGone)
    }

    async fn call(&self, op: Op) -> Result<Answer> {
        let (reply, answer) = oneshot::channel();
        self.sender()?.send((op, reply)).await.map_err(|_| StoreError::WorkerGone)?;
        answer.await.map_err(|_| StoreError::WorkerGone)?
    }
}

/// Asks the worker to write the counters' changes [`FLUSH_EVERY`] after
/// the first of them; ends with the store. While nothing changes it
/// sleeps on the counters, so an idle server has no timer waking it.
fn flush_ticks(worker: mpsc::WeakSender<(Op, Reply)>, counters: &Counters) {
    while counters.wait_for_changes() {
        std::thread::sleep(FLUSH_EVERY);
        let Some(tx) = worker.upgrade() else { return };
        let (reply, _) = oneshot::channel();
        // Full queue: the worker writes the changes with its next batch,
        // and the changes still pending bring this loop back in a second.
        let _ = tx.try_send((Op::Flush, reply));
    }
}

fn init(conn: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS charged (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, log TEXT NOT NULL, record BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS records_by_log ON records (log, seq);",
    )
}

/// The live counters and `once` keys in the file.
fn load_counters(conn: &Connection) -> rusqlite::Result<Counters> {
    let now = now_ms();
    let counters = conn
        .prepare("SELECT key, value, expires_at FROM counters WHERE expires_at > ?1")?
        .query_map([now], |r| Ok((r.get(0)?, Entry { value: r.get(1)?, expires_at: r.get(2)? })))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let charged = conn
        .prepare("SELECT key, expires_at FROM charged WHERE expires_at > ?1")?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Counters::load(counters, charged))
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

fn worker(mut conn: Connection, mut rx: mpsc::Receiver<(Op, Reply)>, counters: &Counters) {
    let mut batches: u64 = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        match rx.blocking_recv() {
            Some(first) => batch.push(first),
            // Every handle is gone: write what is left, then stop.
            None => {
                commit(&mut conn, &mut batch, counters.take_last(now_ms()));
                return;
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch, counters.take_dirty());
        batches += 1;
        if batches % PURGE_EVERY == 0 {
            let now = now_ms();
            let _ = conn.execute("DELETE FROM counters WHERE expires_at <= ?1", [now]);
            let _ = conn.execute("DELETE FROM charged WHERE expires_at <= ?1", [now]);
            let _ = conn.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now]);
        }
    }
}

/// One transaction: the counters' changes, then the batch's requests;
/// writes are answered after the commit, reads at once.
fn commit(conn: &mut Connection, batch: &mut Vec<(Op, Reply)>, dirty: Dirty) {
    // IMMEDIATE takes the write lock up front (waiting up to the busy
    // timeout): a deferred transaction that reads first and then writes
    // fails at once with SQLITE_BUSY when another process (`remind`
    // beside `serve`) committed in between.
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            let lost = dirty.len();
            tracing::error!(error = %msg, lost_counter_updates = lost, "SQLite cannot start a transaction");
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
            return;
        }
    };
    let written = dirty.len();
    if let Err(e) = write_counters(&tx, dirty) {
        tracing::error!(error = %e, lost_counter_updates = written, "SQLite cannot write the counters");
    }
    let mut waiting = Vec::new();
    for (op, reply) in batch.drain(..) {
        let needs_commit = op.needs_commit();
        let answer = apply(&tx, op);
        if needs_commit {
            waiting.push((reply, answer));
        } else {
            // Reads: every later request sees the same, committed or not.
            let _ = reply.send(answer);
        }
    }
    match tx.commit().map_err(|e| e.to_string()) {
        Ok(()) => waiting.into_iter().for_each(|(reply, answer)| {
            let _ = reply.send(answer);
        }),
        Err(msg) => {
            tracing::error!(error = %msg, lost_counter_updates = written, "SQLite commit failed; the batch was rolled back");
            for (reply, _) in waiting {
                let _ = reply.send(Err(StoreError::Backend(msg.clone())));
            }
        }
    }
}

fn write_counters(tx: &rusqlite::Transaction<'_>, dirty: Dirty) -> rusqlite::Result<()> {
    if dirty.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached("INSERT OR REPLACE INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3)")?;
    let mut drop = tx.prepare_cached("DELETE FROM counters WHERE key = ?1")?;
    for (key, entry) in dirty.counters {
        match entry {
            Some(e) => put.execute(params![key, e.value, e.expires_at])?,
            None => drop.execute([key])?,
        };
    }
    if let Some(charged) = dirty.charged {
        tx.execute("DELETE FROM charged", [])?;
        let mut put = tx.prepare_cached("INSERT INTO charged (key, expires_at) VALUES (?1, ?2)")?;
        for (key, at) in charged {
            put.execute(params![key, at])?;
        }
    }
    Ok(())
}

fn apply(tx: &rusqlite::Transaction<'_>, op: Op) -> Result<Answer> {
    let now = now_ms();
    let answer = match op {
        Op::Flush => Answer::Unit,
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
            // The counter of that name went with the changes in memory.
            let kv = tx
                .prepare_cached("DELETE FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)")
                .and_then(|mut s| s.execute(params![key, now]))
                .map_err(backend)?;
            Answer::Bool(kv > 0)
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

fn unexpected() -> StoreError {
    StoreError::Backend("the SQLite worker answered another kind of request".into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64> {
        let ttl = ttl.as_millis().min(i64::MAX as u128) as i64;
        Ok(self.inner.counters.incr(key, delta, ttl, now_ms()))
    }

    async fn incr_within(&self, once: Option<(&str, Duration)>, increments: &[Increment]) -> Result<ChargeOutcome> {
        let once = once.map(|(k, t)| (k, t.as_millis().min(i64::MAX as u128) as i64));
        Ok(self.inner.counters.incr_within(once, increments, now_ms()))
    }

    async fn counter(&self, key: &str) -> Result<i64> {
        Ok(self.inner.counters.get(key, now_ms()).map_or(0, |e| e.value))
    }

    async fn counter_with_ttl(&self, key: &str) -> Result<Option<(i64, Duration)>> {
        let now = now_ms();
        Ok(self
            .inner
            .counters
            .get(key, now)
            .map(|e| (e.value, Duration::from_millis((e.expires_at - now).max(0) as u64))))
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
        let counter = self.inner.counters.delete(key, now_ms());
        match self.call(Op::Delete { key: key.to_owned() }).await? {
            Answer::Bool(value) => Ok(counter || value),
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
        after_last_expiry_waits_for_a_quiet_ttl,
        set_if_absent_is_a_lock,
        values_replace_expire_and_delete,
        logs_keep_only_the_newest,
    );

    #[test]
    fn every_conformance_check_runs_here() {
        // Keep the macro list above in step with `conformance::CHECKS`.
        assert_eq!(conformance::CHECKS.len(), 8);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let hour = Duration::from_secs(3600);
        let inc = |key: &str| Increment { key: key.into(), delta: 1, limit: 10, ttl: hour, expiry: Default::default() };
        {
            let s = SqliteStore::open(&path).unwrap();
            s.incr("day", 7, hour).await.unwrap();
            s.incr("gone", 1, hour).await.unwrap();
            s.incr_within(Some(("m1", hour)), &[inc("msgs")]).await.unwrap();
            assert!(s.delete("gone").await.unwrap());
            // Dropping the last handle writes what is left before returning.
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.counter("day").await.unwrap(), 7);
        assert_eq!(s.counter("gone").await.unwrap(), 0);
        assert_eq!(s.incr_within(Some(("m1", hour)), &[inc("msgs")]).await.unwrap(), ChargeOutcome::AlreadyCharged);
        assert_eq!(s.counter_with_ttl("msgs").await.unwrap().map(|(v, _)| v), Some(1));
    }

    /// The file catches up with the counters while the store is open
    /// (what `explain` in another process reads).
    #[tokio::test]
    async fn counters_reach_the_file_behind_the_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let s = SqliteStore::open(&path).unwrap();
        for _ in 0..100 {
            s.incr("day", 1, Duration::from_secs(3600)).await.unwrap();
        }
        s.check_health().await.unwrap();
        let file = Connection::open(&path).unwrap();
        let value: i64 = file.query_row("SELECT value FROM counters WHERE key = 'day'", [], |r| r.get(0)).unwrap();
        assert_eq!(value, 100);
    }
}
