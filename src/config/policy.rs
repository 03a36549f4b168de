//! `[policy]`: the send-policy front end (Postfix policy delegation), the
//! profiles admins write and the directory groups they map to.
//!
//! Absent section: no policy listener. Profiles are validated into
//! `policy::PolicySet`; rates like `"500/1d"` and sizes like `"25M"` are
//! parsed here, once, so the evaluator only sees numbers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listener::{ListenerDefaults, ListenerSettings};
use super::problems::Problems;
use super::{duration, Validate};
use crate::identity::Address;
use crate::policy::{
    Counted, LimitAction, LimitSubject, LocalPartMatch, Mode, PolicySet, Profile, ProfileFields, RateLimit, RuleKind,
    DEFAULT_PROFILE,
};

crate::listener_section! {
/// `listen` (default `127.0.0.1:10040`) is for `check_policy_service
/// inet:…`, `unix_socket` for `check_policy_service unix:…`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Recipients outside these domains are external.
    #[serde(default)]
    pub organisation_domains: Vec<String>,
    /// `enforce`, or `observe` to only log what would be refused.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Per-rule `observe` / `enforce` (e.g. `external_recipients = "observe"`).
    #[serde(default)]
    pub rule_modes: BTreeMap<String, Mode>,
    /// When the counter store fails: `defer` (4xx), `reject` (5xx) or `dunno` (let through).
    #[serde(default)]
    pub store_error_action: OutageAction,
    /// Add `X-Mailwarrant-Policy: profile=<name>` at DATA to accepted mail.
    #[serde(default)]
    pub prepend_header: bool,
    /// Requests without `sasl_username`: `refuse` (the listener requires
    /// AUTH), `by_sender` (trusted relay: the envelope sender's owner is the
    /// user) or `dunno` (not ours to judge, e.g. inbound mail on port 25).
    #[serde(default)]
    pub unauthenticated: Unauthenticated,
    /// `unauthenticated` per Postfix `policy_context` (Postfix ≥ 3.1).
    #[serde(default)]
    pub unauthenticated_by_context: BTreeMap<String, Unauthenticated>,
    /// `exact` (as the directory stores it) or `ascii_case_insensitive`.
    #[serde(default)]
    pub local_part_match: LocalPartMatch,
    /// Sub-address delimiters (`"+"`): `alice+x@` counts as `alice@`. Empty: off.
    #[serde(default)]
    pub recipient_delimiter: String,
    /// Addresses treated as distribution lists besides the directory's.
    #[serde(default)]
    pub distribution_lists: Vec<String>,
    /// How long the directory's list of distribution lists is reused.
    #[serde(default = "default_lists_ttl")]
    pub lists_ttl: String,
    /// Whose calendar a daily rate limit follows (IANA name): `500/1d`
    /// resets at local midnight, and refusals say when in local time.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Refusals kept in the audit log for `explain --ref`.
    #[serde(default = "default_audit_keep")]
    pub audit_keep: usize,
    /// Directory group → profile name.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// Profiles by name; `default` applies to everyone, last.
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
}
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutageAction {
    #[default]
    Defer,
    Reject,
    Dunno,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unauthenticated {
    #[default]
    Refuse,
    BySender,
    Dunno,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Higher is consulted first; required and distinct except on `default`.
    pub priority: Option<i64>,
    /// `observe` to switch a new profile on safely.
    pub mode: Option<Mode>,
    pub max_recipients: Option<u32>,
    /// Bytes, or a string like `"25M"`.
    pub max_message_size: Option<ByteSize>,
    pub max_attachments: Option<u32>,
    pub may_send_external: Option<bool>,
    pub may_send_to_lists: Option<bool>,
    pub may_send_attachments: Option<bool>,
    /// Largest attachment (decoded), bytes or e.g. `"10M"`; checked by the milter.
    pub max_attachment_size: Option<ByteSize>,
    pub allowed_sender_domains: Option<Vec<String>>,
    pub require_sender_match: Option<bool>,
    /// Every mailbox in the `From:` and `Sender:` headers must be the
    /// login's own (primary, aliases, send-as); checked by the milter.
    pub require_header_from_match: Option<bool>,
    pub rate_limits: Option<Vec<RawRateLimit>>,
    /// `defer` (default) or `reject` at a rate limit.
    pub limit_action: Option<LimitAction>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `"<count>/<window>"`, e.g. `"500/1d"`, `"30/1m"`.
    pub rate: String,
    /// `messages` (default) or `recipients`.
    #[serde(default = "default_counted")]
    pub count: Counted,
    /// `user` (default) or `client_address`.
    #[serde(default = "default_per")]
    pub per: LimitSubject,
    /// Counter name; default `<per>_<count>_<window>`. Profiles that use
    /// the same name share the counter.
    pub name: Option<String>,
}

/// Postfix keeps a policy connection per smtpd process and closes it
/// after `smtpd_policy_service_max_idle` (300 s): the idle timeout is
/// longer, so Postfix closes first.
pub const POLICY_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: "policy",
    client: Some("Postfix"),
    listen: &["127.0.0.1:10040"],
    tcp: true,
    max_connections: 1024,
    max_connections_per_client: 0,
    handshake_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(330),
};
fn default_mode() -> Mode {
    Mode::Enforce
}
fn default_time_zone() -> String {
    "UTC".into()
}

