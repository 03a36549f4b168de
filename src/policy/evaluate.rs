//! Request + resolved policy + counters → [`Decision`].
//!
//! Pure: the caller passes what it learned (who the user is, whether a
//! recipient is a distribution list, counter readings) and the time. The
//! rules run in a fixed order and the first *enforced* refusal decides;
//! refusals of rules in observe mode are collected and the evaluation goes
//! on, so an observed rule never hides an enforced one.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::content::{AttachmentSummary, HeaderSenders};
use super::decision::*;
use super::profile::{Counted, LimitAction, LocalPartMatch, Mode, PolicySet, RateLimit};
use super::resolve::{ResolvedPolicy, Sourced};
use crate::identity::{Address, Identity};

/// The SMTP stage a request comes from (Postfix `protocol_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfMessage,
    /// VRFY, ETRN and anything newer: no send rule applies.
    Other,
}

impl Stage {
    /// Stages where the whole message is known (recipient count, size).
    pub fn is_message_level(self) -> bool {
        matches!(self, Stage::Data | Stage::EndOfMessage)
    }
}

/// The envelope sender as the client gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// `MAIL FROM:<>`.
    Null,
    Address(Address),
    /// Not an address we can parse; never owned by anyone.
    Invalid(String),
}

impl Sender {
    pub fn parse(raw: &str) -> Sender {
        if raw.is_empty() {
            return Sender::Null;
        }
        match Address::parse(raw) {
            Ok(a) => Sender::Address(a),
            Err(_) => Sender::Invalid(raw.to_owned()),
        }
    }

    fn shown(&self) -> String {
        match self {
            Sender::Null => "<>".into(),
            Sender::Address(a) => format!("<{a}>"),
            Sender::Invalid(raw) => format!("<{}>", raw.escape_debug()),
        }
    }
}

/// One recipient, with what the caller found out about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientFacts {
    pub address: Address,
    /// The distribution list's name when the address is one.
    pub list: Option<String>,
}

/// What is known about the message at this stage.
#[derive(Clone, Debug)]
pub struct MessageFacts<'a> {
    pub stage: Stage,
    pub identity: &'a Identity,
    /// `None` before MAIL FROM.
    pub sender: Option<&'a Sender>,
    /// The recipient of a RCPT request.
    pub recipient: Option<&'a RecipientFacts>,
    /// Accepted recipients (known at DATA and END-OF-MESSAGE only).
    pub recipient_count: u32,
    /// Declared size until END-OF-MESSAGE, then the real size; 0 unknown.
    pub size: u64,
    /// Headers and attachments, when the front end saw the message.
    pub content: Option<&'a super::content::ContentFacts>,
}

/// A counter's value for one of the resolved rate limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterReading {
    /// Index into [`ResolvedPolicy::limits`].
    pub limit: usize,
    /// Counted so far in the current window (before this message).
    pub used: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

/// What one message costs against a limit.
pub fn cost(limit: &RateLimit, recipient_count: u32) -> u64 {
    match limit.count {
        Counted::Messages => 1,
        Counted::Recipients => u64::from(recipient_count.max(1)),
    }
}

/// Evaluates every rule that applies at `facts.stage`.
pub fn evaluate(
    set: &PolicySet,
    policy: &ResolvedPolicy,
    facts: &MessageFacts<'_>,
    counters: &[CounterReading],
    now: OffsetDateTime,
) -> Decision {
    let mut decision = Decision::accept();
    let checks: [&dyn Fn() -> Option<Finding>; 11] = [
        &|| check_sender_match(set, policy, facts),
        &|| check_header_from(set, policy, facts),
        &|| check_sender_domain(policy, facts),
        &|| check_external(set, policy, facts),
        &|| check_lists(policy, facts),
        &|| check_max_recipients(policy, facts),
        &|| check_size(policy, facts),
        &|| check_attachments_allowed(policy, facts),
        &|| check_max_attachments(policy, facts),
        &|| check_attachment_size(policy, facts),
        &|| check_rates(set, policy, facts, counters, now),
    ];
    for check in checks {
        if let Some(finding) = check() {
            if conclude(set, &mut decision, finding) {
                break;
            }
        }
    }
    decision
}

/// Applies the mode to one refusal. True when it is enforced (and so
/// decides).
pub fn conclude(set: &PolicySet, decision: &mut Decision, finding: Finding) -> bool {
    match mode_for(set, &finding) {
        Mode::Enforce => {
            decision.refusal = Some(finding);
            true
        }
        Mode::Observe => {
            decision.observed.push(finding);
            false
        }
    }
}

