//! `[store]`: where counters, throttles and the audit trail live.
//!
//! `kind = "sqlite"` (default): one file owned by this process.
//! `kind = "redis"`: a Redis server shared by several mailwarrant
//! instances, so limits, lockouts and the reminder ledger hold across
//! them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::secret::{self, Redacted};
use super::{duration, Validate};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite`, the embedded default, or `redis`, shared by several
    /// instances.
    #[serde(default)]
    pub kind: StoreKind,
    /// SQLite database file, relative to the config file. Left out:
    /// `state.sqlite` in systemd's `StateDirectory=` (`$STATE_DIRECTORY`,
    /// /var/lib/mailwarrant with the packaged unit, which makes /etc
    /// read-only), else `mailwarrant.sqlite` beside the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// SQLite durability of each commit: `full` (default) fsyncs every
    /// commit and survives power loss; `normal` (WAL without an fsync per
    /// commit) survives a crash of mailwarrant but may lose the last
    /// commits on power loss or an OS crash, for a lower commit latency.
    /// Rate-limit and AUTH counters never wait for a commit either way:
    /// they are kept in memory and written every second.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Redis only: `redis://[:password@]host:port[/db]` or `rediss://…`
    /// (TLS). A single Redis server (or a proxy in front of several); with
    /// `sentinels`, leave it out. Cluster is not supported. A password in
    /// the URL is hidden when the config is printed.
    #[serde(default, serialize_with = "serialize_url_redacted")]
    pub url: Option<String>,
    /// Redis only: Redis Sentinel addresses (`redis://host:26379`), asked
    /// for the current primary of `sentinel_master` on every connection,
    /// so a failover is followed without a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<String>,
    /// Redis only: the name the Sentinels monitor the primary under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Redis with `sentinels` only: the password of the primary the
    /// Sentinels name (its `requirepass`), inline or from
    /// `primary_password_file` / `primary_password_env`. A Sentinel's
    /// own password goes in its URL; without Sentinel, in `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_password: Option<Redacted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_password_env: Option<String>,
    /// Redis with `sentinels` only: the ACL user of `primary_password`
    /// (Redis 6 and later); leave out for `requirepass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_username: Option<String>,
    /// Redis only: prefix of every key, so several applications (or
    /// several mailwarrant sites) can share one Redis.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Redis only: connections kept open (each multiplexes many requests).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Redis only: how long one connection attempt may take (a request
    /// still waits at most `operation_timeout` for it).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Redis only: how long one operation may take before the store counts
    /// as unavailable (callers then apply their outage action).
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: String,
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
        Self {
            kind: StoreKind::default(),
            path: None,
            synchronous: Synchronous::default(),
            url: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            primary_password: None,
            primary_password_file: None,
            primary_password_env: None,
            primary_username: None,
            prefix: default_prefix(),
            pool_size: default_pool_size(),
            connect_timeout: default_connect_timeout(),
            operation_timeout: default_operation_timeout(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Redis,
}

/// `check-config` prints the raw config: never the URL's password.
fn serialize_url_redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&RedisUrl(u.clone()).to_string()),
        None => s.serialize_none(),
    }
}

/// Where the SQLite file goes when `path` is left out: in the state
/// folder systemd made for the service (the first one when
/// `StateDirectory=` lists several), else beside the config file.
pub fn default_sqlite_path(base_dir: &Path, state_directory: Option<&std::ffi::OsStr>) -> PathBuf {
    let state = state_directory.and_then(|dirs| std::env::split_paths(dirs).next()).filter(|dir| dir.is_absolute());
    match state {
        Some(dir) => dir.join("state.sqlite"),
        None => base_dir.join("mailwarrant.sqlite"),
    }
}

fn default_prefix() -> String {
    "mailwarrant:".into()
}

fn default_pool_size() -> u32 {
    4
}

fn default_connect_timeout() -> String {
    "2s".into()
}

fn default_operation_timeout() -> String {
    "500ms".into()
}

/// Most connections `pool_size` may ask for.
const MAX_POOL_SIZE: u32 = 64;

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Sqlite { path: PathBuf, synchronous: Synchronous },
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server; with Sentinel, a description for log lines.
    pub url: RedisUrl,
    /// Ask these Sentinels for the primary instead of connecting to `url`.
    pub sentinel: Option<SentinelSettings>,
    pub prefix: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
}

/// Redis Sentinel: where to ask, for which primary, and how to log in
/// to it.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    pub sentinels: Vec<String>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

/// A Redis URL; may carry a password, so `Debug` and `Display` show it
/// without one.
#[derive(Clone)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://[user[:password]@]rest → scheme://rest (credentials hidden)
        match self.0.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => write!(f, "{scheme}://***@{host}"),
                None => write!(f, "{scheme}://{rest}"),
            },
            None => f.write_str("(not a URL)"),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// URL schemes the Redis backend accepts; only `redis://` is exercised by
