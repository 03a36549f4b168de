//! `[password]`: the policies new passwords must meet, per group, and how
//! the self-service change behaves.
//!
//! Two styles side by side in `config/demo.toml`: a modern profile after
//! NIST SP 800-63B (length and a blocklist, no composition rules, no
//! expiry) and a classic complexity profile (character classes, expiry)
//! that many companies still require.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::{duration, Validate};
use crate::password::{Blocklist, CharClass, PasswordPolicy, PatternRule, PolicySet};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPassword {
    /// Common and breached passwords, one per line (relative to the config
    /// file). Policies with `blocklist = true` refuse them.
    pub blocklist_file: Option<PathBuf>,
    /// The policy for users in none of the policies' groups. Unset: the
    /// built-in NIST SP 800-63B default (15 characters, blocklist).
    pub default_policy: Option<String>,
    /// Named policies.
    #[serde(default)]
    pub policies: BTreeMap<String, RawPasswordPolicy>,
    /// How users whose password expired change it on OpenLDAP:
    /// `grace_login` (bind as the user on a ppolicy grace login) or
    /// `service_account` (the service account changes it after the old
    /// password was proven right).
    #[serde(default)]
    pub expired_change: ExpiredChange,
    /// Changes allowed per client address per hour on the page.
    #[serde(default = "default_per_client")]
    pub changes_per_client_per_hour: u32,
    /// Attempts allowed per login per hour on the page.
    #[serde(default = "default_per_login")]
    pub attempts_per_login_per_hour: u32,
}

impl Default for RawPassword {
    /// No `[password]` section: the same values as an empty one.
    fn default() -> Self {
        Self {
            blocklist_file: None,
            default_policy: None,
            policies: BTreeMap::new(),
            expired_change: ExpiredChange::default(),
            changes_per_client_per_hour: default_per_client(),
            attempts_per_login_per_hour: default_per_login(),
        }
    }
}

fn default_per_client() -> u32 {
    30
}
fn default_per_login() -> u32 {
    10
}

/// How an expired password is changed.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpiredChange {
    #[default]
    GraceLogin,
    ServiceAccount,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPasswordPolicy {
    /// Directory groups (`cn`) that get this policy; nested groups count.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Higher is consulted first; the first policy whose group matches wins.
    #[serde(default)]
    pub priority: i32,
    /// In Unicode characters.
    #[serde(default = "default_min_length")]
    pub min_length: usize,
    /// NIST asks to allow at least 64.
    pub max_length: Option<usize>,
    /// How many of `character_classes` must appear (0: no composition rule).
    #[serde(default)]
    pub min_character_classes: usize,
    /// Which classes count: lower, upper, digit, symbol, non_ascii.
    pub character_classes: Option<Vec<CharClass>>,
    /// Custom rules as regular expressions, each with its own message.
    #[serde(default)]
    pub rules: Vec<RawPatternRule>,
    /// zxcvbn score 0–4 the password must reach.
    pub min_score: Option<u8>,
    /// Refuse the login, names or mailbox name inside the password.
    #[serde(default = "yes")]
    pub reject_personal_info: bool,
    /// Refuse passwords on `password.blocklist_file`.
    #[serde(default = "yes")]
    pub blocklist: bool,
    /// Refuse the last N passwords.
    #[serde(default)]
    pub history: usize,
    /// A password cannot be changed again before this (e.g. "1d").
    pub min_age: Option<String>,
    /// Expiry (e.g. "90d"); unset: never expires.
    pub max_age: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPatternRule {
    /// A regular expression (Rust `regex` syntax: linear time, no backreferences).
    pub pattern: String,
    /// True: the password must match; false: it must not.
    #[serde(default)]
    pub must_match: bool,
    /// Shown to the user as the rule and as the refusal.
    pub message: String,
}

fn default_min_length() -> usize {
    15
}
fn yes() -> bool {
    true
}

/// The validated section.
#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub policies: Arc<PolicySet>,
    pub blocklist: Arc<Blocklist>,
    pub blocklist_file: Option<PathBuf>,
    pub expired_change: ExpiredChange,
    pub changes_per_client_per_hour: u32,
    pub attempts_per_login_per_hour: u32,
}

