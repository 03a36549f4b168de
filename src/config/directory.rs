//! `[directory]`: which directory, and how to read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::secret::{self, Redacted};
use super::{duration, Validate};
use crate::directory::template::FilterTemplate;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDirectory {
    /// `ldif` (a file, the embedded default) or `ldap` (OpenLDAP).
    pub kind: DirectoryKind,
    pub ldif: Option<RawLdif>,
    pub ldap: Option<RawLdap>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    Ldif,
    Ldap,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLdif {
    /// Path of the LDIF file, relative to the config file.
    pub path: PathBuf,
    /// Password expiry for LDIF users: days after `pwdChangedTime`. Unset: never.
    pub password_max_age: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    /// Server URLs tried in order (`ldap://` or `ldaps://`); the first that
    /// answers is used, and the service fails back to earlier ones.
    pub urls: Vec<String>,
    /// `none`, `starttls` or `ldaps` (implied by `ldaps://` URLs).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: Option<PathBuf>,
    /// Certificate verification; only turn off in a lab.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Allows simple binds over cleartext (`tls = "none"`) to a non-loopback
    /// server. Logged loudly at start-up.
    #[serde(default)]
    pub allow_cleartext: bool,
    pub bind_dn: String,
    pub bind_password: Option<Redacted>,
    pub bind_password_file: Option<PathBuf>,
    pub bind_password_env: Option<String>,
    pub base_dn: String,
    /// Filter to find a user by login; `{login}` is replaced, escaped.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Filter that matches every user, for the reminder scan.
    #[serde(default = "default_users_filter")]
    pub users_filter: String,
    /// Filter to find a user or list by address; `{address}` is replaced.
    #[serde(default = "default_address_filter")]
    pub address_filter: String,
    #[serde(default = "default_login_attribute")]
    pub login_attribute: String,
    #[serde(default = "default_mail_attribute")]
    pub mail_attribute: String,
    #[serde(default = "default_alias_attributes")]
    pub alias_attributes: Vec<String>,
    #[serde(default = "default_display_name_attribute")]
    pub display_name_attribute: String,
    /// Attribute on the user entry listing addresses the user may send as.
    pub send_as_attribute: Option<String>,
    /// Where groups live; defaults to `base_dn`.
    pub group_base_dn: Option<String>,
    /// `auto` (memberOf when present, else a member search), `member_of` or `search`.
    #[serde(default)]
    pub group_membership: GroupMembership,
    #[serde(default = "default_max_group_depth")]
    pub max_group_depth: u32,
    /// Service-account connections kept open for searches.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Connections opened at once for user binds.
    #[serde(default = "default_bind_pool_size")]
    pub bind_pool_size: usize,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: String,
    /// ppolicy entry that applies when a user has no `pwdPolicySubentry`.
    pub default_password_policy_dn: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    None,
    Starttls,
    Ldaps,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupMembership {
    #[default]
    Auto,
    MemberOf,
    Search,
}

fn yes() -> bool {
    true
}
fn default_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(|(uid={login})(mail={login})))".into()
}
fn default_users_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_address_filter() -> String {
    "(|(mail={address})(mailAlternateAddress={address}))".into()
}
fn default_login_attribute() -> String {
    "uid".into()
}
fn default_mail_attribute() -> String {
    "mail".into()
}
fn default_alias_attributes() -> Vec<String> {
    vec!["mailAlternateAddress".into()]
}
fn default_display_name_attribute() -> String {
    "cn".into()
}
fn default_max_group_depth() -> u32 {
    8
}
fn default_pool_size() -> usize {
    8
}
fn default_bind_pool_size() -> usize {
    16
}
fn default_connect_timeout() -> String {
    "3s".into()
}
fn default_operation_timeout() -> String {
    "5s".into()
}

/// The directory to use, validated.
// Built once at start-up: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DirectorySettings {
    Ldif(LdifSettings),
    Ldap(Box<LdapSettings>),
}

