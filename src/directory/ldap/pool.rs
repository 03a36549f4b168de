//! Connections to the directory: a small set of multiplexed, service-bound
//! connections for searches, and a separate, bounded set for user binds.
//!
//! Why two: a bind changes who a connection is and must be alone on it
//! (RFC 4511 §4.2.1), so user binds never share the search connections,
//! and a slow bind never holds up a search (docs/threat-model.md T13).
//!
//! Rules kept here:
//! - every operation has a deadline (`operation_timeout`); a connection
//!   that timed out or broke is discarded, never reused;
//! - URLs are tried in order, and a connection on a later URL is replaced
//!   by one to an earlier URL once that answers again (fail-back, which
//!   libldap does not do);
//! - a server that refuses connections is retried after a backoff that
//!   doubles up to [`MAX_BACKOFF`], so an outage fails fast;
//! - referrals are never chased: ldap3 does not, and a referral result is
//!   an error here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ldap3::adapters::PagedResults;
use ldap3::controls::RawControl;
use ldap3::{DerefAliases, Ldap, LdapConnAsync, LdapError, LdapResult, Scope, SearchEntry, SearchOptions};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::{timeout, Instant};

use super::tls::Transport;
use crate::directory::{DirectoryError, Result};

/// LDAP result codes this module acts on (RFC 4511 Appendix A).
pub(super) mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const REFERRAL: u32 = 10;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INAPPROPRIATE_AUTHENTICATION: u32 = 48;
    pub const INVALID_CREDENTIALS: u32 = 49;
}

/// Longest wait before a failed server is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How often (by default) a connection on a fallback URL checks whether an
/// earlier URL answers again.
pub const FAIL_BACK_INTERVAL: Duration = Duration::from_secs(30);
/// Entries per page when a search may exceed the server's size limit.
const PAGE_SIZE: i32 = 500;

/// Opens connections: URL order, transport security, deadlines.
pub(super) struct Connector {
    urls: Vec<String>,
    transport: Transport,
    connect_timeout: Duration,
    op_timeout: Duration,
    fail_back_after: Duration,
}

/// One open connection and whether its driver task still runs.
struct Conn {
    ldap: Ldap,
    url_index: usize,
    alive: Arc<AtomicBool>,
    opened: Instant,
}

impl Conn {
    fn is_usable(&mut self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.ldap.is_closed()
    }
}

impl Connector {
    pub(super) fn new(
        urls: Vec<String>,
        transport: Transport,
        connect_timeout: Duration,
        op_timeout: Duration,
        fail_back_after: Duration,
    ) -> Self {
        Self { urls, transport, connect_timeout, op_timeout, fail_back_after }
    }

    async fn open_url(&self, index: usize) -> std::result::Result<Conn, String> {
        let url = &self.urls[index];
        let opening = LdapConnAsync::with_settings(self.transport.settings_for(url), url);
        let (conn, ldap) = match timeout(self.connect_timeout, opening).await {
            Err(_) => return Err(format!("{url}: no answer within {:?}", self.connect_timeout)),
            Ok(Err(e)) => {
                let text = e.to_string();
                return Err(match super::tls::hint(&text) {
                    Some(hint) => format!("{url}: {text}: {hint}"),
                    None => format!("{url}: {text}"),
                });
            }
            Ok(Ok(pair)) => pair,
        };
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let shown = url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %shown, error = %e, "directory connection ended");
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Conn { ldap, url_index: index, alive, opened: Instant::now() })
    }

    /// Opens a connection to the first URL (of the first `upto`) that answers.
    async fn open(&self, upto: usize) -> Result<Conn> {
        let mut failures = Vec::new();
        for index in 0..upto.min(self.urls.len()) {
            match self.open_url(index).await {
                Ok(conn) => return Ok(conn),
                Err(why) => failures.push(why),
            }
        }
        Err(DirectoryError::Unreachable(failures.join("; ")))
    }
}

/// True when the connection itself failed, so it must be discarded.
fn broke_connection(e: &LdapError) -> bool {
    matches!(
        e,
        LdapError::Io { .. }
            | LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::EndOfStream
    )
}

pub(super) fn operation_error(e: LdapError, deadline: Duration) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => DirectoryError::Timeout(deadline),
        e if broke_connection(&e) => DirectoryError::Unreachable(e.to_string()),
        e => DirectoryError::Protocol(e.to_string()),
    }
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    failures: u32,
    retry_at: Option<Instant>,
    fail_back_probe: Option<Instant>,
}

/// Service-account connections for searches. ldap3 multiplexes many
/// operations over one connection, so `pool_size` connections carry any
/// number of concurrent searches.
#[derive(Clone)]
pub(super) struct SearchPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    connector: Arc<Connector>,
    bind_dn: String,
    bind_password: SecretString,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
}

/// A search as the pool runs it.
pub(super) struct Search<'a> {
    pub base: &'a str,
    pub scope: Scope,
    pub filter: &'a str,
    pub attrs: &'a [String],
    /// Asks the server for at most this many entries (ambiguity checks).
    pub size_limit: Option<i32>,
}