impl Default for PasswordSettings {
    /// No `[password]` section: the built-in NIST SP 800-63B policy.
    fn default() -> Self {
        PasswordSettings {
            policies: Arc::new(PolicySet::default()),
            blocklist: Arc::new(Blocklist::default()),
            blocklist_file: None,
            expired_change: ExpiredChange::GraceLogin,
            changes_per_client_per_hour: default_per_client(),
            attempts_per_login_per_hour: default_per_login(),
        }
    }
}

impl Validate for RawPassword {
    type Output = PasswordSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<PasswordSettings> {
        let blocklist_file = self.blocklist_file.as_ref().map(|f| base_dir.join(f));
        let blocklist = match &blocklist_file {
            None => Blocklist::default(),
            Some(path) => match Blocklist::load(path) {
                Ok(list) => list,
                Err(e) => {
                    p.error("password.blocklist_file", e.to_string());
                    Blocklist::default()
                }
            },
        };
        let mut policies = Vec::new();
        for (name, raw) in &self.policies {
            if let Some(policy) = raw.validate_named(p, name) {
                if policy.use_blocklist && blocklist_file.is_none() {
                    p.warn(
                        format!("password.policies.{name}.blocklist"),
                        "no password.blocklist_file is set, so no password is refused as breached",
                    );
                }
                policies.push(policy);
            }
        }
        let set = match &self.default_policy {
            None => {
                let mut set = PolicySet::default();
                if !policies.is_empty() {
                    set = PolicySet::new(policies, (**set.default_policy()).clone());
                }
                set
            }
            Some(name) => match policies.iter().position(|x| &*x.name == name) {
                Some(i) => {
                    let default = policies.remove(i);
                    if !default.groups.is_empty() {
                        p.warn(
                            format!("password.policies.{name}.groups"),
                            "the default policy applies to everyone; its groups are not used",
                        );
                    }
                    PolicySet::new(policies, default)
                }
                None => {
                    p.error("password.default_policy", format!("no policy named {name:?} in [password.policies]"));
                    return None;
                }
            },
        };
        for (key, value, what) in [
            ("changes_per_client_per_hour", self.changes_per_client_per_hour, "client"),
            ("attempts_per_login_per_hour", self.attempts_per_login_per_hour, "login"),
        ] {
            if value == 0 {
                p.error(format!("password.{key}"), format!("must be at least 1, or no {what} could ever change"));
            }
        }
        Some(PasswordSettings {
            policies: Arc::new(set),
            blocklist: Arc::new(blocklist),
            blocklist_file,
            expired_change: self.expired_change,
            changes_per_client_per_hour: self.changes_per_client_per_hour,
            attempts_per_login_per_hour: self.attempts_per_login_per_hour,
        })
    }
}