/// The mode that applies to a finding: the global `observe` wins, then a
/// per-rule setting, then the mode of the profile that set the field.
pub fn mode_for(set: &PolicySet, finding: &Finding) -> Mode {
    if !finding.rule.observable() {
        return Mode::Enforce;
    }
    if set.mode == Mode::Observe {
        return Mode::Observe;
    }
    if let Some(mode) = set.rule_modes.get(&finding.rule) {
        return *mode;
    }
    finding.source.as_ref().and_then(|s| s.mode).unwrap_or(Mode::Enforce)
}

fn check_sender_match(set: &PolicySet, policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let rule = policy.require_sender_match.as_ref().filter(|r| r.value)?;
    let sender = facts.sender?;
    let owned = match sender {
        Sender::Address(a) => owns(set, facts.identity, a),
        Sender::Null | Sender::Invalid(_) => false,
    };
    (!owned).then(|| {
        let text = format!("sender {} not owned by {}; rule sender_match", sender.shown(), facts.identity.login);
        Finding::new(RuleKind::SenderMatch, Verdict::Reject, SENDER_NOT_OWNED, text).from_source(&rule.source)
    })
}

/// True when `sender` is one of the user's addresses (primary, aliases,
/// send-as grants), with the configured local-part and sub-address rules.
pub fn owns(set: &PolicySet, identity: &Identity, sender: &Address) -> bool {
    let base = (!set.recipient_delimiter.is_empty()).then(|| sender.without_subaddress(&set.recipient_delimiter));
    identity.sendable_addresses().any(|own| {
        same_address(set.local_part_match, own, sender)
            || base.as_ref().is_some_and(|b| same_address(set.local_part_match, own, b))
    })
}

fn same_address(rule: LocalPartMatch, own: &Address, candidate: &Address) -> bool {
    match rule {
        LocalPartMatch::Exact => own.domain() == candidate.domain() && own.local_part() == candidate.local_part(),
        LocalPartMatch::AsciiCaseInsensitive => own.same_mailbox(candidate),
    }
}

/// The header spoof check: what the reader sees as the author must be the
/// login's own, by the same [`owns`] as the envelope sender. Only a front
/// end that saw the headers (milter) supplies them; without them the rule
/// does not apply.
fn check_header_from(set: &PolicySet, policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let rule = policy.require_header_from_match.as_ref().filter(|r| r.value)?;
    let senders = facts.content?.senders.as_ref()?;
    let login = &facts.identity.login;
    let why = match senders {
        HeaderSenders::Parsed { from, sender } => {
            let foreign = from.iter().chain(sender.iter()).find(|a| !owns(set, facts.identity, a));
            match (foreign, from.is_empty()) {
                (Some(a), _) => format!("header sender <{a}> not owned by {login}"),
                (None, true) => "no mailbox in the From header".into(),
                (None, false) => return None,
            }
        }
        HeaderSenders::Missing => "no From header".into(),
        HeaderSenders::Repeated => "several From or Sender headers".into(),
        HeaderSenders::Unparsable(raw) => {
            let shown: String = raw.chars().take(80).collect();
            format!("From header \"{}\" does not parse", shown.escape_default())
        }
    };
    let text = format!("{why}; rule header_from_match");
    Some(Finding::new(RuleKind::HeaderFromMatch, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&rule.source))
}

/// The attachments the front end found, when it looked at the body.
fn attachments(facts: &MessageFacts<'_>) -> Option<AttachmentSummary> {
    facts.content?.attachments
}

fn check_attachments_allowed(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let rule = forbidden(&policy.may_send_attachments)?;
    let found = attachments(facts)?;
    (found.count > 0).then(|| {
        let text =
            format!("{} may not send attachments ({} found); rule attachments", facts.identity.login, found.count);
        Finding::new(RuleKind::Attachments, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&rule.source)
    })
}

fn check_max_attachments(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let max = policy.max_attachments.as_ref()?;
    let found = attachments(facts)?;
    (found.count > max.value).then(|| {
        let text = format!(
            "{} attachments, {} allows at most {}; rule max_attachments",
            found.count, facts.identity.login, max.value
        );
        Finding::new(RuleKind::MaxAttachments, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&max.source)
    })
}

fn check_attachment_size(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let max = policy.max_attachment_size.as_ref()?;
    let found = attachments(facts)?;
    (found.largest > max.value).then(|| {
        let text = format!(
            "attachment of about {} bytes exceeds {} bytes; rule max_attachment_size",
            found.largest, max.value
        );
        Finding::new(RuleKind::MaxAttachmentSize, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&max.source)
    })
}