impl SearchPool {
    pub(super) fn new(connector: Arc<Connector>, bind_dn: String, bind_password: SecretString, size: usize) -> Self {
        let slots = (0..size.max(1)).map(|_| Mutex::new(Slot::default())).collect();
        Self { inner: Arc::new(PoolInner { connector, bind_dn, bind_password, slots, next: AtomicUsize::new(0) }) }
    }

    /// Runs a search; a broken connection is replaced and the search tried
    /// once more (searches are idempotent). Continuation references in the
    /// result are ignored: they point at other servers, which are not asked.
    pub(super) async fn search(&self, search: &Search<'_>) -> Result<Vec<SearchEntry>> {
        let deadline = self.inner.connector.op_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut ldap, alive) = self.acquire().await?;
            let mut options = SearchOptions::new().deref(DerefAliases::Never);
            if let Some(n) = search.size_limit {
                options = options.sizelimit(n);
            }
            let running = ldap.with_search_options(options).with_timeout(deadline).search(
                search.base,
                search.scope,
                search.filter,
                search.attrs,
            );
            let Ok(outcome) = timeout(deadline, running).await else {
                alive.store(false, Ordering::Release);
                return Err(DirectoryError::Timeout(deadline));
            };
            match outcome {
                Ok(ldap3::SearchResult(entries, result)) => {
                    check_search_result(&result)?;
                    return Ok(entries.into_iter().filter(is_entry).map(SearchEntry::construct).collect());
                }
                Err(e) => {
                    if broke_connection(&e) || matches!(e, LdapError::Timeout { .. }) {
                        alive.store(false, Ordering::Release);
                    }
                    if broke_connection(&e) && attempt < 2 {
                        continue;
                    }
                    return Err(operation_error(e, deadline));
                }
            }
        }
    }

    /// Runs a search that may return more entries than the server's size
    /// limit, page by page (RFC 2696).
    pub(super) async fn search_all(&self, base: &str, filter: &str, attrs: &[String]) -> Result<Vec<SearchEntry>> {
        let deadline = self.inner.connector.op_timeout;
        let (mut ldap, alive) = self.acquire().await?;
        let collect = async {
            let mut stream = ldap
                .with_search_options(SearchOptions::new().deref(DerefAliases::Never))
                .with_timeout(deadline)
                .streaming_search_with(PagedResults::new(PAGE_SIZE), base, Scope::Subtree, filter, attrs)
                .await?;
            let mut entries = Vec::new();
            while let Some(entry) = stream.next().await? {
                if is_entry(&entry) {
                    entries.push(SearchEntry::construct(entry));
                }
            }
            Ok::<_, LdapError>((entries, stream.finish().await))
        };
        // The whole scan gets a generous multiple of one operation's deadline.
        let total = deadline * 10;
        match timeout(total, collect).await {
            Err(_) => {
                alive.store(false, Ordering::Release);
                Err(DirectoryError::Timeout(total))
            }
            Ok(Err(e)) => {
                if broke_connection(&e) || matches!(e, LdapError::Timeout { .. }) {
                    alive.store(false, Ordering::Release);
                }
                Err(operation_error(e, deadline))
            }
            Ok(Ok((entries, result))) => {
                check_search_result(&result)?;
                Ok(entries)
            }
        }
    }

    /// A handle on a live, service-bound connection, opening one if needed.
    async fn acquire(&self) -> Result<(Ldap, Arc<AtomicBool>)> {
        let inner = &self.inner;
        let index = inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len();
        let mut slot = inner.slots[index].lock().await;
        if let Some(conn) = slot.conn.as_mut() {
            if conn.is_usable() {
                let handle = (conn.ldap.clone(), conn.alive.clone());
                let url_index = conn.url_index;
                let opened = conn.opened;
                if url_index > 0 {
                    self.maybe_fail_back(index, &mut slot, url_index, opened);
                }
                return Ok(handle);
            }
            slot.conn = None;
        }
        let now = Instant::now();
        if let Some(at) = slot.retry_at {
            if now < at {
                return Err(DirectoryError::Unreachable(format!(
                    "directory down; next attempt in {:?}",
                    at.saturating_duration_since(now)
                )));
            }
        }
        match inner.open_bound(inner.connector.urls.len()).await {
            Ok(conn) => {
                let handle = (conn.ldap.clone(), conn.alive.clone());
                *slot = Slot { conn: Some(conn), ..Slot::default() };
                Ok(handle)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                slot.retry_at = Some(Instant::now() + backoff(slot.failures));
                Err(e)
            }
        }
    }

    /// On a fallback URL: every `fail_back_after`, try the earlier
    /// URLs in the background and swap the connection when one answers.
    fn maybe_fail_back(&self, index: usize, slot: &mut Slot, url_index: usize, opened: Instant) {
        let since = slot.fail_back_probe.unwrap_or(opened);
        if since.elapsed() < self.inner.connector.fail_back_after {
            return;
        }
        slot.fail_back_probe = Some(Instant::now());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Ok(conn) = inner.open_bound(url_index).await {
                tracing::info!(url = %inner.connector.urls[conn.url_index], "directory: back on an earlier server");
                let mut slot = inner.slots[index].lock().await;
                *slot = Slot { conn: Some(conn), ..Slot::default() };
            }
        });
    }
}

