//! The shared store: one Redis server for several mailwarrant instances.
//!
//! Every operation is one Redis command or one Lua script, so it is
//! atomic on the server whatever the other instances do: a counter is
//! created and given its expiry in the same script (a key can never be
//! left without one), and a rate-limit charge checks every window and
//! raises them all, or none, in one script. Expiry is Redis's own clock,
//! so instances with skewed clocks still agree.
//!
//! Keys are `<prefix>c:<key>` (counters), `<prefix>k:<key>` (values) and
//! `<prefix>l:<log>` (capped lists): counters and values never collide,
//! as in SQLite's separate tables. One call may touch several keys, so
//! Redis Cluster (keys spread over slots) is not supported; a single
//! server, an HA address in front of a primary, or Sentinel is.
//!
//! With `sentinels`, each connection is opened to the primary the
//! Sentinels name at that moment; when it fails or answers READONLY (the
//! old primary, demoted after a failover), the connections are dropped
//! and the next request asks the Sentinels again.
//!
//! Connections: `pool_size` [`ConnectionManager`]s, each one multiplexed
//! connection that reconnects by itself after an error. They are opened
//! lazily, so `serve` starts while Redis is down and works as soon as it
//! is back. Every call is bounded by `operation_timeout`; any connection
//! trouble is [`StoreError::Unavailable`], and callers apply their outage
//! action. The outage is logged once when it starts (then at most every
//! [`LOG_EVERY`]) and once when it ends, not per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{RedisConnectionInfo, RedisError, Script, Value};
use secrecy::ExposeSecret;

use super::{ChargeOutcome, Expiry, Increment, LogEvery, Result, Store, StoreError};
use crate::config::store::RedisSettings;

/// While Redis stays down, repeat the outage log line this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// `KEYS[1]` counter; `ARGV` delta, ttl ms. A counter without expiry
/// (new, or left by anything else) gets one.
static INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('INCRBY', KEYS[1], ARGV[1])
         if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
         return v",
    )
});

/// `KEYS` = [once key if ARGV[1] == '1'] + counters; `ARGV` = has_once,
/// once ttl ms, then (delta, limit, ttl ms, after_last) per counter
/// (`after_last` = '1': [`Expiry::AfterLast`], the expiry moves on every
/// charge). Returns `{-1}`
/// (already charged), `{0, index, values…}` (refused, index 0-based) or
/// `{1, values…}` (charged).
static INCR_WITHIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local first = 1
         if ARGV[1] == '1' then
           if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
           first = 2
         end
         local n = #KEYS - first + 1
         local values = {}
         for i = 1, n do
           values[i] = tonumber(redis.call('GET', KEYS[first + i - 1]) or '0')
         end
         for i = 1, n do
           if values[i] + tonumber(ARGV[4 * i - 1]) > tonumber(ARGV[4 * i]) then
             local out = {0, i - 1}
             for j = 1, n do out[j + 2] = values[j] end
             return out
           end
         end
         local out = {1}
         for i = 1, n do
           local k = KEYS[first + i - 1]
           out[i + 1] = redis.call('INCRBY', k, ARGV[4 * i - 1])
           if ARGV[4 * i + 2] == '1' or redis.call('PTTL', k) < 0 then
             redis.call('PEXPIRE', k, ARGV[4 * i + 1])
           end
         end
         if first == 2 then redis.call('SET', KEYS[1], '', 'PX', ARGV[2]) end
         return out",
    )
});

/// `KEYS[1]` counter: `{value, pttl}` or nil.
static COUNTER_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if not v then return nil end
         return {tonumber(v), redis.call('PTTL', KEYS[1])}",
    )
});

/// `KEYS[1]` list; `ARGV` record, keep.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local keep = tonumber(ARGV[2])
         if keep <= 0 then redis.call('DEL', KEYS[1]) return 0 end
         redis.call('LPUSH', KEYS[1], ARGV[1])
         redis.call('LTRIM', KEYS[1], 0, keep - 1)
         return 0",
    )
});

/// Handle to the Redis store; cheap to share behind an `Arc`.
pub struct RedisStore {
    target: Target,
    settings: RedisSettings,
    /// Opened on first use; emptied to make the next request reconnect
    /// (Sentinel: to the primary of the moment).
    connections: Vec<RwLock<Option<ConnectionManager>>>,
    next: AtomicUsize,
    outage: Outage,
}