fn check_sender_domain(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let allowed = policy.allowed_sender_domains.as_ref()?;
    let sender = facts.sender?;
    let ok = match sender {
        Sender::Address(a) => allowed.value.iter().any(|d| d == a.domain()),
        Sender::Null | Sender::Invalid(_) => false,
    };
    (!ok).then(|| {
        let text = format!(
            "sender domain of {} is not allowed for {}; rule sender_domain",
            sender.shown(),
            facts.identity.login
        );
        Finding::new(RuleKind::SenderDomain, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&allowed.source)
    })
}

fn check_external(set: &PolicySet, policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let rcpt = facts.recipient.filter(|_| facts.stage == Stage::Rcpt)?;
    let rule = forbidden(&policy.may_send_external)?;
    (!set.is_internal_domain(rcpt.address.domain())).then(|| {
        let text = format!(
            "{} may not send to external recipient <{}>; rule external_recipients",
            facts.identity.login, rcpt.address
        );
        Finding::new(RuleKind::ExternalRecipients, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&rule.source)
    })
}

fn check_lists(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let rcpt = facts.recipient.filter(|_| facts.stage == Stage::Rcpt)?;
    let list = rcpt.list.as_ref()?;
    let rule = forbidden(&policy.may_send_to_lists)?;
    let text = format!(
        "{} may not send to distribution list {list} <{}>; rule distribution_lists",
        facts.identity.login, rcpt.address
    );
    Some(Finding::new(RuleKind::DistributionLists, Verdict::Reject, NOT_AUTHORIZED, text).from_source(&rule.source))
}

/// A permission that is set and false.
fn forbidden(field: &Option<Sourced<bool>>) -> Option<&Sourced<bool>> {
    field.as_ref().filter(|f| !f.value)
}

fn check_max_recipients(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    if !facts.stage.is_message_level() {
        return None;
    }
    let max = policy.max_recipients.as_ref()?;
    (facts.recipient_count > max.value).then(|| {
        let text = format!(
            "{} recipients, {} allows at most {}; rule max_recipients",
            facts.recipient_count, facts.identity.login, max.value
        );
        Finding::new(RuleKind::MaxRecipients, Verdict::Reject, TOO_MANY_RECIPIENTS, text).from_source(&max.source)
    })
}

fn check_size(policy: &ResolvedPolicy, facts: &MessageFacts<'_>) -> Option<Finding> {
    let max = policy.max_message_size.as_ref()?;
    (facts.size > max.value).then(|| {
        let text = format!("message size {} bytes exceeds {} bytes; rule max_message_size", facts.size, max.value);
        Finding::new(RuleKind::MaxMessageSize, Verdict::Reject, MESSAGE_TOO_BIG, text).from_source(&max.source)
    })
}

fn check_rates(
    set: &PolicySet,
    policy: &ResolvedPolicy,
    facts: &MessageFacts<'_>,
    counters: &[CounterReading],
    now: OffsetDateTime,
) -> Option<Finding> {
    if !facts.stage.is_message_level() {
        return None;
    }
    let limits = policy.rate_limits.as_ref()?;
    let action = policy.limit_action.as_ref().map(|a| a.value).unwrap_or_default();
    counters.iter().find_map(|reading| {
        let limit = limits.value.get(reading.limit)?;
        let cost = cost(limit, facts.recipient_count);
        (reading.used.saturating_add(cost) > limit.limit)
            .then(|| rate_finding(set, limit, reading, action, now, &limits.source))
    })
}

fn rate_finding(
    set: &PolicySet,
    limit: &RateLimit,
    reading: &CounterReading,
    action: LimitAction,
    now: OffsetDateTime,
    source: &super::resolve::Source,
) -> Finding {
    let (verdict, code) = match action {
        LimitAction::Defer => (Verdict::Defer, RATE_LIMITED),
        LimitAction::Reject => (Verdict::Reject, RATE_LIMITED_REJECT),
    };
    let text = format!(
        "rate limit {}: {}/{} {} {}, resets {}; rule rate_limit",
        limit.name,
        reading.used.min(limit.limit),
        limit.limit,
        limit.count,
        period(limit.window),
        super::window::reset_text(reading.resets_at, now, limit.window, &set.time_zone),
    );
    let mut f = Finding::new(RuleKind::RateLimit, verdict, code, text).from_source(source);
    f.detail = limit.name.clone();
    f
}

const DAY: Duration = Duration::from_secs(86_400);

/// "today" for daily windows, "per 1h" otherwise.
fn period(window: Duration) -> String {
    if window == DAY {
        "today".into()
    } else {
        format!("per {}", humantime::format_duration(window))
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
