//! `[auth]`: the SMTP AUTH front ends and the decision behind them.
//!
//! Every key has a default, so a config without `[auth]` still loads and
//! serves the Dovecot auth protocol on `127.0.0.1:10030`.
//!
//! Keep `throttle.per_login` below the directory's own lockout threshold
//! (OpenLDAP ppolicy `pwdMaxFailure`, AD `lockoutThreshold`): mailwarrant
//! then refuses a password-guessing client before the directory ever
//! counts enough failures to lock the real user out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listener::{ListenerDefaults, ListenerSettings};
use super::problems::Problems;
use super::{duration, Validate};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub dovecot: RawDovecotListener,
    #[serde(default)]
    pub saslauthd: RawSaslauthdListener,
    #[serde(default)]
    pub throttle: RawThrottle,
    #[serde(default)]
    pub cache: RawCredentialCache,
    /// How long a refusal waits before it is sent (like Dovecot's
    /// `auth_failure_delay`). Counted from the request's arrival, so
    /// unknown users and wrong passwords take the same time.
    #[serde(default = "default_failure_delay")]
    pub failure_delay: String,
    /// The self-service page named in the reply to an expired password
    /// (`{url}` in `texts.expired`); defaults to mailwarrant's own page,
    /// `{http.public_base_url}/password`. Unset either way, the reply
    /// omits it.
    pub self_service_url: Option<String>,
    #[serde(default)]
    pub texts: RawTexts,
}

crate::listener_section! {
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RawDovecotListener {
        /// Before `unix_socket`; still read, and `check-config` says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(skip)]
        pub socket: Option<PathBuf>,
        /// What a temporary failure (directory down) looks like on the wire:
        /// `disconnect` (Postfix and Exim turn a lost connection into 454/435;
        /// they turn every `FAIL` into 535) or `fail_code` (`FAIL …
        /// code=temp_fail`, for clients that honour it).
        #[serde(default)]
        pub temp_fail: TempFailStyle,
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TempFailStyle {
    #[default]
    Disconnect,
    FailCode,
}

crate::listener_section! {
    /// The saslauthd `mux` protocol, over `unix_socket` only; unset turns
    /// the front end off.
    #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RawSaslauthdListener {
        /// Before `unix_socket`; still read, and `check-config` says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(skip)]
        pub socket: Option<PathBuf>,
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    /// Failures are forgotten after this long without a new one. At least
    /// the directory's own observation window (ppolicy
    /// `pwdFailureCountInterval`, AD `lockoutObservationWindow`).
    #[serde(default = "default_window")]
    pub window: String,
    /// Unproven passwords checked per login before the answer becomes
    /// "try later". Keep it below the directory's lockout threshold.
    #[serde(default = "default_per_login")]
    pub per_login: u32,
    /// The same per login from one client network (IPv4 address, IPv6
    /// /64); smaller than `per_login`, so one network cannot spend the
    /// login's whole budget.
    #[serde(default = "default_per_login_client")]
    pub per_login_client: u32,
    /// Per client network, over all logins.
    #[serde(default = "default_per_client")]
    pub per_client: u32,
    /// When the store cannot answer: `local` keeps the budgets in this
    /// process (cached passwords keep working, unproven ones are still
    /// counted); `tempfail` answers "try later" to every unproven password.
    #[serde(default)]
    pub store_error_action: StoreErrorAction,
}

/// What the AUTH throttle does while the store is down.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorAction {
    #[default]
    Local,
    Tempfail,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredentialCache {
    /// How long a successful bind is remembered (as a keyed hash). `"0s"`
    /// turns the credential cache off.
    #[serde(default = "default_cache_ttl")]
    pub ttl: String,
    /// While the directory is down, cached successes keep working this
    /// long after they were last verified (never for accounts last seen
    /// disabled, locked or expired).
    #[serde(default = "default_grace")]
    pub grace: String,
    /// How long a failed (login, password) pair is refused without asking
    /// the directory again, and counted only once.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: String,
    /// After the directory refused a password of a login whose right
    /// password is cached, other passwords are refused without asking it
    /// for this long, so a guessing burst costs the directory one bind
    /// per login per period. A password changed outside mailwarrant in
    /// that moment is refused for at most this long. `"0s"`: always ask.
    #[serde(default = "default_mismatch_ttl")]
    pub mismatch_ttl: String,
    /// Most remembered logins.
    #[serde(default = "default_cache_capacity")]
    pub capacity: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTexts {
    /// Sent for every refusal that must not say why.
    #[serde(default = "default_text_failed")]
    pub failed: String,
    /// Sent when the directory or store cannot answer.
    #[serde(default = "default_text_temporary")]
    pub temporary: String,
    /// Sent when the password is right but expired (or must be changed);
    /// `{url}` is replaced by `self_service_url`.
    #[serde(default = "default_text_expired")]
    pub expired: String,
    /// Sent when too many failures came from a login or address.
    #[serde(default = "default_text_throttled")]
    pub throttled: String,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            dovecot: RawDovecotListener::default(),
            saslauthd: RawSaslauthdListener::default(),
            throttle: RawThrottle::default(),
            cache: RawCredentialCache::default(),
            failure_delay: default_failure_delay(),
            self_service_url: None,
            texts: RawTexts::default(),
        }
    }
}

impl Default for RawThrottle {
    fn default() -> Self {
        Self {
            window: default_window(),
            per_login: default_per_login(),
            per_login_client: default_per_login_client(),
            per_client: default_per_client(),
            store_error_action: StoreErrorAction::default(),
        }
    }
}

impl Default for RawCredentialCache {
    fn default() -> Self {
        Self {
            ttl: default_cache_ttl(),
            grace: default_grace(),
            negative_ttl: default_negative_ttl(),
            mismatch_ttl: default_mismatch_ttl(),
            capacity: default_cache_capacity(),
        }
    }
}

impl Default for RawTexts {
    fn default() -> Self {
        Self {
            failed: default_text_failed(),
            temporary: default_text_temporary(),
            expired: default_text_expired(),
            throttled: default_text_throttled(),
        }
    }
}

fn default_failure_delay() -> String {
    "2s".into()
}
/// The Dovecot auth listener's defaults: Postfix sends its handshake at
/// once; an smtpd whose idle auth connection was closed answers 454 to
/// its next AUTH, so idle connections stay (they count against the cap).
pub const DOVECOT_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: FD_NAME_DOVECOT,
    client: None,
    listen: &["127.0.0.1:10030"],
    tcp: true,
    max_connections: 4096,
    max_connections_per_client: 0,
    handshake_timeout: Duration::from_secs(10),
    idle_timeout: Duration::ZERO,
};