/// Where connections go.
enum Target {
    Server(redis::Client),
    /// Asked for the current primary on every (re)connection.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// Whether the client library can use `url` (for config validation; only
/// this module imports the `redis` crate).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    redis::Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

impl RedisStore {
    /// Checks the URL; connects on first use (Redis may be down now and up
    /// later: the service still starts).
    pub fn open(settings: &RedisSettings) -> Result<Self> {
        let unusable = |e: RedisError| StoreError::Unavailable(format!("{}: {e}", settings.url));
        let target = match &settings.sentinel {
            None => Target::Server(redis::Client::open(settings.url.expose()).map_err(unusable)?),
            Some(s) => {
                // The primary's login; without one the library connects
                // anonymously, which a `requirepass` primary refuses.
                let login = s.password.as_ref().map(|password| SentinelNodeConnectionInfo {
                    tls_mode: None,
                    redis_connection_info: Some(RedisConnectionInfo {
                        username: s.username.clone(),
                        password: Some(password.expose_secret().to_owned()),
                        ..RedisConnectionInfo::default()
                    }),
                });
                Target::Sentinel(tokio::sync::Mutex::new(
                    SentinelClient::build(s.sentinels.clone(), s.master.clone(), login, SentinelServerType::Master)
                        .map_err(unusable)?,
                ))
            }
        };
        Ok(Self {
            target,
            connections: (0..settings.pool_size.max(1)).map(|_| RwLock::new(None)).collect(),
            settings: settings.clone(),
            next: AtomicUsize::new(0),
            outage: Outage::default(),
        })
    }

    /// Opens and checks the connection now (`check-config --connect`).
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        let store = Self::open(settings)?;
        store.check_health().await?;
        Ok(store)
    }

    fn counter_key(&self, key: &str) -> String {
        format!("{}c:{key}", self.settings.prefix)
    }

    fn value_key(&self, key: &str) -> String {
        format!("{}k:{key}", self.settings.prefix)
    }

    fn log_key(&self, log: &str) -> String {
        format!("{}l:{log}", self.settings.prefix)
    }

    async fn connection(&self) -> std::result::Result<ConnectionManager, RedisError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        if let Some(ready) = self.connections[i].read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(ready.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.settings.connect_timeout)
            .set_response_timeout(self.settings.operation_timeout)
            // One attempt per (re)connection, no backoff: while Redis is
            // down every request fails at once (a refused connection costs
            // microseconds, a silent host `connect_timeout`) instead of
            // waiting out retries, and the next request tries again, so
            // recovery follows Redis's return immediately.
            .set_number_of_retries(0);
        let client = match &self.target {
            Target::Server(client) => client.clone(),
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await?,
        };
        let manager = ConnectionManager::new_with_config(client, config).await?;
        *self.connections[i].write().unwrap_or_else(|e| e.into_inner()) = Some(manager.clone());
        Ok(manager)
    }

    /// Drops every connection so the next requests ask the Sentinels for
    /// the primary again. A direct connection reconnects by itself.
    fn forget_primary(&self) {
        if matches!(self.target, Target::Sentinel(_)) {
            for slot in &self.connections {
                *slot.write().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    /// Runs one operation with the operation timeout; maps and logs errors.
    async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, RedisError>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            op(conn).await
        };
        let result = match tokio::time::timeout(self.settings.operation_timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(what, e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis at {} did not answer {what} within {:?}",
                self.settings.url, self.settings.operation_timeout
            ))),
        };
        match &result {
            Ok(_) => self.outage.ended(&self.settings),
            Err(StoreError::Unavailable(why)) => {
                self.forget_primary();
                self.outage.seen(why)
            }
            Err(_) => {}
        }
        result
    }

    fn classify(&self, what: &str, e: RedisError) -> StoreError {
        let unreachable = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            // During a failover the Sentinels name no primary for a moment,
            // and the demoted one answers READONLY: both are outages.
            || matches!(
                e.kind(),
                redis::ErrorKind::BusyLoadingError
                    | redis::ErrorKind::TryAgain
                    | redis::ErrorKind::ReadOnly
                    | redis::ErrorKind::MasterNameNotFoundBySentinel
            );
        if unreachable {
            StoreError::Unavailable(format!("Redis at {} unreachable during {what}: {e}", self.settings.url))
        } else {
            StoreError::Backend(format!("Redis {what}: {e}"))
        }
    }
}

/// Outage state for logging once, not once per request.
struct Outage {
    down: AtomicBool,
    log: LogEvery,
}

impl Default for Outage {
    fn default() -> Self {
        Self { down: AtomicBool::new(false), log: LogEvery::new(LOG_EVERY) }
    }
}

impl Outage {
    fn seen(&self, why: &str) {
        self.down.store(true, Ordering::Relaxed);
        if self.log.due() {
            tracing::error!(
                error = %why,
                "Redis store unavailable: policy and AUTH apply their outage actions until it is back; /readyz fails"
            );
        }
    }

    fn ended(&self, settings: &RedisSettings) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            self.log.reset();
            tracing::warn!(url = %settings.url, "Redis store reachable again");
        }
    }
}

fn millis(d: Duration) -> u64 {
    // PEXPIRE/PX refuse 0; a zero TTL becomes "expires at once".
    (d.as_millis().min(i64::MAX as u128 / 2) as u64).max(1)
}

fn ints(v: Value) -> std::result::Result<Vec<i64>, RedisError> {
    redis::from_redis_value(&v)
}