/// the test suite.
const REDIS_SCHEMES: &[&str] = &["redis", "rediss", "redis+unix", "unix"];

impl Validate for RawStore {
    type Output = StoreSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<StoreSettings> {
        match self.kind {
            StoreKind::Sqlite => {
                if self.url.is_some() {
                    p.error(
                        "store.url",
                        "a Redis URL is set but store.kind is \"sqlite\"; set kind = \"redis\" or remove url",
                    );
                }
                let path = match &self.path {
                    Some(path) => base_dir.join(path),
                    None => default_sqlite_path(base_dir, std::env::var_os("STATE_DIRECTORY").as_deref()),
                };
                if let Some(parent) = path.parent() {
                    if !parent.as_os_str().is_empty() && !parent.is_dir() {
                        p.error("store.path", format!("folder {} does not exist", parent.display()));
                    }
                }
                Some(StoreSettings::Sqlite { path, synchronous: self.synchronous })
            }
            StoreKind::Redis => self.validate_redis(p, base_dir).map(StoreSettings::Redis),
        }
    }
}

impl RawStore {
    fn has_primary_password(&self) -> bool {
        self.primary_password.is_some() || self.primary_password_file.is_some() || self.primary_password_env.is_some()
    }

    /// `Some(None)`: no Sentinel configured; `None`: a problem was recorded.
    fn sentinel_settings(&self, p: &mut Problems, base_dir: &Path) -> Option<Option<SentinelSettings>> {
        let primary_login = self.has_primary_password() || self.primary_username.is_some();
        match (&self.sentinel_master, self.sentinels.is_empty()) {
            (None, true) => {
                if primary_login {
                    p.error("store.primary_password", "only with sentinels; otherwise put the password in url");
                    return None;
                }
                Some(None)
            }
            (Some(_), true) => {
                p.error(
                    "store.sentinels",
                    "sentinel_master is set: list the Sentinels, e.g. [\"redis://10.0.0.5:26379\"]",
                );
                None
            }
            (None, false) => {
                p.error("store.sentinel_master", "sentinels are set: name the primary they monitor, e.g. \"mymaster\"");
                None
            }
            (Some(master), false) => {
                let mut ok = true;
                for s in &self.sentinels {
                    if let Err(e) = crate::store::redis::check_url(s) {
                        p.error("store.sentinels", format!("{s} is not a usable Redis URL: {e}"));
                        ok = false;
                    }
                }
                let password = if self.has_primary_password() {
                    let password = secret::resolve(
                        p,
                        "store.primary_password",
                        self.primary_password.as_ref(),
                        self.primary_password_file.as_deref(),
                        self.primary_password_env.as_deref(),
                        base_dir,
                    );
                    ok &= password.is_some();
                    password
                } else {
                    if self.primary_username.is_some() {
                        p.error("store.primary_username", "goes with primary_password");
                        ok = false;
                    }
                    None
                };
                ok.then(|| {
                    Some(SentinelSettings {
                        sentinels: self.sentinels.clone(),
                        master: master.clone(),
                        username: self.primary_username.clone(),
                        password,
                    })
                })
            }
        }
    }