/// saslauthd clients connect, ask once and close.
pub const SASLAUTHD_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: FD_NAME_SASLAUTHD,
    client: Some("the saslauthd client"),
    listen: &[],
    tcp: false,
    max_connections: 1024,
    max_connections_per_client: 0,
    handshake_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(30),
};

/// systemd `FileDescriptorName=` of each AUTH front end's sockets. An
/// unnamed inherited socket goes to the Dovecot auth front end.
pub const FD_NAME_DOVECOT: &str = "dovecot-auth";
pub const FD_NAME_SASLAUTHD: &str = "saslauthd";
fn default_window() -> String {
    // AD's default lockoutObservationWindow; ppolicy sites usually count
    // for less (`pwdFailureCountInterval`).
    "30m".into()
}
fn default_per_login() -> u32 {
    8
}
fn default_per_login_client() -> u32 {
    4
}
fn default_per_client() -> u32 {
    50
}
fn default_cache_ttl() -> String {
    "10m".into()
}
fn default_grace() -> String {
    "15m".into()
}
fn default_negative_ttl() -> String {
    "5m".into()
}
fn default_mismatch_ttl() -> String {
    "10s".into()
}
fn default_cache_capacity() -> usize {
    200_000
}
fn default_text_failed() -> String {
    "Authentication failed".into()
}
fn default_text_temporary() -> String {
    "Authentication temporarily unavailable, try again later".into()
}
fn default_text_expired() -> String {
    "Password expired: change it at {url}".into()
}
fn default_text_throttled() -> String {
    "Too many failed logins, try again later".into()
}

