//! Transport security for directory connections: LDAPS or StartTLS over
//! rustls, certificates verified by default against the system roots or
//! the configured CA file.
//!
//! Must never: fall back to cleartext when StartTLS fails (the error is
//! returned and the connection dropped), or send a password before TLS is
//! up (ldap3 performs StartTLS inside the connect, before any bind).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ldap3::LdapConnSettings;

use crate::config::directory::TlsMode;
use crate::directory::DirectoryError;

/// How each URL is reached.
#[derive(Clone)]
pub(super) struct Transport {
    plain: LdapConnSettings,
    secure: LdapConnSettings,
    mode: TlsMode,
}

impl Transport {
    /// Builds the connection settings once, reading the CA file now so a
    /// bad file is a start-up error, not a per-connection one.
    pub(super) fn new(
        mode: TlsMode,
        ca_file: Option<&Path>,
        verify: bool,
        connect_timeout: Duration,
    ) -> Result<Self, DirectoryError> {
        let plain = LdapConnSettings::new().set_conn_timeout(connect_timeout);
        let mut secure = plain.clone().set_no_tls_verify(!verify);
        if let Some(path) = ca_file {
            secure = secure.set_config(Arc::new(client_config(path)?));
        }
        Ok(Self { plain, secure, mode })
    }

    /// The settings for one URL: `ldaps://` is TLS from the first byte;
    /// `ldap://` gets StartTLS unless the mode is `none`. An `ldap://` URL
    /// in `ldaps` mode is upgraded with StartTLS rather than used in clear.
    pub(super) fn settings_for(&self, url: &str) -> LdapConnSettings {
        if url.starts_with("ldaps://") {
            self.secure.clone()
        } else if self.mode == TlsMode::None {
            self.plain.clone()
        } else {
            self.secure.clone().set_starttls(true)
        }
    }
}

fn client_config(path: &Path) -> Result<rustls::ClientConfig, DirectoryError> {
    let fail = |why: String| {
        DirectoryError::Source(format!("CA file {}: {why}: check `directory.ldap.ca_file`", path.display()))
    };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file)).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(&certs);
    if added == 0 {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(rustls::ClientConfig::builder().with_safe_defaults().with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = Transport::new(TlsMode::Starttls, Some(&path), true, Duration::from_secs(1)).err().unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = Transport::new(TlsMode::Starttls, Some(&dir.path().join("nope")), true, Duration::from_secs(1));
        assert!(missing.is_err());
    }

    #[test]
    fn starttls_is_used_unless_the_mode_is_none() {
        let t = Transport::new(TlsMode::Starttls, None, true, Duration::from_secs(1)).unwrap();
        assert!(t.settings_for("ldap://dir.example.com").starttls());
        assert!(!t.settings_for("ldaps://dir.example.com").starttls());
        let t = Transport::new(TlsMode::Ldaps, None, true, Duration::from_secs(1)).unwrap();
        assert!(t.settings_for("ldap://dir.example.com").starttls());
        let t = Transport::new(TlsMode::None, None, true, Duration::from_secs(1)).unwrap();
        assert!(!t.settings_for("ldap://127.0.0.1").starttls());
    }
}
