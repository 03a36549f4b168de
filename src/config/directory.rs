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
    /// `openldap` (the default) or `active_directory`: picks the defaults of
    /// the filters and attributes below, how groups, account state and
    /// bind refusals are read, and how passwords are changed.
    #[serde(default)]
    pub flavour: Flavour,
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
    pub user_filter: Option<String>,
    /// Filter that matches every user, for the reminder scan.
    pub users_filter: Option<String>,
    /// Filter to find a user or list by address; `{address}` is replaced.
    pub address_filter: Option<String>,
    pub login_attribute: Option<String>,
    pub mail_attribute: Option<String>,
    /// Attributes with more addresses of the user. On Active Directory,
    /// `proxyAddresses` values are read as `SMTP:primary` / `smtp:alias`,
    /// other address types skipped.
    pub alias_attributes: Option<Vec<String>>,
    pub display_name_attribute: Option<String>,
    /// Attribute on the user entry listing addresses the user may send as.
    pub send_as_attribute: Option<String>,
    /// Active Directory: groups (by `cn`) whose members, direct or
    /// nested, may send as the group's `mail`.
    #[serde(default)]
    pub send_as_groups: Vec<String>,
    /// Where groups live; defaults to `base_dn`.
    pub group_base_dn: Option<String>,
    /// OpenLDAP: `auto` (memberOf when present, else a member search),
    /// `member_of` or `search`. Active Directory: `auto` (= `in_chain`, the
    /// LDAP_MATCHING_RULE_IN_CHAIN filter) or `token_groups` (security
    /// groups only).
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
    InChain,
    TokenGroups,
}

/// Which kind of LDAP directory: decides defaults and how AD-specific
/// attributes, bind refusals and password writes are handled.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    #[default]
    Openldap,
    ActiveDirectory,
}

/// The filters and attribute names a flavour uses unless configured.
#[derive(Clone, Copy, Debug)]
pub struct FlavourDefaults {
    pub user_filter: &'static str,
    pub users_filter: &'static str,
    pub address_filter: &'static str,
    pub login_attribute: &'static str,
    pub mail_attribute: &'static str,
    pub alias_attributes: &'static [&'static str],
    pub display_name_attribute: &'static str,
}

impl Flavour {
    pub fn defaults(self) -> FlavourDefaults {
        match self {
            Flavour::Openldap => FlavourDefaults {
                user_filter: "(&(objectClass=inetOrgPerson)(|(uid={login})(mail={login})))",
                users_filter: "(objectClass=inetOrgPerson)",
                address_filter: "(|(mail={address})(mailAlternateAddress={address}))",
                login_attribute: "uid",
                mail_attribute: "mail",
                alias_attributes: &["mailAlternateAddress"],
                display_name_attribute: "cn",
            },
            // Login by sAMAccountName, userPrincipalName or mail; proxyAddresses
            // match case-insensitively, so `smtp:` finds `SMTP:` too.
            Flavour::ActiveDirectory => FlavourDefaults {
                user_filter: "(&(objectCategory=person)(objectClass=user)\
                              (|(sAMAccountName={login})(userPrincipalName={login})(mail={login})))",
                users_filter: "(&(objectCategory=person)(objectClass=user))",
                address_filter: "(|(mail={address})(proxyAddresses=smtp:{address}))",
                login_attribute: "sAMAccountName",
                mail_attribute: "mail",
                alias_attributes: &["proxyAddresses"],
                display_name_attribute: "displayName",
            },
        }
    }
}

