//! The one listener shape every front end is configured with: `[auth.dovecot]`,
//! `[auth.saslauthd]`, `[policy]`, `[milter]`, `[http]` and `[ops]` all take
//! the same keys, written once here ([`listener_section!`]) and validated
//! once ([`RawListener::validate_as`]), so a cap, a timer or a socket mode
//! means the same thing on every socket.
//!
//! Each front end has its own defaults ([`ListenerDefaults`]): Postfix keeps
//! policy and milter connections open for minutes, a browser's keep-alive
//! should not hold a descriptor that long, and a Postfix smtpd answers 454
//! to the next AUTH when the auth server closed its idle connection, so the
//! Dovecot auth listener has no idle timeout by default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;
use super::problems::Problems;

/// Declares a config section struct with the listener keys in front of
/// its own fields. serde's `flatten` would silently accept unknown keys
/// (it cannot be combined with `deny_unknown_fields`), so the keys are
/// spliced in instead; [`RawListener`] is their typed view.
#[macro_export]
macro_rules! listener_section {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            /// TCP address(es) to listen on: `"127.0.0.1:10040"` or a list;
            /// `""` or `[]` turns TCP off. The default depends on the section.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub listen: Option<$crate::config::listener::Listen>,
            /// A UNIX socket to listen on as well (or instead).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub unix_socket: Option<std::path::PathBuf>,
            /// Octal permissions of `unix_socket` (default `"0660"`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub socket_mode: Option<String>,
            /// Group (name or number) that owns `unix_socket`, e.g. `postfix`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub socket_group: Option<String>,
            /// Most connections served at once; more wait in the kernel
            /// backlog. Counted against the process's descriptor limit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_connections: Option<usize>,
            /// Most connections from one client address (TCP; `0`: no cap).
            /// Trusted proxies (`[http] trusted_proxies`) are exempt.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_connections_per_client: Option<usize>,
            /// A new connection must send its first request (HTTP: a whole
            /// request head, each time; HTTPS: the TLS handshake too)
            /// within this time. `"0s"`: no limit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub handshake_timeout: Option<String>,
            /// A connection waiting this long for its next bytes is closed.
            /// `"0s"`: never.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub idle_timeout: Option<String>,
            $($body)*
        }

        impl $name {
            /// The listener keys of this section.
            pub fn listener(&self) -> $crate::config::listener::RawListener {
                $crate::config::listener::RawListener {
                    listen: self.listen.clone(),
                    unix_socket: self.unix_socket.clone(),
                    socket_mode: self.socket_mode.clone(),
                    socket_group: self.socket_group.clone(),
                    max_connections: self.max_connections,
                    max_connections_per_client: self.max_connections_per_client,
                    handshake_timeout: self.handshake_timeout.clone(),
                    idle_timeout: self.idle_timeout.clone(),
                }
            }
        }
    };
}

/// One address or several.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Listen {
    One(String),
    Many(Vec<String>),
}

/// The listener keys of one section, as written.
#[derive(Clone, Debug, Default)]
pub struct RawListener {
    pub listen: Option<Listen>,
    pub unix_socket: Option<PathBuf>,
    pub socket_mode: Option<String>,
    pub socket_group: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub handshake_timeout: Option<String>,
    pub idle_timeout: Option<String>,
}

/// What a front end gets when a key is left out.
#[derive(Clone, Copy, Debug)]
pub struct ListenerDefaults {
    /// The systemd `FileDescriptorName=` of its sockets.
    pub fd_name: &'static str,
    /// Who connects, for the warning when nothing is configured; `None`:
    /// turning the listener off is a normal choice (no warning).
    pub client: Option<&'static str>,
    pub listen: &'static [&'static str],
    /// False for protocols spoken over UNIX sockets only (saslauthd).
    pub tcp: bool,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Mode of a UNIX socket unless configured: owner and group only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// A validated listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The systemd `FileDescriptorName=` whose inherited sockets replace
    /// `tcp` and `unix_socket`.
    pub fd_name: &'static str,
    pub tcp: Vec<SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    pub socket_mode: u32,
    /// Resolved group id for `unix_socket`.
    pub socket_group: Option<u32>,
    pub max_connections: usize,
    /// Zero: no per-client cap.
    pub max_connections_per_client: usize,
    /// Zero: no limit.
    pub handshake_timeout: Duration,
    /// Zero: never.
    pub idle_timeout: Duration,
}

impl ListenerSettings {
    /// A listener with only `defaults` (tests, built-in sections).
    pub fn defaults(d: &ListenerDefaults) -> Self {
        let mut p = Problems::default();
        RawListener::default()
            .validate_as(&mut p, Path::new("."), "listener", d)
            .unwrap_or_else(|| panic!("built-in listener defaults are invalid: {:?}", p.errors))
    }

    /// Whether anything is configured to listen on.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.unix_socket.is_none()
    }
}

