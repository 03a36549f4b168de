//! The configuration: TOML on disk, typed and validated at load.
//!
//! Loading runs in two steps: each top-level table is deserialized into
//! its `Raw*` struct (unknown keys are errors), then validated into runtime
//! settings (durations parsed, filters compiled, secrets resolved). Both
//! steps collect every problem before failing, so an admin sees them all.
//! `schemas/config.schema.json` is generated from the `Raw*` types.

pub mod audit;
pub mod auth;
pub mod directory;
pub mod duration;
pub mod http;
pub mod identity;
pub mod listener;
pub mod mailer;
pub mod milter;
pub mod ops;
pub mod password;
pub mod policy;
pub mod problems;
pub mod reminders;
pub mod secret;
pub mod store;
pub mod zone;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use audit::AuditSettings;
pub use auth::AuthSettings;
pub use directory::{DirectorySettings, LdapSettings, LdifSettings};
pub use http::HttpSettings;
pub use identity::IdentitySettings;
pub use mailer::MailerSettings;
pub use milter::MilterSettings;
pub use password::PasswordSettings;
pub use policy::PolicySettings;
pub use problems::{ConfigError, Problem, Problems};
pub use reminders::ReminderSettings;
pub use store::StoreSettings;

/// The top-level tables a config file may have.
const SECTIONS: &[&str] = &[
    "directory",
    "identity",
    "store",
    "auth",
    "mailer",
    "reminders",
    "policy",
    "http",
    "password",
    "audit",
    "milter",
    "ops",
];

/// A raw section that turns into runtime settings.
pub trait Validate {
    type Output;
    /// Records every problem in `p`; returns `None` when the section is
    /// unusable. Relative paths are resolved against `base_dir`.
    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<Self::Output>;
}

/// The whole file, as written.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub directory: directory::RawDirectory,
    #[serde(default)]
    pub identity: identity::RawIdentity,
    #[serde(default)]
    pub store: store::RawStore,
    /// Absent: no policy listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<policy::RawPolicy>,
    /// Outgoing mail; needed by reminders and change confirmations.
    pub mailer: Option<mailer::RawMailer>,
    pub reminders: Option<reminders::RawReminders>,
    #[serde(default)]
    pub auth: auth::RawAuth,
    /// The HTTP listener (self-service page); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<http::RawHttp>,
    #[serde(default)]
    pub password: password::RawPassword,
    /// The JSON-lines audit log of every decision; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<audit::RawAudit>,
    /// The milter front end (header From, attachments); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milter: Option<milter::RawMilter>,
    /// A separate listener for `/healthz`, `/readyz`, `/metrics`; absent:
    /// they are served on `[http]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<ops::RawOps>,
}

/// The validated configuration every component is built from.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub directory: DirectorySettings,
    pub identity: IdentitySettings,
    pub store: StoreSettings,
    pub policy: Option<PolicySettings>,
    pub auth: AuthSettings,
    /// `None`: no HTTP listener.
    pub http: Option<HttpSettings>,
    pub password: PasswordSettings,
    /// `None`: no audit file.
    pub audit: Option<AuditSettings>,
    /// `None`: no milter listener.
    pub milter: Option<MilterSettings>,
    /// `None`: the operations routes are on `[http]`.
    pub ops: Option<ops::OpsSettings>,
    pub mailer: Option<MailerSettings>,
    pub reminders: Option<ReminderSettings>,
    /// Non-fatal findings, printed by `check-config` and logged by `serve`.
    pub warnings: Vec<Problem>,
    /// Keys whose secret is written inline (`Config::load` warns when the
    /// file is readable by others).
    pub inline_secrets: Vec<String>,
    /// The file as read, for `check-config` (secrets redacted on output).
    pub raw: RawConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            problems: vec![Problem { path: "(file)".into(), message: format!("cannot read: {e}") }],
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Self::from_toml(&text, &base_dir, path)?;
        if let Some(first) = config.inline_secrets.first() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
            if mode & 0o007 != 0 {
                config.warnings.push(Problem {
                    path: first.clone(),
                    message: format!(
                        "written inline in {}, which every user may read (mode {:04o}): chmod 0640 (group of the \
                         service) or 0600, or move it to `{first}_file`",
                        path.display(),
                        mode & 0o777
                    ),
                });
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path, file: &Path) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let fail = |problems| ConfigError { file: file.display().to_string(), problems };
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => return Err(fail(vec![Problem { path: "(syntax)".into(), message: e.to_string() }])),
        };
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                p.error(key.clone(), format!("unknown section; known: {}", SECTIONS.join(", ")));
            }
        }
        let directory = section::<directory::RawDirectory>(&mut p, &table, "directory", None);
        let identity = section::<identity::RawIdentity>(&mut p, &table, "identity", Some(Default::default()));
        let store = section::<store::RawStore>(&mut p, &table, "store", Some(Default::default()));
        let mailer = section::<Option<mailer::RawMailer>>(&mut p, &table, "mailer", Some(None));
        let reminders = section::<Option<reminders::RawReminders>>(&mut p, &table, "reminders", Some(None));
        let auth = section::<auth::RawAuth>(&mut p, &table, "auth", Some(Default::default()));
        let policy = section::<Option<policy::RawPolicy>>(&mut p, &table, "policy", Some(None));
        let http = section::<Option<http::RawHttp>>(&mut p, &table, "http", Some(None));
        let password = section::<password::RawPassword>(&mut p, &table, "password", Some(Default::default()));
        let audit = section::<Option<audit::RawAudit>>(&mut p, &table, "audit", Some(None));
        let milter = section::<Option<milter::RawMilter>>(&mut p, &table, "milter", Some(None));
        let ops = section::<Option<ops::RawOps>>(&mut p, &table, "ops", Some(None));

        let (
            Some(directory),
            Some(identity),
            Some(store),
            Some(mailer),
            Some(reminders),
            Some(auth),
            Some(policy),
            Some(http),
            Some(password),
            Some(audit),
        ) = (directory, identity, store, mailer, reminders, auth, policy, http, password, audit)
        else {
            return Err(fail(p.errors));
        };
        let (Some(milter), Some(ops)) = (milter, ops) else {
            return Err(fail(p.errors));
        };
        let raw = RawConfig {
            directory,
            identity,
            store,
            mailer,
            reminders,
            auth,
            policy,
            http,
            password,
            audit,
            milter,
            ops,
        };
        let raw = with_own_self_service_page(raw);
        let directory = raw.directory.validate(&mut p, base_dir);
        let identity = raw.identity.validate(&mut p, base_dir);
        let store = raw.store.validate(&mut p, base_dir);
        let auth = raw.auth.validate(&mut p, base_dir);
        let mailer = raw.mailer.as_ref().map(|m| m.validate(&mut p, base_dir));
        let reminders = raw.reminders.as_ref().map(|r| r.validate(&mut p, base_dir));
        let policy = raw.policy.as_ref().map(|r| r.validate(&mut p, base_dir));
        let http = raw.http.as_ref().map(|h| h.validate(&mut p, base_dir));
        let password = raw.password.validate(&mut p, base_dir);
        let audit = raw.audit.as_ref().map(|a| a.validate(&mut p, base_dir));
        let milter = raw.milter.as_ref().and_then(|m| m.validate(&mut p, base_dir));
        let ops = raw.ops.as_ref().and_then(|o| o.validate(&mut p, base_dir));
        if raw.milter.is_some() && raw.policy.is_none() {
            p.error("milter", "the milter decides with the [policy] profiles: add a [policy] section");
        }
        if reminders.is_some() && mailer.is_none() {
            p.error("reminders", "reminders need a [mailer] section to send with");
        }
        match (directory, identity, store, auth, password) {
            (Some(directory), Some(identity), Some(store), Some(auth), Some(password)) if p.errors.is_empty() => {
                Ok(Config {
                    file: file.to_path_buf(),
                    directory,
                    identity,
                    store,
                    auth,
                    mailer: mailer.flatten(),
                    reminders: reminders.flatten(),
                    policy: policy.flatten(),
                    http: http.flatten(),
                    milter,
                    ops,
                    password,
                    audit: audit.flatten(),
                    warnings: p.warnings,
                    inline_secrets: p.inline_secrets,
                    raw,
                })
            }
            _ => Err(fail(p.errors)),
        }
    }

    /// The effective config as TOML, secrets redacted.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.raw).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Links to the self-service page default to the page mailwarrant serves