fn default_lists_ttl() -> String {
    "5m".into()
}
fn default_audit_keep() -> usize {
    100_000
}
fn default_counted() -> Counted {
    Counted::Messages
}
fn default_per() -> LimitSubject {
    LimitSubject::User
}

/// The validated `[policy]` section.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    pub listener: ListenerSettings,
    pub set: Arc<PolicySet>,
    pub store_error_action: OutageAction,
    pub prepend_header: bool,
    pub unauthenticated: Unauthenticated,
    pub unauthenticated_by_context: BTreeMap<String, Unauthenticated>,
    pub lists_ttl: std::time::Duration,
    pub audit_keep: usize,
}

impl Validate for RawPolicy {
    type Output = PolicySettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<PolicySettings> {
        let listener = self.listener().validate_as(p, base_dir, "policy", &POLICY_DEFAULTS);
        let lists_ttl = duration::parse(p, "policy.lists_ttl", &self.lists_ttl);
        let mut rule_modes = std::collections::HashMap::new();
        for (name, mode) in &self.rule_modes {
            match RuleKind::parse(name).filter(|k| k.observable()) {
                Some(kind) => {
                    rule_modes.insert(kind, *mode);
                }
                None => {
                    let known: Vec<&str> =
                        RuleKind::ALL.iter().filter(|k| k.observable()).map(|k| k.as_str()).collect();
                    p.error(format!("policy.rule_modes.{name}"), format!("unknown rule; known: {}", known.join(", ")));
                }
            }
        }
        let mut listed = Vec::new();
        for (i, a) in self.distribution_lists.iter().enumerate() {
            if let Some(a) = p.check(&format!("policy.distribution_lists[{i}]"), Address::parse(a)) {
                listed.push(a);
            }
        }
        let organisation_domains: Vec<String> =
            self.organisation_domains.iter().map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        if organisation_domains.is_empty() {
            p.warn("policy.organisation_domains", "empty: every recipient counts as external");
        }

        let default = match self.profiles.get(DEFAULT_PROFILE) {
            Some(raw) => {
                if raw.priority.is_some() {
                    p.warn(
                        format!("policy.profiles.{DEFAULT_PROFILE}.priority"),
                        "ignored: the default profile always comes last",
                    );
                }
                profile(p, DEFAULT_PROFILE, raw, i64::MIN)
            }
            None => Some(Profile {
                name: Arc::from(DEFAULT_PROFILE),
                priority: i64::MIN,
                mode: None,
                fields: ProfileFields::default(),
            }),
        };
        let mut profiles = Vec::new();
        let mut priorities: BTreeMap<i64, &str> = BTreeMap::new();
        for (name, raw) in self.profiles.iter().filter(|(n, _)| n.as_str() != DEFAULT_PROFILE) {
            let Some(priority) = raw.priority else {
                p.error(
                    format!("policy.profiles.{name}.priority"),
                    "missing: profiles are consulted from the highest priority down; give each a distinct number",
                );
                continue;
            };
            if let Some(other) = priorities.insert(priority, name) {
                p.error(
                    format!("policy.profiles.{name}.priority"),
                    format!("{priority} is also the priority of profile {other:?}; priorities must be distinct"),
                );
            }
            profiles.extend(profile(p, name, raw, priority));
        }
        let mut group_profiles = Vec::new();
        for (group, name) in &self.groups {
            if !self.profiles.contains_key(name) || name == DEFAULT_PROFILE {
                p.error(format!("policy.groups.{group}"), format!("profile {name:?} is not defined under [policy.profiles] (and `default` applies to everyone already)"));
            }
            group_profiles.push((group.clone(), Arc::from(name.as_str())));
        }
        for name in self.profiles.keys().filter(|n| n.as_str() != DEFAULT_PROFILE) {
            if !self.groups.values().any(|g| g == name) {
                p.warn(format!("policy.profiles.{name}"), "no group in [policy.groups] maps to this profile");
            }
        }
        let time_zone = p.check("policy.time_zone", super::zone::parse_time_zone(&self.time_zone));
        let mut set = PolicySet::with_default(default?.fields, &[]);
        set.time_zone = time_zone?;
        set.default.mode = self.profiles.get(DEFAULT_PROFILE).and_then(|r| r.mode);
        set.organisation_domains = organisation_domains;
        for profile in profiles {
            set.add_profile(profile);
        }
        set.group_profiles = group_profiles;
        set.mode = self.mode;
        set.rule_modes = rule_modes;
        set.local_part_match = self.local_part_match;
        set.recipient_delimiter = self.recipient_delimiter.clone();
        set.listed_addresses = listed;
        Some(PolicySettings {
            listener: listener?,
            set: Arc::new(set),
            store_error_action: self.store_error_action,
            prepend_header: self.prepend_header,
            unauthenticated: self.unauthenticated,
            unauthenticated_by_context: self.unauthenticated_by_context.clone(),
            lists_ttl: lists_ttl?,
            audit_keep: self.audit_keep.max(1),
        })
    }
}

