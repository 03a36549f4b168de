//! What a password policy is made of, and which policy a user gets.
//!
//! Built from `[password.policies.*]` by `config::password`; immutable
//! afterwards and shared behind `Arc`.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;

/// A kind of character, for composition ("complexity") rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CharClass {
    /// Any lowercase letter, in any script (`a`, `ü`, `ж`).
    Lower,
    /// Any uppercase letter, in any script (`A`, `Ü`, `Ж`).
    Upper,
    /// Any decimal digit.
    Digit,
    /// ASCII punctuation, symbols and the space.
    Symbol,
    /// Any character outside ASCII (`é`, `中`, an emoji).
    NonAscii,
}

impl CharClass {
    pub const ALL: [CharClass; 5] =
        [CharClass::Lower, CharClass::Upper, CharClass::Digit, CharClass::Symbol, CharClass::NonAscii];

    /// True when `c` belongs to this class; a character may belong to two
    /// (`ü` is lowercase and non-ASCII).
    pub fn contains(self, c: char) -> bool {
        match self {
            CharClass::Lower => c.is_lowercase(),
            CharClass::Upper => c.is_uppercase(),
            CharClass::Digit => c.is_numeric(),
            CharClass::Symbol => c.is_ascii_punctuation() || c == ' ',
            CharClass::NonAscii => !c.is_ascii(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CharClass::Lower => "lowercase letters",
            CharClass::Upper => "uppercase letters",
            CharClass::Digit => "digits",
            CharClass::Symbol => "symbols",
            CharClass::NonAscii => "non-ASCII characters",
        }
    }
}

/// An administrator's regular expression with its own message.
#[derive(Clone, Debug)]
pub struct PatternRule {
    pub regex: Regex,
    /// True: the password must match; false: it must not.
    pub must_match: bool,
    /// Shown as the requirement and as the refusal.
    pub message: String,
}

/// One policy: every rule a new password must meet, plus its life cycle.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    pub name: Arc<str>,
    /// Groups (by `cn`, case-insensitive) that get this policy.
    pub groups: Vec<String>,
    /// Higher is consulted first.
    pub priority: i32,
    /// In Unicode characters (code points), never bytes.
    pub min_length: usize,
    pub max_length: Option<usize>,
    /// At least this many of `classes` must appear.
    pub min_classes: usize,
    pub classes: Vec<CharClass>,
    pub patterns: Vec<PatternRule>,
    /// zxcvbn score 0–4; `None`: not checked.
    pub min_score: Option<u8>,
    /// Refuse the login, a name or a mailbox name inside the password.
    pub reject_personal_info: bool,
    /// Refuse passwords on the blocklist file.
    pub use_blocklist: bool,
    /// Not one of the last N passwords.
    pub history: usize,
    pub min_age: Option<Duration>,
    /// Expiry: a password older than this no longer works for SMTP AUTH.
    pub max_age: Option<Duration>,
}

impl PasswordPolicy {
    /// A policy that only asks for `min_length` characters; a base for
    /// tests and the built-in default.
    pub fn minimal(name: &str, min_length: usize) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
            priority: 0,
            min_length,
            max_length: None,
            min_classes: 0,
            classes: CharClass::ALL.to_vec(),
            patterns: Vec::new(),
            min_score: None,
            reject_personal_info: false,
            use_blocklist: false,
            history: 0,
            min_age: None,
            max_age: None,
        }
    }

    fn applies_to(&self, identity: &Identity) -> bool {
        self.groups.iter().any(|g| identity.in_group(g))
    }
}

/// Every configured policy and the default, in resolution order.
#[derive(Clone, Debug)]
pub struct PolicySet {
    /// Group policies, highest priority first (ties: by name).
    ordered: Vec<Arc<PasswordPolicy>>,
    default: Arc<PasswordPolicy>,
}

impl PolicySet {
    pub fn new(mut policies: Vec<PasswordPolicy>, default: PasswordPolicy) -> Self {
        policies.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        Self { ordered: policies.into_iter().map(Arc::new).collect(), default: Arc::new(default) }
    }

    /// The policy of the highest-priority group the user is in (nested
    /// groups count), else the default. `None` identity: the default,
    /// so an unknown login learns nothing.
    pub fn for_identity(&self, identity: Option<&Identity>) -> &Arc<PasswordPolicy> {
        identity.and_then(|who| self.ordered.iter().find(|p| p.applies_to(who))).unwrap_or(&self.default)
    }

    pub fn default_policy(&self) -> &Arc<PasswordPolicy> {
        &self.default
    }

    /// Every policy, the default last.
    pub fn all(&self) -> impl Iterator<Item = &Arc<PasswordPolicy>> {
        self.ordered.iter().chain(std::iter::once(&self.default))
    }
}

impl Default for PolicySet {
    /// NIST SP 800-63B rev. 4 for single-factor passwords: 15 characters,
    /// no composition rules, no expiry.
    fn default() -> Self {
        let mut p = PasswordPolicy::minimal("default", 15);
        p.max_length = Some(128);
        p.reject_personal_info = true;
        p.use_blocklist = true;
        Self::new(Vec::new(), p)
    }
}
