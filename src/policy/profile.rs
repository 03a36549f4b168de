//! Send profiles and the policy set an admin configures: which profile
//! each directory group gets, in which order profiles are consulted, and
//! the global switches (organisation domains, mode, address rules).
//!
//! These are runtime types, already validated by `config::policy`; nothing
//! here parses text or reads a file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::decision::RuleKind;
use crate::identity::Address;

/// Whether a refusal is carried out or only logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Log `would_reject` / `would_defer` and let the mail through.
    Observe,
    /// Refuse.
    Enforce,
}

/// What happens to a message over a rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// Temporary refusal: the client retries after the reset.
    #[default]
    Defer,
    /// Permanent refusal.
    Reject,
}

/// Who a rate limit counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitSubject {
    /// The authenticated login (its canonical, directory-stored form).
    User,
    /// The SMTP client's IP address.
    ClientAddress,
}

/// What a rate limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    Messages,
    Recipients,
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Counted::Messages => "messages",
            Counted::Recipients => "recipients",
        })
    }
}

/// One window: at most `limit` messages or recipients per `window`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Stable name, part of the counter key and of refusal texts.
    pub name: String,
    pub per: LimitSubject,
    pub count: Counted,
    pub limit: u64,
    #[serde(with = "window_serde")]
    pub window: Duration,
}

mod window_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// The fields a profile may set. `None`: this profile says nothing, the
/// next profile in priority order decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileFields {
    pub max_recipients: Option<u32>,
    pub max_message_size: Option<u64>,
    /// Enforced by the milter front end, which sees the MIME structure.
    pub max_attachments: Option<u32>,
    pub may_send_external: Option<bool>,
    pub may_send_to_lists: Option<bool>,
    /// Enforced by the milter front end.
    pub may_send_attachments: Option<bool>,
    /// Largest attachment (decoded bytes, estimated); milter front end.
    pub max_attachment_size: Option<u64>,
    /// Lower-cased domains.
    pub allowed_sender_domains: Option<Arc<[String]>>,
    pub require_sender_match: Option<bool>,
    /// Every mailbox in `From:` and `Sender:` must be the login's own
    /// (the same ownership as `require_sender_match`); milter front end.
    pub require_header_from_match: Option<bool>,
    pub rate_limits: Option<Arc<[RateLimit]>>,
    pub limit_action: Option<LimitAction>,
}

/// A named set of fields with its place in the consultation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: Arc<str>,
    /// Higher is consulted first. Distinct across profiles (validated).
    pub priority: i64,
    /// Observe or enforce the rules this profile decides; `None` follows
    /// the global mode.
    pub mode: Option<Mode>,
    pub fields: ProfileFields,
}

/// How the local part of an envelope sender is compared with the user's
/// addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalPartMatch {
    /// Byte for byte as the directory stores it.
    #[default]
    Exact,
    /// ASCII letters fold; nothing else does (`ı` never becomes `i`).
    AsciiCaseInsensitive,
}

/// Everything the evaluator needs from the configuration.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySet {
    /// Recipients outside these (lower-cased) domains are external.
    pub organisation_domains: Vec<String>,
    /// Sorted: highest priority first. The default profile is not here.
    pub profiles: Vec<Profile>,
    /// Consulted after every group profile.
    pub default: Profile,
    /// Group name (matched ASCII case-insensitively) → profile name, in
    /// config order.
    pub group_profiles: Vec<(String, Arc<str>)>,
    /// The whole service: `Observe` overrides every other mode.
    pub mode: Mode,
    /// Per-rule overrides of the mode.
    pub rule_modes: HashMap<RuleKind, Mode>,
    pub local_part_match: LocalPartMatch,
    /// Sub-address delimiters (e.g. `+`); empty turns sub-addressing off.
    pub recipient_delimiter: String,
    /// Addresses treated as distribution lists besides the directory's.
    pub listed_addresses: Vec<Address>,
    /// Whose calendar day a `1d` rate limit counts (`[policy] time_zone`).
    #[serde(serialize_with = "zone_name")]
    pub time_zone: jiff::tz::TimeZone,
}

fn zone_name<S: serde::Serializer>(zone: &jiff::tz::TimeZone, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(zone.iana_name().unwrap_or("UTC"))
}

impl PolicySet {
    /// A set with only a default profile; a base for tests and examples.
    pub fn with_default(fields: ProfileFields, organisation_domains: &[&str]) -> Self {
        PolicySet {
            organisation_domains: organisation_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            profiles: Vec::new(),
            default: Profile { name: Arc::from(DEFAULT_PROFILE), priority: i64::MIN, mode: None, fields },
            group_profiles: Vec::new(),
            mode: Mode::Enforce,
            rule_modes: HashMap::new(),
            local_part_match: LocalPartMatch::Exact,
            recipient_delimiter: String::new(),
            listed_addresses: Vec::new(),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// Adds a profile and keeps the priority order.
    pub fn add_profile(&mut self, profile: Profile) {
        self.profiles.push(profile);
        self.profiles.sort_by_key(|p| std::cmp::Reverse(p.priority));
    }

    pub fn map_group(&mut self, group: &str, profile: &str) {
        self.group_profiles.push((group.to_owned(), Arc::from(profile)));
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        if name == &*self.default.name {
            return Some(&self.default);
        }
        self.profiles.iter().find(|p| &*p.name == name)
    }

    /// True when the domain is one of the organisation's.
    pub fn is_internal_domain(&self, domain: &str) -> bool {
        self.organisation_domains.iter().any(|d| d == domain)
    }
}

/// The name of the profile every user gets last.
pub const DEFAULT_PROFILE: &str = "default";