    fn validate_redis(&self, p: &mut Problems, base_dir: &Path) -> Option<RedisSettings> {
        let connect_timeout = duration::parse(p, "store.connect_timeout", &self.connect_timeout);
        let operation_timeout = duration::parse(p, "store.operation_timeout", &self.operation_timeout);
        for (key, d) in [("store.connect_timeout", connect_timeout), ("store.operation_timeout", operation_timeout)] {
            if d == Some(Duration::ZERO) {
                p.error(key, "must be longer than zero");
            }
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            p.error("store.pool_size", format!("must be between 1 and {MAX_POOL_SIZE}"));
        }
        if self.prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.error("store.prefix", "must not contain spaces or control characters");
        }
        let sentinel = self.sentinel_settings(p, base_dir)?;
        if let Some(s) = &sentinel {
            if self.url.is_some() {
                p.error("store.url", "leave url out with sentinels: the Sentinels name the primary");
            }
            return Some(RedisSettings {
                url: RedisUrl(format!("primary {} via Sentinel {}", s.master, s.sentinels.join(","))),
                sentinel,
                prefix: self.prefix.clone(),
                pool_size: self.pool_size.clamp(1, MAX_POOL_SIZE) as usize,
                connect_timeout: connect_timeout?,
                operation_timeout: operation_timeout?,
            });
        }
        let Some(url) = &self.url else {
            p.error(
                "store.url",
                "kind = \"redis\" needs url = \"redis://host:6379\" (or sentinels and sentinel_master)",
            );
            return None;
        };
        let url = RedisUrl(url.trim().to_owned());
        let scheme = url.0.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some(s) if REDIS_SCHEMES.contains(&s) => {
                if let Err(e) = crate::store::redis::check_url(url.expose()) {
                    p.error("store.url", format!("{url} is not a usable Redis URL: {e}"));
                }
            }
            Some(s) if s.contains("sentinel") => p.error(
                "store.url",
                format!("{s}:// is not read: list the Sentinels in `sentinels` and name the primary in `sentinel_master`"),
            ),
            Some(s) if s.contains("cluster") => p.error(
                "store.url",
                format!(
                    "{s}:// is not supported (one charge touches several keys): point url at a single Redis or use Sentinel"
                ),
            ),
            _ => {
                p.error("store.url", format!("{url} is not a Redis URL; write redis://host:6379 or rediss://host:6380"))
            }
        }
        if self.path.is_some() {
            p.warn("store.path", "ignored with kind = \"redis\"");
        }
        Some(RedisSettings {
            url,
            sentinel: None,
            prefix: self.prefix.clone(),
            pool_size: self.pool_size.clamp(1, MAX_POOL_SIZE) as usize,
            connect_timeout: connect_timeout?,
            operation_timeout: operation_timeout?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Problems, Option<StoreSettings>) {
        let raw: RawStore = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let s = raw.validate(&mut p, Path::new("."));
        (p, s)
    }

    #[test]
    fn sentinel_needs_both_keys_and_no_url() {
        let (p, s) =
            check("kind = \"redis\"\nsentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"mymaster\"");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let Some(StoreSettings::Redis(r)) = s else { panic!("redis settings") };
        assert_eq!(r.sentinel.unwrap().master, "mymaster");
        let (p, _) = check("kind = \"redis\"\nsentinel_master = \"mymaster\"");
        assert_eq!(p.errors[0].path, "store.sentinels");
        let (p, _) = check("kind = \"redis\"\nsentinels = [\"redis://127.0.0.1:26379\"]");
        assert_eq!(p.errors[0].path, "store.sentinel_master");
        let (p, _) = check(
            "kind = \"redis\"\nsentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"m\"\nurl = \"redis://h\"",
        );
        assert_eq!(p.errors[0].path, "store.url");
        let (p, _) = check("kind = \"redis\"\nsentinels = [\"nonsense\"]\nsentinel_master = \"m\"");
        assert_eq!(p.errors[0].path, "store.sentinels");
    }

    #[test]
    fn redis_needs_a_url_and_sane_values() {
        let (p, _) = check("kind = \"redis\"");
        assert_eq!(p.errors[0].path, "store.url");
        let (p, _) = check("kind = \"redis\"\nurl = \"redis+sentinel://h:26379/mymaster\"");
        assert!(p.errors[0].message.contains("sentinel_master"), "{:?}", p.errors);
        let (p, _) = check("kind = \"redis\"\nurl = \"redis+cluster://h:7000\"");
        assert!(p.errors[0].message.contains("not supported"), "{:?}", p.errors);
        let (p, _) = check("kind = \"redis\"\nurl = \"http://h\"\npool_size = 0\noperation_timeout = \"soon\"");
        let paths: Vec<_> = p.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["store.operation_timeout", "store.pool_size", "store.url"]);
        let (p, _) = check("url = \"redis://h\"");
        assert_eq!(p.errors[0].path, "store.url", "a URL with kind sqlite is a mistake");
    }

    #[test]
    fn redis_settings_hide_the_password() {
        let (p, s) = check("kind = \"redis\"\nurl = \"redis://:s3cret@127.0.0.1:6379/2\"");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let Some(StoreSettings::Redis(r)) = s else { panic!("redis settings") };
        assert_eq!(r.prefix, "mailwarrant:");
        assert_eq!(r.operation_timeout, Duration::from_millis(500));
        assert!(!format!("{r:?}").contains("s3cret"));
        assert_eq!(r.url.to_string(), "redis://***@127.0.0.1:6379/2");
        let raw: RawStore = toml::from_str("kind = \"redis\"\nurl = \"redis://:s3cret@h\"").unwrap();
        assert!(!toml::to_string(&raw).unwrap().contains("s3cret"));
    }

    #[test]
    fn the_default_sqlite_file_goes_in_the_state_directory_when_systemd_names_one() {
        let etc = Path::new("/etc/mailwarrant");
        let state = |v: &str| default_sqlite_path(etc, Some(std::ffi::OsStr::new(v)));
        assert_eq!(state("/var/lib/mailwarrant"), Path::new("/var/lib/mailwarrant/state.sqlite"));
        assert_eq!(state("/var/lib/mailwarrant:/var/lib/other"), Path::new("/var/lib/mailwarrant/state.sqlite"));
        assert_eq!(state("relative"), Path::new("/etc/mailwarrant/mailwarrant.sqlite"), "only an absolute folder");
        assert_eq!(default_sqlite_path(etc, None), Path::new("/etc/mailwarrant/mailwarrant.sqlite"));
    }
}