fn profile(p: &mut Problems, name: &str, raw: &RawProfile, priority: i64) -> Option<Profile> {
    let at = |field: &str| format!("policy.profiles.{name}.{field}");
    let max_message_size = raw.max_message_size.as_ref().and_then(|s| p.check(&at("max_message_size"), parse_size(s)));
    let max_attachment_size =
        raw.max_attachment_size.as_ref().and_then(|s| p.check(&at("max_attachment_size"), parse_size(s)));
    let rate_limits = raw.rate_limits.as_ref().map(|limits| {
        let parsed: Vec<RateLimit> = limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| p.check(&at(&format!("rate_limits[{i}]")), parse_limit(l)))
            .collect();
        Arc::from(parsed)
    });
    let allowed_sender_domains = raw.allowed_sender_domains.as_ref().map(|ds| {
        Arc::from(ds.iter().map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()).collect::<Vec<_>>())
    });
    Some(Profile {
        name: Arc::from(name),
        priority,
        mode: raw.mode,
        fields: ProfileFields {
            max_recipients: raw.max_recipients,
            max_message_size,
            max_attachments: raw.max_attachments,
            may_send_external: raw.may_send_external,
            may_send_to_lists: raw.may_send_to_lists,
            may_send_attachments: raw.may_send_attachments,
            max_attachment_size,
            allowed_sender_domains,
            require_sender_match: raw.require_sender_match,
            require_header_from_match: raw.require_header_from_match,
            rate_limits,
            limit_action: raw.limit_action,
        },
    })
}

/// `"500/1d"` with its counting rules → a [`RateLimit`].
pub fn parse_limit(raw: &RawRateLimit) -> Result<RateLimit, String> {
    let (count, window) = raw
        .rate
        .split_once('/')
        .ok_or_else(|| format!("{:?}: write \"<count>/<window>\", e.g. \"500/1d\"", raw.rate))?;
    let limit: u64 = count.trim().parse().map_err(|_| format!("{:?}: {count:?} is not a whole number", raw.rate))?;
    let window_text = window.trim();
    let window = humantime::parse_duration(window_text)
        .map_err(|e| format!("{:?}: {window_text:?} is not a duration ({e})", raw.rate))?;
    if window.as_secs() == 0 || window.subsec_nanos() != 0 {
        return Err(format!("{:?}: the window must be a whole number of seconds, at least 1s", raw.rate));
    }
    let per = match raw.per {
        LimitSubject::User => "user",
        LimitSubject::ClientAddress => "client",
    };
    let name = raw.name.clone().unwrap_or_else(|| format!("{per}_{}_{window_text}", raw.count));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("name {name:?}: use letters, digits, '_' and '-'"));
    }
    Ok(RateLimit { name, per: raw.per, count: raw.count, limit, window })
}

/// Bytes, or `"512K"`, `"25M"`, `"1G"` (powers of 1024; `B` suffix optional).
pub fn parse_size(size: &ByteSize) -> Result<u64, String> {
    let text = match size {
        ByteSize::Bytes(n) => return Ok(*n),
        ByteSize::Text(t) => t.trim(),
    };
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches('B').trim_end_matches('I');
    let (number, unit) = match digits.char_indices().last() {
        Some((i, 'K')) => (&digits[..i], 1u64 << 10),
        Some((i, 'M')) => (&digits[..i], 1 << 20),
        Some((i, 'G')) => (&digits[..i], 1 << 30),
        _ => (digits, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{text:?} is not a size; write bytes or e.g. \"25M\""))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