#[derive(Debug, Clone)]
pub struct LdifSettings {
    pub path: PathBuf,
    pub password_max_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct LdapSettings {
    pub urls: Vec<String>,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub bind_dn: String,
    pub bind_password: SecretString,
    pub base_dn: String,
    pub user_filter: FilterTemplate,
    pub address_filter: FilterTemplate,
    pub users_filter: String,
    pub login_attribute: String,
    pub mail_attribute: String,
    pub alias_attributes: Vec<String>,
    pub display_name_attribute: String,
    pub send_as_attribute: Option<String>,
    pub group_base_dn: String,
    pub group_membership: GroupMembership,
    pub max_group_depth: u32,
    pub pool_size: usize,
    pub bind_pool_size: usize,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub default_password_policy_dn: Option<String>,
}

impl Validate for RawDirectory {
    type Output = DirectorySettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<DirectorySettings> {
        match self.kind {
            DirectoryKind::Ldif => {
                let Some(ldif) = &self.ldif else {
                    p.error("directory.ldif", "kind = \"ldif\" needs a [directory.ldif] table with `path`");
                    return None;
                };
                if self.ldap.is_some() {
                    p.warn("directory.ldap", "ignored because kind = \"ldif\"");
                }
                let path = base_dir.join(&ldif.path);
                if !path.is_file() {
                    p.error("directory.ldif.path", format!("{} is not a readable file", path.display()));
                }
                let max_age = ldif
                    .password_max_age
                    .as_deref()
                    .and_then(|s| duration::parse(p, "directory.ldif.password_max_age", s));
                Some(DirectorySettings::Ldif(LdifSettings { path, password_max_age: max_age }))
            }
            DirectoryKind::Ldap => {
                let Some(ldap) = &self.ldap else {
                    p.error("directory.ldap", "kind = \"ldap\" needs a [directory.ldap] table");
                    return None;
                };
                if self.ldif.is_some() {
                    p.warn("directory.ldif", "ignored because kind = \"ldap\"");
                }
                ldap.validate(p, base_dir).map(|s| DirectorySettings::Ldap(Box::new(s)))
            }
        }
    }
}

impl Validate for RawLdap {
    type Output = LdapSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<LdapSettings> {
        const AT: &str = "directory.ldap";
        if self.urls.is_empty() {
            p.error(format!("{AT}.urls"), "list at least one server, e.g. [\"ldap://127.0.0.1:389\"]");
        }
        let mut any_ldaps = false;
        for (i, url) in self.urls.iter().enumerate() {
            if url.starts_with("ldaps://") {
                any_ldaps = true;
            } else if !url.starts_with("ldap://") {
                p.error(format!("{AT}.urls[{i}]"), format!("{url:?} must start with ldap:// or ldaps://"));
            }
        }
        let tls = if any_ldaps { TlsMode::Ldaps } else { self.tls };
        if tls == TlsMode::None && !self.allow_cleartext {
            for (i, url) in self.urls.iter().enumerate() {
                if !is_loopback_url(url) {
                    p.error(
                        format!("{AT}.urls[{i}]"),
                        "passwords would cross the network in cleartext: set tls = \"starttls\" or use ldaps://, \
                         or set allow_cleartext = true if you accept that",
                    );
                }
            }
        }
        if let Some(ca) = &self.ca_file {
            if !base_dir.join(ca).is_file() {
                p.error(format!("{AT}.ca_file"), format!("{} is not a readable file", base_dir.join(ca).display()));
            }
        }
        if !self.tls_verify {
            p.warn(
                format!("{AT}.tls_verify"),
                "certificate verification is off: anyone on the path can read passwords",
            );
        }
        if self.bind_dn.trim().is_empty() {
            p.error(format!("{AT}.bind_dn"), "set the service account DN used for searches");
        }
        if self.base_dn.trim().is_empty() {
            p.error(format!("{AT}.base_dn"), "set the subtree where users live, e.g. \"ou=people,dc=example,dc=com\"");
        }
        let password = secret::resolve(
            p,
            &format!("{AT}.bind_password"),
            self.bind_password.as_ref(),
            self.bind_password_file.as_deref(),
            self.bind_password_env.as_deref(),
            base_dir,
        );
        let user_filter = p.check(&format!("{AT}.user_filter"), FilterTemplate::compile(&self.user_filter, "login"));
        let address_filter =
            p.check(&format!("{AT}.address_filter"), FilterTemplate::compile(&self.address_filter, "address"));
        let filter = self.users_filter.trim();
        if !(filter.starts_with('(') && filter.ends_with(')')) {
            p.error(format!("{AT}.users_filter"), "a filter must start with '(' and end with ')'");
        }
        let connect_timeout = duration::parse(p, &format!("{AT}.connect_timeout"), &self.connect_timeout);
        let operation_timeout = duration::parse(p, &format!("{AT}.operation_timeout"), &self.operation_timeout);
        if self.pool_size == 0 || self.pool_size > 256 {
            p.error(format!("{AT}.pool_size"), "must be between 1 and 256");
        }
        if self.bind_pool_size == 0 || self.bind_pool_size > 1024 {
            p.error(format!("{AT}.bind_pool_size"), "must be between 1 and 1024");
        }
        if self.max_group_depth == 0 || self.max_group_depth > 64 {
            p.error(format!("{AT}.max_group_depth"), "must be between 1 and 64");
        }
        Some(LdapSettings {
            urls: self.urls.clone(),
            tls,
            ca_file: self.ca_file.as_ref().map(|c| base_dir.join(c)),
            tls_verify: self.tls_verify,
            bind_dn: self.bind_dn.clone(),
            bind_password: password?,
            base_dn: self.base_dn.clone(),
            user_filter: user_filter?,
            address_filter: address_filter?,
            users_filter: self.users_filter.clone(),
            login_attribute: self.login_attribute.clone(),
            mail_attribute: self.mail_attribute.clone(),
            alias_attributes: self.alias_attributes.clone(),
            display_name_attribute: self.display_name_attribute.clone(),
            send_as_attribute: self.send_as_attribute.clone(),
            group_base_dn: self.group_base_dn.clone().unwrap_or_else(|| self.base_dn.clone()),
            group_membership: self.group_membership,
            max_group_depth: self.max_group_depth,
            pool_size: self.pool_size,
            bind_pool_size: self.bind_pool_size,
            connect_timeout: connect_timeout?,
            operation_timeout: operation_timeout?,
            default_password_policy_dn: self.default_password_policy_dn.clone(),
        })
    }
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]") || host.starts_with("ldapi")
}