fn yes() -> bool {
    true
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
    pub flavour: Flavour,
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
    pub send_as_groups: Vec<String>,
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
        let d = self.flavour.defaults();
        let user_filter_text = self.user_filter.as_deref().unwrap_or(d.user_filter);
        let address_filter_text = self.address_filter.as_deref().unwrap_or(d.address_filter);
        let users_filter = self.users_filter.as_deref().unwrap_or(d.users_filter);
        let user_filter = p.check(&format!("{AT}.user_filter"), FilterTemplate::compile(user_filter_text, "login"));
        let address_filter =
            p.check(&format!("{AT}.address_filter"), FilterTemplate::compile(address_filter_text, "address"));
        self.check_flavour(p);
        let filter = users_filter.trim();
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
        let text = |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.to_owned());
        Some(LdapSettings {
            flavour: self.flavour,
            urls: self.urls.clone(),
            tls,
            ca_file: self.ca_file.as_ref().map(|c| base_dir.join(c)),
            tls_verify: self.tls_verify,
            bind_dn: self.bind_dn.clone(),
            bind_password: password?,
            base_dn: self.base_dn.clone(),
            user_filter: user_filter?,
            address_filter: address_filter?,
            users_filter: users_filter.to_owned(),
            login_attribute: text(&self.login_attribute, d.login_attribute),
            mail_attribute: text(&self.mail_attribute, d.mail_attribute),
            alias_attributes: self
                .alias_attributes
                .clone()
                .unwrap_or_else(|| d.alias_attributes.iter().map(|a| (*a).to_owned()).collect()),
            display_name_attribute: text(&self.display_name_attribute, d.display_name_attribute),
            send_as_attribute: self.send_as_attribute.clone(),
            send_as_groups: self.send_as_groups.clone(),
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

impl RawLdap {
    /// Keys that only one flavour reads.
    fn check_flavour(&self, p: &mut Problems) {
        const AT: &str = "directory.ldap";
        match self.flavour {
            Flavour::Openldap => {
                if !self.send_as_groups.is_empty() {
                    p.error(
                        format!("{AT}.send_as_groups"),
                        "only read with flavour = \"active_directory\"; on OpenLDAP use send_as_attribute",
                    );
                }
                if matches!(self.group_membership, GroupMembership::InChain | GroupMembership::TokenGroups) {
                    p.error(
                        format!("{AT}.group_membership"),
                        "in_chain and token_groups are Active Directory features: use auto, member_of or search",
                    );
                }
            }
            Flavour::ActiveDirectory => {
                if matches!(self.group_membership, GroupMembership::MemberOf | GroupMembership::Search) {
                    p.error(
                        format!("{AT}.group_membership"),
                        "on Active Directory use auto (the in-chain filter) or token_groups",
                    );
                }
                if self.tls == TlsMode::None && !self.urls.iter().all(|u| u.starts_with("ldaps://")) {
                    p.error(
                        format!("{AT}.tls"),
                        "Active Directory changes passwords only over TLS (and often refuses cleartext binds): \
                         set tls = \"starttls\" or use ldaps:// URLs",
                    );
                }
                if self.default_password_policy_dn.is_some() {
                    p.warn(
                        format!("{AT}.default_password_policy_dn"),
                        "ignored on Active Directory: the DC computes expiry (msDS-UserPasswordExpiryTimeComputed)",
                    );
                }
            }
        }
    }
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]") || host.starts_with("ldapi")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn load(ldap: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!(
            "[directory]\nkind = \"ldap\"\n[directory.ldap]\nbind_dn = \"cn=svc\"\nbind_password = \"x\"\n\
             base_dn = \"dc=example,dc=com\"\n{ldap}"
        );
        Config::from_toml(&text, Path::new("."), Path::new("t.toml"))
    }

    fn ldap(config: &Config) -> &LdapSettings {
        match &config.directory {
            DirectorySettings::Ldap(s) => s,
            DirectorySettings::Ldif(_) => unreachable!("kind = ldap"),
        }
    }

    fn problems(ldap: &str) -> Vec<String> {
        load(ldap).err().map(|e| e.problems.into_iter().map(|p| p.path).collect()).unwrap_or_default()
    }

    #[test]
    fn each_flavour_has_its_defaults() {
        let openldap = load("urls = [\"ldap://127.0.0.1:389\"]\n").unwrap();
        let s = ldap(&openldap);
        assert_eq!((s.flavour, s.login_attribute.as_str()), (Flavour::Openldap, "uid"));
        assert_eq!(s.alias_attributes, ["mailAlternateAddress"]);

        let ad = load("flavour = \"active_directory\"\nurls = [\"ldaps://dc1.corp.example.com\"]\n").unwrap();
        let s = ldap(&ad);
        assert_eq!((s.flavour, s.login_attribute.as_str()), (Flavour::ActiveDirectory, "sAMAccountName"));
        assert_eq!(s.alias_attributes, ["proxyAddresses"]);
        assert_eq!(s.display_name_attribute, "displayName");
        assert_eq!(
            s.user_filter.render("a*"),
            "(&(objectCategory=person)(objectClass=user)\
             (|(sAMAccountName=a\\2a)(userPrincipalName=a\\2a)(mail=a\\2a)))"
        );
        assert_eq!(
            s.address_filter.render("x@example.com"),
            "(|(mail=x@example.com)(proxyAddresses=smtp:x@example.com))"
        );

        let custom =
            load("flavour = \"active_directory\"\nurls = [\"ldaps://dc1\"]\nlogin_attribute = \"cn\"\n").unwrap();
        assert_eq!(ldap(&custom).login_attribute, "cn", "a written key wins over the flavour's default");
    }

    #[test]
    fn keys_of_the_other_flavour_are_refused() {
        assert_eq!(
            problems("flavour = \"active_directory\"\nurls = [\"ldap://127.0.0.1\"]\n"),
            ["directory.ldap.tls"],
            "AD without TLS"
        );
        assert_eq!(
            problems("flavour = \"active_directory\"\nurls = [\"ldaps://dc1\"]\ngroup_membership = \"member_of\"\n"),
            ["directory.ldap.group_membership"]
        );
        assert_eq!(
            problems(
                "urls = [\"ldap://127.0.0.1\"]\nsend_as_groups = [\"helpdesk\"]\ngroup_membership = \"in_chain\"\n"
            ),
            ["directory.ldap.send_as_groups", "directory.ldap.group_membership"]
        );
        let starttls = load("flavour = \"active_directory\"\nurls = [\"ldap://dc1\"]\ntls = \"starttls\"\n");
        assert!(starttls.is_ok(), "StartTLS is TLS");
    }
}