impl PoolInner {
    /// Opens a connection (first `upto` URLs) and binds the service account.
    async fn open_bound(&self, upto: usize) -> Result<Conn> {
        let conn = self.connector.open(upto).await?;
        let deadline = self.connector.op_timeout;
        let mut ldap = conn.ldap.clone();
        let binding = ldap.with_timeout(deadline).simple_bind(&self.bind_dn, self.bind_password.expose_secret());
        match timeout(deadline, binding).await {
            Err(_) => Err(DirectoryError::Timeout(deadline)),
            Ok(Err(e)) => Err(operation_error(e, deadline)),
            Ok(Ok(r)) if r.rc == rc::SUCCESS => Ok(conn),
            Ok(Ok(r)) => Err(DirectoryError::ServiceBind(describe(&r))),
        }
    }
}

/// Delay before retry number `failures` (1-based): 50 ms doubling to 2 s.
pub(super) fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// An entry, not a continuation reference or intermediate message:
/// `SearchEntry::construct` panics on those, and Active Directory sends
/// references (its configuration and DNS partitions) for searches at the
/// domain root.
fn is_entry(entry: &ldap3::ResultEntry) -> bool {
    !entry.is_ref() && !entry.is_intermediate()
}

fn check_search_result(result: &LdapResult) -> Result<()> {
    match result.rc {
        rc::SUCCESS | rc::SIZE_LIMIT_EXCEEDED | rc::NO_SUCH_OBJECT => Ok(()),
        rc::REFERRAL => Err(DirectoryError::Protocol(format!(
            "the directory sent a referral ({}); referrals are not followed: point `directory.ldap.urls` at a server \
             that holds the entries",
            result.refs.join(", ")
        ))),
        _ => Err(DirectoryError::Protocol(format!("search failed: {}", describe(result)))),
    }
}

/// `invalidCredentials (49): text` for operator messages.
pub(super) fn describe(result: &LdapResult) -> String {
    if result.text.is_empty() {
        format!("result code {}", result.rc)
    } else {
        format!("result code {}: {}", result.rc, result.text)
    }
}

/// Connections for user binds, bounded by `bind_pool_size` and reused
/// (a new bind replaces the previous identity on a connection).
pub(super) struct BindPool {
    connector: Arc<Connector>,
    permits: Semaphore,
    idle: StdMutex<Vec<Conn>>,
}

impl BindPool {
    pub(super) fn new(connector: Arc<Connector>, size: usize) -> Self {
        Self { connector, permits: Semaphore::new(size.max(1)), idle: StdMutex::new(Vec::new()) }
    }

    /// A simple bind as `dn` with `controls`. The result is returned as the
    /// server sent it (a refusal is not an error here); `Err` only when the
    /// server could not be asked.
    pub(super) async fn bind(
        &self,
        dn: &str,
        password: &SecretString,
        controls: Vec<RawControl>,
    ) -> Result<LdapResult> {
        let deadline = self.connector.op_timeout;
        // Waiting for a free bind slot counts against the deadline too: when
        // the server hangs, queued binds fail instead of piling up.
        let _permit = match timeout(deadline, self.permits.acquire()).await {
            Err(_) => return Err(DirectoryError::Timeout(deadline)),
            Ok(permit) => {
                permit.map_err(|_| DirectoryError::Unreachable("the directory client is shutting down".into()))?
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = match self.take_idle() {
                Some(conn) => conn,
                None => self.connector.open(self.connector.urls.len()).await?,
            };
            // One deadline, ours: a second one inside ldap3 would arm
            // another timer on every bind and never fire first.
            let binding = conn.ldap.with_controls(controls.clone()).simple_bind(dn, password.expose_secret());
            match timeout(deadline, binding).await {
                // A hung bind: the connection is dropped, never reused.
                Err(_) => return Err(DirectoryError::Timeout(deadline)),
                Ok(Ok(result)) => {
                    if conn.is_usable() {
                        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                    }
                    return Ok(result);
                }
                // An idle connection the server closed: the bind never
                // reached it, so one more try on a fresh connection.
                Ok(Err(e)) if broke_connection(&e) && attempt < 2 => continue,
                Ok(Err(e)) => return Err(operation_error(e, deadline)),
            }
        }
    }

    /// A connection of its own, never returned to the pool, for a bind
    /// followed by a write on the same session (the password change), and
    /// the operation deadline to use on it.
    pub(super) async fn dedicated(&self) -> Result<(Ldap, Duration)> {
        let conn = self.connector.open(self.connector.urls.len()).await?;
        Ok((conn.ldap, self.connector.op_timeout))
    }

    /// A reusable idle connection; ones on a fallback URL are dropped once
    /// old enough, so binds fail back to the first URL.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut conn) = idle.pop() {
            let stale = conn.url_index > 0 && conn.opened.elapsed() >= self.connector.fail_back_after;
            if conn.is_usable() && !stale {
                return Some(conn);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(5), Duration::from_millis(800));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
