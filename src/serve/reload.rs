//! SIGHUP: read the config file once and apply all of it, or none.
//!
//! What a running process can change in place is applied together:
//! `[auth]` (texts, throttle, cache, delays; caches start empty), `[policy]`
//! (profiles, groups, modes) and the identity cache is emptied so group
//! changes show at once. Everything else (listeners, the directory, the
//! store, `[http]`, ...) is bound at start: when it differs, the whole
//! reload is refused and the log names each part that needs a restart, so
//! a reload never half-applies.
//!
//! Files are reopened on every SIGHUP whether or not the config applies:
//! the audit log (logrotate moved it) and the HTTPS certificate and key
//! (renewed in place). systemd hears `RELOADING=1` before and `READY=1`
//! after, so `systemctl reload` returns once all of it is done.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{notify, ServeError, Shutdown};
use crate::audit_log::AuditLog;
use crate::auth::Authenticator;
use crate::config::{Config, ConfigError};
use crate::http::tls::Certificate;
use crate::identity::IdentityCache;
use crate::policy_service::PolicyService;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{file}: these changes need a restart: {parts}")]
    NeedsRestart { file: String, parts: String },
}

/// What a reload swaps.
pub struct Reloader {
    file: PathBuf,
    running: Mutex<Arc<Config>>,
    authenticator: Arc<Authenticator>,
    policy: Option<PolicyService>,
    identities: IdentityCache,
    audit: AuditLog,
    certificate: Option<Arc<Certificate>>,
}

impl Reloader {
    pub fn new(
        running: Arc<Config>,
        authenticator: Arc<Authenticator>,
        policy: Option<PolicyService>,
        identities: IdentityCache,
    ) -> Self {
        Self {
            file: running.file.clone(),
            running: Mutex::new(running),
            authenticator,
            policy,
            identities,
            audit: AuditLog::disabled(),
            certificate: None,
        }
    }

    /// Also reopen this audit log and reload this HTTPS pair on SIGHUP.
    pub fn with_files(mut self, audit: AuditLog, certificate: Option<Arc<Certificate>>) -> Self {
        self.audit = audit;
        self.certificate = certificate;
        self
    }

    /// Reopens the audit log and rereads the HTTPS certificate and key; a
    /// pair that cannot be read is logged and the running one kept.
    pub fn reopen_files(&self) {
        self.audit.reopen();
        if let Some(certificate) = &self.certificate {
            match certificate.reload() {
                Ok(()) => {
                    tracing::info!(cert = %certificate.cert_path().display(), "SIGHUP: HTTPS certificate reloaded")
                }
                Err(e) => tracing::error!("SIGHUP: HTTPS certificate not reloaded, the running one stays: {e}"),
            }
        }
    }

    /// Reads the file once and applies it, or nothing.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let new = Config::load(&self.file)?;
        self.apply(new)
    }

    /// Applies `new` when everything that differs can change in place.
    pub fn apply(&self, new: Config) -> Result<(), ReloadError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let parts = needs_restart(&running, &new);
        if !parts.is_empty() {
            return Err(ReloadError::NeedsRestart { file: self.file.display().to_string(), parts: parts.join("; ") });
        }
        for w in &new.warnings {
            tracing::warn!(key = %w.path, "{}", w.message);
        }
        // Checked above: a policy service runs exactly when both have one.
        if let (Some(service), Some(policy)) = (&self.policy, new.policy.clone()) {
            service.reload(policy);
        }
        self.authenticator.reload(new.auth.clone());
        self.identities.clear();
        *running = Arc::new(new);
        Ok(())
    }
}

/// What differs between `old` and `new` that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut parts = Vec::new();
    let (a, b) = (&old.raw, &new.raw);
    let fixed = [
        ("[directory]", value(&a.directory), value(&b.directory)),
        ("[identity]", value(&a.identity), value(&b.identity)),
        ("[store]", value(&a.store), value(&b.store)),
        ("[mailer]", value(&a.mailer), value(&b.mailer)),
        ("[reminders]", value(&a.reminders), value(&b.reminders)),
        ("[http]", value(&a.http), value(&b.http)),
        ("[password]", value(&a.password), value(&b.password)),
        ("[audit]", value(&a.audit), value(&b.audit)),
        ("[milter]", value(&a.milter), value(&b.milter)),
        ("[ops]", value(&a.ops), value(&b.ops)),
    ];
    for (name, before, after) in fixed {
        if before != after {
            parts.push(format!("{name} changed"));
        }
    }
    if old.auth.dovecot.listener != new.auth.dovecot.listener {
        parts.push("[auth.dovecot] listener changed".into());
    }
    if old.auth.saslauthd.listener != new.auth.saslauthd.listener {
        parts.push("[auth.saslauthd] listener changed".into());
    }
    match (&old.policy, &new.policy) {
        (Some(o), Some(n)) if o.listener != n.listener => parts.push("[policy] listener changed".into()),
        (Some(_), None) => parts.push("[policy] removed (the policy service cannot stop in place)".into()),
        (None, Some(_)) => parts.push("[policy] added (the policy service cannot start in place)".into()),
        _ => {}
    }
    parts
}

/// A section as TOML, to compare (`None` for an absent one).
fn value<T: serde::Serialize>(section: &T) -> Option<toml::Value> {
    toml::Value::try_from(section).ok()
}

/// Reloads on every SIGHUP until shutdown; a refused reload is logged
/// with every reason and the running config stays.
pub async fn on_sighup(
    mut hup: tokio::signal::unix::Signal,
    reloader: Reloader,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return Ok(()) },
            _ = shutdown.wait() => return Ok(()),
        }
        notify::reloading();
        reloader.reopen_files();
        match reloader.reload() {
            Ok(()) => tracing::info!(file = %reloader.file.display(), "SIGHUP: configuration reloaded"),
            Err(e) => {
                tracing::error!("SIGHUP: configuration not reloaded, nothing of it applied; the running one stays: {e}")
            }
        }
        notify::ready();
    }
}