/// Validated `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub dovecot: DovecotListenerSettings,
    pub saslauthd: SaslauthdListenerSettings,
    pub throttle: ThrottleSettings,
    pub cache: CredentialCacheSettings,
    pub failure_delay: Duration,
    pub texts: AuthTexts,
}

#[derive(Debug, Clone)]
pub struct DovecotListenerSettings {
    pub listener: ListenerSettings,
    pub temp_fail: TempFailStyle,
}

#[derive(Debug, Clone)]
pub struct SaslauthdListenerSettings {
    /// Off unless `unix_socket` is set.
    pub listener: ListenerSettings,
}

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    pub window: Duration,
    pub per_login: u32,
    pub per_login_client: u32,
    pub per_client: u32,
    pub store_error_action: StoreErrorAction,
}

#[derive(Debug, Clone)]
pub struct CredentialCacheSettings {
    /// Zero: off.
    pub ttl: Duration,
    pub grace: Duration,
    pub negative_ttl: Duration,
    pub mismatch_ttl: Duration,
    pub capacity: usize,
}

/// What clients are told; never which check failed, except expiry.
#[derive(Debug, Clone)]
pub struct AuthTexts {
    pub failed: String,
    pub temporary: String,
    /// With the self-service URL already filled in.
    pub expired: String,
    pub throttled: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let mut p = Problems::default();
        let settings = RawAuth::default().validate(&mut p, Path::new("."));
        match settings {
            Some(s) if p.errors.is_empty() => s,
            _ => panic!("the built-in [auth] defaults are invalid: {:?}", p.errors),
        }
    }
}

impl Validate for RawAuth {
    type Output = AuthSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<AuthSettings> {
        let failure_delay = duration::parse(p, "auth.failure_delay", &self.failure_delay);
        let mut dovecot = self.dovecot.listener();
        renamed(p, "auth.dovecot", &self.dovecot.socket, &mut dovecot.unix_socket);
        let dovecot = dovecot.validate_as(p, base_dir, "auth.dovecot", &DOVECOT_DEFAULTS);
        let mut sasl = self.saslauthd.listener();
        renamed(p, "auth.saslauthd", &self.saslauthd.socket, &mut sasl.unix_socket);
        // Off unless a socket is named: no warning for that.
        let sasl = if sasl.unix_socket.is_none() && sasl.listen.is_none() {
            Some(ListenerSettings { unix_socket: None, ..ListenerSettings::defaults(&SASLAUTHD_DEFAULTS) })
        } else {
            sasl.validate_as(p, base_dir, "auth.saslauthd", &SASLAUTHD_DEFAULTS)
        };
        let window = duration::parse(p, "auth.throttle.window", &self.throttle.window);
        let t = &self.throttle;
        if t.per_login == 0 || t.per_client == 0 || t.per_login_client == 0 {
            p.error("auth.throttle", "per_login, per_login_client and per_client must be at least 1");
        }
        if t.per_login_client > t.per_login {
            p.warn(
                "auth.throttle.per_login_client",
                "is above per_login: one client network can then spend the whole login budget and lock the user out of every device",
            );
        }
        let ttl = duration::parse(p, "auth.cache.ttl", &self.cache.ttl);
        let grace = duration::parse(p, "auth.cache.grace", &self.cache.grace);
        let negative_ttl = duration::parse(p, "auth.cache.negative_ttl", &self.cache.negative_ttl);
        let mismatch_ttl = duration::parse(p, "auth.cache.mismatch_ttl", &self.cache.mismatch_ttl);
        if self.cache.capacity == 0 {
            p.error("auth.cache.capacity", "must be at least 1");
        }
        let expired = match (&self.self_service_url, self.texts.expired.contains("{url}")) {
            (Some(url), _) => self.texts.expired.replace("{url}", url),
            // No page to name: the reply just says the password expired.
            (None, true) => self.texts.expired.replace(" at {url}", "").replace("{url}", ""),
            (None, false) => self.texts.expired.clone(),
        };
        let texts = AuthTexts {
            failed: text(p, "auth.texts.failed", &self.texts.failed),
            temporary: text(p, "auth.texts.temporary", &self.texts.temporary),
            expired: text(p, "auth.texts.expired", &expired),
            throttled: text(p, "auth.texts.throttled", &self.texts.throttled),
        };
        Some(AuthSettings {
            dovecot: DovecotListenerSettings { listener: dovecot?, temp_fail: self.dovecot.temp_fail },
            saslauthd: SaslauthdListenerSettings { listener: sasl? },
            throttle: ThrottleSettings {
                window: window?,
                per_login: t.per_login.max(1),
                per_login_client: t.per_login_client.max(1),
                per_client: t.per_client.max(1),
                store_error_action: t.store_error_action,
            },
            cache: CredentialCacheSettings {
                ttl: ttl?,
                grace: grace?,
                negative_ttl: negative_ttl?,
                mismatch_ttl: mismatch_ttl?,
                capacity: self.cache.capacity.max(1),
            },
            failure_delay: failure_delay?,
            texts,
        })
    }
}

