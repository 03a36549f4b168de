//! Groups → the effective policy of one user, with provenance.
//!
//! A user gets the profile of every group they are in (nested groups
//! included: the identity already lists them) plus the default profile.
//! Profiles are consulted from the highest priority down, the default
//! last; for each field the first profile that sets it wins. Every
//! resolved field remembers the profile and the group that set it, which
//! is what `explain` prints and what refusals name.

use std::sync::Arc;

use serde::Serialize;

use super::profile::{LimitAction, Mode, PolicySet, Profile, RateLimit};
use crate::identity::Identity;

/// Where a resolved value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub profile: Arc<str>,
    /// The group that brought the profile; `None` for the default profile.
    pub group: Option<String>,
    /// The profile's own mode, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            Some(g) => write!(f, "profile {} (group {g})", self.profile),
            None => write!(f, "profile {}", self.profile),
        }
    }
}

/// A value and who set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The effective policy of one user. `None` fields: no profile set them,
/// so the rule does not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResolvedPolicy {
    /// The profiles consulted, in order (the default last).
    pub profiles: Vec<Source>,
    pub max_recipients: Option<Sourced<u32>>,
    pub max_message_size: Option<Sourced<u64>>,
    pub max_attachments: Option<Sourced<u32>>,
    pub may_send_external: Option<Sourced<bool>>,
    pub may_send_to_lists: Option<Sourced<bool>>,
    pub may_send_attachments: Option<Sourced<bool>>,
    pub max_attachment_size: Option<Sourced<u64>>,
    pub allowed_sender_domains: Option<Sourced<Arc<[String]>>>,
    pub require_sender_match: Option<Sourced<bool>>,
    pub require_header_from_match: Option<Sourced<bool>>,
    pub rate_limits: Option<Sourced<Arc<[RateLimit]>>>,
    pub limit_action: Option<Sourced<LimitAction>>,
}

impl ResolvedPolicy {
    /// The highest-priority profile, named in the `X-Mailwarrant-Policy`
    /// header.
    pub fn primary_profile(&self) -> Option<&str> {
        self.profiles.first().map(|s| &*s.profile)
    }

    /// The rate limits in force (empty when none).
    pub fn limits(&self) -> &[RateLimit] {
        self.rate_limits.as_ref().map(|s| &s.value[..]).unwrap_or(&[])
    }
}

/// Resolves the policy of `identity` under `set`.
pub fn resolve(set: &PolicySet, identity: &Identity) -> ResolvedPolicy {
    let mut chain: Vec<(&Profile, Option<&str>)> = Vec::new();
    for profile in &set.profiles {
        // The first of the user's groups (direct ones come first) that maps
        // to this profile is the one reported.
        let group = identity.groups.iter().find(|g| {
            set.group_profiles.iter().any(|(name, p)| *p == profile.name && name.eq_ignore_ascii_case(&g.name))
        });
        if let Some(g) = group {
            chain.push((profile, Some(&g.name)));
        }
    }
    chain.push((&set.default, None));

    let mut out = ResolvedPolicy::default();
    for (profile, group) in chain {
        let source = Source { profile: profile.name.clone(), group: group.map(str::to_owned), mode: profile.mode };
        let f = &profile.fields;
        take(&mut out.max_recipients, &f.max_recipients, &source);
        take(&mut out.max_message_size, &f.max_message_size, &source);
        take(&mut out.max_attachments, &f.max_attachments, &source);
        take(&mut out.may_send_external, &f.may_send_external, &source);
        take(&mut out.may_send_to_lists, &f.may_send_to_lists, &source);
        take(&mut out.may_send_attachments, &f.may_send_attachments, &source);
        take(&mut out.max_attachment_size, &f.max_attachment_size, &source);
        take(&mut out.allowed_sender_domains, &f.allowed_sender_domains, &source);
        take(&mut out.require_sender_match, &f.require_sender_match, &source);
        take(&mut out.require_header_from_match, &f.require_header_from_match, &source);
        take(&mut out.rate_limits, &f.rate_limits, &source);
        take(&mut out.limit_action, &f.limit_action, &source);
        out.profiles.push(source);
    }
    out
}

/// Fills `slot` from `value` unless a higher-priority profile already did.
fn take<T: Clone>(slot: &mut Option<Sourced<T>>, value: &Option<T>, source: &Source) {
    if slot.is_none() {
        if let Some(v) = value {
            *slot = Some(Sourced { value: v.clone(), source: source.clone() });
        }
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