impl RawListener {
    /// Validates the keys of section `at` with the front end's defaults.
    pub fn validate_as(
        &self,
        p: &mut Problems,
        base_dir: &Path,
        at: &str,
        d: &ListenerDefaults,
    ) -> Option<ListenerSettings> {
        let texts: Vec<String> = match &self.listen {
            None => d.listen.iter().map(|s| (*s).to_owned()).collect(),
            Some(Listen::One(s)) if s.trim().is_empty() => Vec::new(),
            Some(Listen::One(s)) => vec![s.clone()],
            Some(Listen::Many(v)) => v.clone(),
        };
        if !d.tcp && self.listen.as_ref().is_some_and(|_| !texts.is_empty()) {
            p.error(format!("{at}.listen"), "this protocol is spoken over a UNIX socket only: use `unix_socket`");
        }
        let mut tcp = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let key = match &self.listen {
                Some(Listen::Many(_)) => format!("{at}.listen[{i}]"),
                _ => format!("{at}.listen"),
            };
            match text.trim().parse::<SocketAddr>() {
                Ok(a) => tcp.push(a),
                Err(e) => p.error(key, format!("{text:?} is not IP:PORT ({e}); write e.g. \"127.0.0.1:10040\"")),
            }
        }
        if let Some(client) = d.client.filter(|_| tcp.is_empty() && self.unix_socket.is_none()) {
            p.warn(at, format!("neither `listen` nor `unix_socket` is set: {client} cannot reach it"));
        }
        let socket_mode = match &self.socket_mode {
            None => Some(DEFAULT_SOCKET_MODE),
            Some(text) => octal_mode(p, &format!("{at}.socket_mode"), text),
        };
        let socket_group = match &self.socket_group {
            None => Some(None),
            Some(name) => match group_id(name) {
                Some(gid) => Some(Some(gid)),
                None => {
                    p.error(format!("{at}.socket_group"), format!("no group {name:?} on this system"));
                    None
                }
            },
        };
        let max_connections = self.max_connections.unwrap_or(d.max_connections);
        if max_connections == 0 {
            p.error(format!("{at}.max_connections"), "must be at least 1");
        }
        let timer = |p: &mut Problems, key: &str, text: &Option<String>, default: Duration| match text {
            None => Some(default),
            Some(t) => duration::parse(p, &format!("{at}.{key}"), t),
        };
        let handshake_timeout = timer(p, "handshake_timeout", &self.handshake_timeout, d.handshake_timeout);
        let idle_timeout = timer(p, "idle_timeout", &self.idle_timeout, d.idle_timeout);
        Some(ListenerSettings {
            fd_name: d.fd_name,
            tcp,
            unix_socket: self.unix_socket.as_ref().map(|s| base_dir.join(s)),
            socket_mode: socket_mode?,
            socket_group: socket_group?,
            max_connections: max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.unwrap_or(d.max_connections_per_client),
            handshake_timeout: handshake_timeout?,
            idle_timeout: idle_timeout?,
        })
    }
}

/// An octal file mode such as `"0660"`.
pub fn octal_mode(p: &mut Problems, path: &str, text: &str) -> Option<u32> {
    match u32::from_str_radix(text.trim().trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Some(m),
        _ => {
            p.error(path, format!("{text:?} is not an octal file mode; write e.g. \"0660\""));
            None
        }
    }
}

/// A group's id from a number or a name in `/etc/group`. Groups known
/// only to NSS (LDAP, sssd) are written as numbers.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.trim().parse::<u32>() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let found = fields.next()? == name.trim();
        let gid = fields.nth(1)?.parse().ok()?;
        found.then_some(gid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy listener's defaults: a TCP listener with a long idle timeout.
    const D: ListenerDefaults = super::super::policy::POLICY_DEFAULTS;

    fn check(raw: RawListener) -> (Option<ListenerSettings>, Problems) {
        let mut p = Problems::default();
        (raw.validate_as(&mut p, Path::new("/etc/mw"), "policy", &D), p)
    }

    #[test]
    fn defaults_one_or_many_addresses_and_off() {
        let (s, p) = check(RawListener::default());
        let s = s.unwrap();
        assert!(p.errors.is_empty() && p.warnings.is_empty());
        assert_eq!(s.tcp, vec!["127.0.0.1:10040".parse::<SocketAddr>().unwrap()]);
        assert_eq!((s.socket_mode, s.max_connections, s.idle_timeout), (0o660, 1024, Duration::from_secs(330)));
        let many = Listen::Many(vec!["127.0.0.1:1".into(), "[::1]:2".into()]);
        let (s, _) = check(RawListener { listen: Some(many), ..Default::default() });
        assert_eq!(s.unwrap().tcp.len(), 2);
        let (s, p) = check(RawListener { listen: Some(Listen::One(String::new())), ..Default::default() });
        assert!(s.unwrap().is_empty());
        assert_eq!(p.warnings[0].path, "policy");
        let (s, _) = check(RawListener { unix_socket: Some("run/p.sock".into()), ..Default::default() });
        assert_eq!(s.unwrap().unix_socket.unwrap(), Path::new("/etc/mw/run/p.sock"));
    }

    #[test]
    fn every_bad_key_is_named() {
        let (_, p) = check(RawListener {
            listen: Some(Listen::Many(vec!["nowhere".into()])),
            socket_mode: Some("rw".into()),
            socket_group: Some("no-such-group-here".into()),
            max_connections: Some(0),
            handshake_timeout: Some("soon".into()),
            idle_timeout: Some("later".into()),
            ..Default::default()
        });
        let paths: Vec<&str> = p.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "policy.listen[0]",
                "policy.socket_mode",
                "policy.socket_group",
                "policy.max_connections",
                "policy.handshake_timeout",
                "policy.idle_timeout"
            ]
        );
        assert_eq!(group_id("0"), Some(0));
        assert_eq!(group_id("root"), Some(0));
    }
}
