//! `[milter]`: the mail filter front end (header From check, attachment
//! rules). It decides with the `[policy]` profiles, so it needs that
//! section too.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listener::{ListenerDefaults, ListenerSettings};
use super::problems::Problems;
use super::Validate;

crate::listener_section! {
/// `listen` (default `127.0.0.1:10050`) is for `smtpd_milters = inet:…`,
/// `unix_socket` for `smtpd_milters = unix:…`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMilter {
    /// Read and charge the rate-limit counters at end of message. Leave
    /// `false` when Postfix also asks the policy service at END-OF-MESSAGE
    /// (it charges there; a message must be counted once).
    #[serde(default)]
    pub charge_rate_limits: bool,
}
}

/// Postfix opens one connection per SMTP session; an SMTP session idle
/// longer than Postfix's `smtpd_timeout` (300 s) is over, so the idle
/// timeout is longer and Postfix ends first.
pub const MILTER_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: "milter",
    client: Some("Postfix"),
    listen: &["127.0.0.1:10050"],
    tcp: true,
    max_connections: 1024,
    max_connections_per_client: 0,
    handshake_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(330),
};

/// The validated `[milter]` section.
#[derive(Clone, Debug)]
pub struct MilterSettings {
    pub listener: ListenerSettings,
    pub charge_rate_limits: bool,
}

impl Validate for RawMilter {
    type Output = MilterSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<MilterSettings> {
        let listener = self.listener().validate_as(p, base_dir, "milter", &MILTER_DEFAULTS)?;
        Some(MilterSettings { listener, charge_rate_limits: self.charge_rate_limits })
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
        assert_eq!(m.listener.tcp, vec!["127.0.0.1:10050".parse::<std::net::SocketAddr>().unwrap()]);
        assert!(!m.charge_rate_limits);
        assert_eq!(m.listener.idle_timeout, std::time::Duration::from_secs(330));

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