/// itself when `[http] public_base_url` says where users reach it, so one
/// setting names it everywhere; an explicit URL (another tool's page)
/// wins.
fn with_own_self_service_page(mut raw: RawConfig) -> RawConfig {
    let own = raw
        .http
        .as_ref()
        .and_then(|h| h.public_base_url.as_deref())
        .map(|base| format!("{}{}", base.trim_end_matches('/'), http::PASSWORD_PAGE_PATH));
    if let Some(page) = own {
        raw.auth.self_service_url.get_or_insert_with(|| page.clone());
        if let Some(reminders) = raw.reminders.as_mut() {
            reminders.self_service_url.get_or_insert(page);
        }
    }
    raw
}

/// Deserializes one top-level table, recording its error under its name.
/// A missing optional section takes its defaults.
fn section<T: DeserializeOwned>(p: &mut Problems, table: &toml::Table, name: &str, default: Option<T>) -> Option<T> {
    match table.get(name) {
        None if default.is_none() => {
            p.error(name, format!("missing [{name}] section"));
            None
        }
        None => default,
        Some(value) => match value.clone().try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                p.error(name, e.message().trim().to_owned());
                None
            }
        },
    }
}

/// The JSON Schema of the config file, as committed in `schemas/`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawConfig);
    serde_json::to_string_pretty(&schema).expect("a schema always serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Config, ConfigError};

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"demo-directory.ldif\"\n\
             [mailer]\nhost = \"127.0.0.1\"\nfrom = \"it@example.com\"\n{extra}"
        );
        Config::from_toml(&text, &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), Path::new("t.toml"))
    }

    #[test]
    fn links_to_the_self_service_page_default_to_the_own_page() {
        let c = load("[http]\npublic_base_url = \"https://mail.example.com/account/\"\n[reminders]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let own = "https://mail.example.com/account/password";
        assert_eq!(c.reminders.unwrap().self_service_url, own);
        assert_eq!(c.auth.texts.expired, format!("Password expired: change it at {own}"));

        // Another tool's page, named explicitly, wins.
        let other = "https://sso.example.com/pw";
        let c = load(&format!(
            "[auth]\nself_service_url = \"{other}\"\n[http]\npublic_base_url = \"https://mail.example.com\"\n\
             [reminders]\nself_service_url = \"{other}\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.reminders.unwrap().self_service_url, other);
        assert!(c.auth.texts.expired.ends_with(other));

        // No page anywhere: the AUTH reply leaves the link out, reminders
        // cannot do without one.
        let c = load("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.auth.texts.expired, "Password expired: change it");
        let e = load("[reminders]\n").unwrap_err().to_string();
        assert!(e.contains("reminders.self_service_url") && e.contains("public_base_url"), "{e}");
    }
}
