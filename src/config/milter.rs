//! `[milter]`: the mail filter front end (header From check, attachment
//! rules). It decides with the `[policy]` profiles, so it needs that
//! section too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::{duration, Validate};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMilter {
    /// TCP listener for `smtpd_milters = inet:…`; `""` turns it off.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// UNIX socket for `smtpd_milters = unix:…`.
    pub unix_socket: Option<PathBuf>,
    /// An SMTP session idle this long (no milter command) is closed; longer
    /// than Postfix's `smtpd_timeout` (300 s), so Postfix ends first.
    #[serde(default = "default_idle")]
    pub idle_timeout: String,
    /// Connections served at once (Postfix opens one per SMTP session).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Read and charge the rate-limit counters at end of message. Leave
    /// `false` when Postfix also asks the policy service at END-OF-MESSAGE
    /// (it charges there; a message must be counted once).
    #[serde(default)]
    pub charge_rate_limits: bool,
}

fn default_listen() -> String {
    "127.0.0.1:10050".into()
}
fn default_idle() -> String {
    "330s".into()
}
fn default_max_connections() -> usize {
    1024
}

/// The validated `[milter]` section.
#[derive(Clone, Debug)]
pub struct MilterSettings {
    pub listen: Option<SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub charge_rate_limits: bool,
}

impl Validate for RawMilter {
    type Output = MilterSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<MilterSettings> {
        let listen = match self.listen.trim() {
            "" => None,
            text => p.check(
                "milter.listen",
                text.parse::<SocketAddr>().map_err(|e| format!("{text:?}: {e}; write e.g. \"127.0.0.1:10050\"")),
            ),
        };
        if self.listen.trim().is_empty() && self.unix_socket.is_none() {
            p.warn("milter", "neither `listen` nor `unix_socket` is set: Postfix cannot reach the milter");
        }
        if let Some(path) = &self.unix_socket {
            let full = base_dir.join(path);
            if full.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
                p.error("milter.unix_socket", format!("folder of {} does not exist", full.display()));
            }
        }
        if self.max_connections == 0 {
            p.error("milter.max_connections", "must be at least 1");
        }
        let idle_timeout = duration::parse(p, "milter.idle_timeout", &self.idle_timeout)?;
        Some(MilterSettings {
            listen,
            unix_socket: self.unix_socket.as_ref().map(|s| base_dir.join(s)),
            idle_timeout,
            max_connections: self.max_connections.max(1),
            charge_rate_limits: self.charge_rate_limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!("[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"demo-directory.ldif\"\n{extra}");
        Config::from_toml(&text, &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), Path::new("t.toml"))
    }

    #[test]
    fn defaults_and_errors() {
        let c = load("[policy]\n[milter]\n").unwrap_or_else(|e| panic!("{e}"));
        let m = c.milter.unwrap();
        assert_eq!(m.listen, Some("127.0.0.1:10050".parse().unwrap()));
        assert!(!m.charge_rate_limits);
        assert_eq!(m.idle_timeout, std::time::Duration::from_secs(330));

        let e = load("[milter]\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = load("[milter]\nlisten = \"nowhere\"\nidle_timeout = \"soon\"\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        for needle in ["milter.listen", "milter.idle_timeout", "milter.max_connections", "add a [policy] section"] {
            assert!(e.contains(needle), "{needle} not in {e}");
        }
    }
}