fn decode_charge(reply: Vec<i64>) -> Result<ChargeOutcome> {
    match reply.split_first() {
        Some((-1, _)) => Ok(ChargeOutcome::AlreadyCharged),
        Some((1, values)) => Ok(ChargeOutcome::Charged(values.to_vec())),
        Some((0, rest)) if !rest.is_empty() => {
            let values = rest[1..].to_vec();
            match usize::try_from(rest[0]) {
                Ok(index) if index < values.len() => Ok(ChargeOutcome::Refused { index, values }),
                _ => Err(StoreError::Backend(format!("unexpected charge reply {reply:?}"))),
            }
        }
        _ => Err(StoreError::Backend(format!("unexpected charge reply {reply:?}"))),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64> {
        let key = self.counter_key(key);
        self.run("INCR", |mut c| async move { INCR.key(key).arg(delta).arg(millis(ttl)).invoke_async(&mut c).await })
            .await
    }

    async fn incr_within(&self, once: Option<(&str, Duration)>, increments: &[Increment]) -> Result<ChargeOutcome> {
        let mut invocation = INCR_WITHIN.prepare_invoke();
        match once {
            Some((key, ttl)) => invocation.key(self.value_key(key)).arg("1").arg(millis(ttl)),
            None => invocation.arg("0").arg(0),
        };
        for inc in increments {
            let after_last = if inc.expiry == Expiry::AfterLast { "1" } else { "0" };
            invocation
                .key(self.counter_key(&inc.key))
                .arg(inc.delta)
                .arg(inc.limit)
                .arg(millis(inc.ttl))
                .arg(after_last);
        }
        let reply = self
            .run("a rate-limit charge", |mut c| async move {
                let v: Value = invocation.invoke_async(&mut c).await?;
                ints(v)
            })
            .await?;
        decode_charge(reply)
    }

    async fn counter(&self, key: &str) -> Result<i64> {
        let key = self.counter_key(key);
        let v: Option<i64> =
            self.run("GET", |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await?;
        Ok(v.unwrap_or(0))
    }

    async fn counter_with_ttl(&self, key: &str) -> Result<Option<(i64, Duration)>> {
        let key = self.counter_key(key);
        let v: Option<(i64, i64)> =
            self.run("GET", |mut c| async move { COUNTER_TTL.key(key).invoke_async(&mut c).await }).await?;
        // PTTL -1 (no expiry) cannot happen through this store; report a
        // long time rather than none.
        Ok(v.map(|(value, pttl)| {
            let left =
                if pttl >= 0 { Duration::from_millis(pttl as u64) } else { Duration::from_secs(u32::MAX.into()) };
            (value, left)
        }))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.value_key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        self.run("SET", |mut c| async move { cmd.query_async::<()>(&mut c).await }).await
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.value_key(key)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let stored: Option<String> = self.run("SET NX", |mut c| async move { cmd.query_async(&mut c).await }).await?;
        Ok(stored.is_some())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = self.value_key(key);
        self.run("GET", |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let (counter, value) = (self.counter_key(key), self.value_key(key));
        let removed: i64 = self
            .run("DEL", |mut c| async move { redis::cmd("DEL").arg(counter).arg(value).query_async(&mut c).await })
            .await?;
        Ok(removed > 0)
    }

    async fn append(&self, log: &str, record: &[u8], keep: usize) -> Result<()> {
        let key = self.log_key(log);
        let record = record.to_vec();
        self.run("a log append", |mut c| async move {
            APPEND.key(key).arg(record).arg(keep).invoke_async::<i64>(&mut c).await.map(|_| ())
        })
        .await
    }

    async fn tail(&self, log: &str, limit: usize) -> Result<Vec<Vec<u8>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.log_key(log);
        let last = i64::try_from(limit - 1).unwrap_or(i64::MAX);
        self.run(
            "LRANGE",
            |mut c| async move { redis::cmd("LRANGE").arg(key).arg(0).arg(last).query_async(&mut c).await },
        )
        .await
    }

    async fn check_health(&self) -> Result<()> {
        let pong: String =
            self.run("PING", |mut c| async move { redis::cmd("PING").query_async(&mut c).await }).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Backend(format!("Redis answered PING with {pong:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_replies_decode() {
        assert_eq!(decode_charge(vec![-1]).unwrap(), ChargeOutcome::AlreadyCharged);
        assert_eq!(decode_charge(vec![1, 2, 10]).unwrap(), ChargeOutcome::Charged(vec![2, 10]));
        assert_eq!(decode_charge(vec![1]).unwrap(), ChargeOutcome::Charged(vec![]));
        assert_eq!(decode_charge(vec![0, 1, 2, 10]).unwrap(), ChargeOutcome::Refused { index: 1, values: vec![2, 10] });
        assert!(decode_charge(vec![]).is_err());
        assert!(decode_charge(vec![0]).is_err());
        assert!(decode_charge(vec![0, -3]).is_err());
    }

    #[test]
    fn ttls_are_never_zero_or_overflowing() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert!(millis(Duration::MAX) < i64::MAX as u64);
    }
}