impl RawPasswordPolicy {
    fn validate_named(&self, p: &mut Problems, name: &str) -> Option<PasswordPolicy> {
        let key = |field: &str| format!("password.policies.{name}.{field}");
        if self.min_length == 0 {
            p.error(key("min_length"), "must be at least 1: an empty password is never accepted");
        }
        if let Some(max) = self.max_length {
            if max < self.min_length {
                p.error(key("max_length"), "must not be below min_length");
            } else if max < 64 {
                p.warn(key("max_length"), "NIST SP 800-63B and OWASP ASVS ask to allow at least 64 characters");
            }
        }
        let classes = self.character_classes.clone().unwrap_or_else(|| CharClass::ALL.to_vec());
        if self.min_character_classes > classes.len() {
            p.error(key("min_character_classes"), format!("cannot exceed the {} classes listed", classes.len()));
        }
        if self.min_score.is_some_and(|s| s > 4) {
            p.error(key("min_score"), "zxcvbn scores run from 0 to 4");
        }
        let mut patterns = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            match Regex::new(&rule.pattern) {
                Ok(regex) => {
                    patterns.push(PatternRule { regex, must_match: rule.must_match, message: rule.message.clone() })
                }
                Err(e) => p.error(format!("password.policies.{name}.rules[{i}].pattern"), e.to_string()),
            }
            if rule.message.trim().is_empty() {
                p.error(format!("password.policies.{name}.rules[{i}].message"), "users need a message");
            }
        }
        let min_age = self.min_age.as_ref().and_then(|t| duration::parse(p, &key("min_age"), t));
        let max_age = self.max_age.as_ref().and_then(|t| duration::parse(p, &key("max_age"), t));
        if let (Some(min), Some(max)) = (min_age, max_age) {
            if min >= max {
                p.error(key("min_age"), "must be shorter than max_age");
            }
        }
        Some(PasswordPolicy {
            name: name.into(),
            groups: self.groups.clone(),
            priority: self.priority,
            min_length: self.min_length,
            max_length: self.max_length,
            min_classes: self.min_character_classes,
            classes,
            patterns,
            min_score: self.min_score,
            reject_personal_info: self.reject_personal_info,
            use_blocklist: self.blocklist,
            history: self.history,
            min_age,
            max_age,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Option<PasswordSettings>, Problems) {
        let raw: RawPassword = toml::from_str(text).expect("valid TOML for RawPassword");
        let mut p = Problems::default();
        let settings = raw.validate(&mut p, Path::new("."));
        (settings, p)
    }

    fn paths(list: &[super::super::Problem]) -> Vec<&str> {
        list.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let (_, p) = load(
            r#"
            default_policy = "missing"
            [policies.a]
            min_length = 0
            max_length = 10
            min_character_classes = 6
            min_score = 5
            min_age = "2d"
            max_age = "1d"
            rules = [{ pattern = "(", message = "" }]
            "#,
        );
        assert_eq!(
            paths(&p.errors),
            [
                "password.policies.a.min_length",
                "password.policies.a.min_character_classes",
                "password.policies.a.min_score",
                "password.policies.a.rules[0].pattern",
                "password.policies.a.rules[0].message",
                "password.policies.a.min_age",
                "password.default_policy",
            ]
        );
    }

    #[test]
    fn weak_but_legal_settings_warn() {
        let (settings, p) = load("[policies.short]\nmax_length = 20\n");
        assert!(settings.is_some() && p.errors.is_empty());
        assert_eq!(paths(&p.warnings), ["password.policies.short.max_length", "password.policies.short.blocklist"]);
    }

    #[test]
    fn group_policies_and_the_default_resolve_by_priority() {
        let (settings, p) = load(
            r#"
            default_policy = "modern"
            [policies.modern]
            min_length = 15
            blocklist = false
            [policies.classic]
            groups = ["it-admins"]
            priority = 10
            min_length = 12
            blocklist = false
            min_character_classes = 3
            [policies.staff]
            groups = ["staff", "it-admins"]
            priority = 1
            blocklist = false
            "#,
        );
        assert!(p.errors.is_empty() && p.warnings.is_empty(), "{:?}", p);
        let set = settings.unwrap().policies;
        let names: Vec<_> = set.all().map(|p| p.name.to_string()).collect();
        assert_eq!(names, ["classic", "staff", "modern"]);
        assert_eq!(set.default_policy().min_length, 15);
    }

    #[test]
    fn a_missing_section_validates_like_an_empty_one() {
        let mut p = Problems::default();
        let settings = RawPassword::default().validate(&mut p, Path::new(".")).unwrap();
        assert!(p.errors.is_empty() && p.warnings.is_empty(), "{p:?}");
        assert_eq!(settings.attempts_per_login_per_hour, default_per_login());
        let (_, empty) = load("");
        assert!(empty.errors.is_empty());
    }

    #[test]
    fn no_section_gives_the_nist_default() {
        let s = PasswordSettings::default();
        let p = s.policies.default_policy();
        assert_eq!((p.min_length, p.max_length, p.min_classes, p.max_age), (15, Some(128), 0, None));
        assert!(p.use_blocklist && p.reject_personal_info);
    }
}