/// `socket`, the key before `unix_socket`: still read, with a warning
/// that says what it became.
fn renamed(p: &mut Problems, at: &str, old: &Option<PathBuf>, new: &mut Option<PathBuf>) {
    let Some(old) = old else { return };
    if new.is_some() {
        p.error(format!("{at}.socket"), "was renamed `unix_socket`, which is set too: remove `socket`");
    } else {
        p.warn(format!("{at}.socket"), "was renamed `unix_socket`: write `unix_socket = ...` instead");
        *new = Some(old.clone());
    }
}

/// Reply texts go into protocol lines: no control characters (they would
/// split a Dovecot line or an SMTP reply).
fn text(p: &mut Problems, path: &str, value: &str) -> String {
    if value.chars().any(char::is_control) {
        p.error(path, "must not contain control characters (tabs, line breaks)");
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str) -> (Option<AuthSettings>, Problems) {
        let raw: RawAuth = toml::from_str(toml_text).expect("parses");
        let mut p = Problems::default();
        (raw.validate(&mut p, Path::new("/etc/mailwarrant")), p)
    }

    #[test]
    fn defaults_listen_on_the_documented_port() {
        let s = AuthSettings::default();
        assert_eq!(s.dovecot.listener.tcp, vec!["127.0.0.1:10030".parse::<std::net::SocketAddr>().unwrap()]);
        assert_eq!(s.failure_delay, Duration::from_secs(2));
        assert_eq!(s.cache.grace, Duration::from_secs(15 * 60));
        assert!(s.saslauthd.listener.is_empty());
    }

    #[test]
    fn expiry_text_names_the_self_service_page() {
        let (s, p) = load("self_service_url = \"https://mail.example.com/password\"\n");
        assert!(p.errors.is_empty());
        assert_eq!(s.unwrap().texts.expired, "Password expired: change it at https://mail.example.com/password");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (_, p) = load(
            "failure_delay = \"soon\"\n[dovecot]\nlisten = [\"nowhere\"]\nsocket_mode = \"rw\"\n\
             [throttle]\nper_login = 0\n[texts]\nfailed = \"a\\tb\"\n",
        );
        let paths: Vec<&str> = p.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.failure_delay",
                "auth.dovecot.listen[0]",
                "auth.dovecot.socket_mode",
                "auth.throttle",
                "auth.texts.failed"
            ]
        );
    }

    #[test]
    fn relative_socket_paths_resolve_against_the_config_folder() {
        let (s, p) = load("[saslauthd]\nsocket = \"run/mux\"\n");
        assert_eq!(s.unwrap().saslauthd.listener.unix_socket.unwrap(), Path::new("/etc/mailwarrant/run/mux"));
        assert_eq!(p.warnings[0].path, "auth.saslauthd.socket", "the old key says what it became");
        let (s, p) = load("[dovecot]\nunix_socket = \"auth\"\nsocket_group = \"0\"\n");
        assert!(p.warnings.is_empty() && p.errors.is_empty());
        assert_eq!(s.unwrap().dovecot.listener.socket_group, Some(0));
    }
}
