//! What the evaluator concludes: the rule that decided, the SMTP reply
//! it maps to, and what observe mode held back.
//!
//! Reply codes are named here once (RFC 5321 basic codes, RFC 3463
//! enhanced codes) so front ends never write a literal.

use std::fmt;

use serde::Serialize;

use super::resolve::Source;

/// An SMTP reply code with its enhanced status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReplyCode {
    pub basic: u16,
    pub enhanced: &'static str,
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.basic, self.enhanced)
    }
}

/// 530 5.7.0: authentication required (RFC 4954 §6).
pub const AUTH_REQUIRED: ReplyCode = ReplyCode { basic: 530, enhanced: "5.7.0" };
/// 553 5.7.1: sender address not allowed for this login (what Postfix's
/// own `reject_sender_login_mismatch` answers).
pub const SENDER_NOT_OWNED: ReplyCode = ReplyCode { basic: 553, enhanced: "5.7.1" };
/// 550 5.7.1: delivery not authorized, message refused (RFC 3463).
pub const NOT_AUTHORIZED: ReplyCode = ReplyCode { basic: 550, enhanced: "5.7.1" };
/// 550 5.5.3: too many recipients (RFC 3463).
pub const TOO_MANY_RECIPIENTS: ReplyCode = ReplyCode { basic: 550, enhanced: "5.5.3" };
/// 552 5.3.4: message too big for system (RFC 3463).
pub const MESSAGE_TOO_BIG: ReplyCode = ReplyCode { basic: 552, enhanced: "5.3.4" };
/// 450 4.7.1: temporarily not authorized (over a rate limit; retry later).
pub const RATE_LIMITED: ReplyCode = ReplyCode { basic: 450, enhanced: "4.7.1" };
/// 550 5.7.1 used when a rate limit is configured to reject.
pub const RATE_LIMITED_REJECT: ReplyCode = NOT_AUTHORIZED;
/// 451 4.3.0: a dependency (directory, store) is unavailable; retry.
pub const TEMPORARY_FAILURE: ReplyCode = ReplyCode { basic: 451, enhanced: "4.3.0" };
/// 550 5.3.0: refused because a dependency is unavailable and the admin
/// chose to reject rather than defer.
pub const PERMANENT_FAILURE: ReplyCode = ReplyCode { basic: 550, enhanced: "5.3.0" };

/// A kind of rule, the unit an admin switches between observe and
/// enforce (`[policy.rule_modes]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    AuthRequired,
    UnknownUser,
    SenderMatch,
    SenderDomain,
    MaxRecipients,
    MaxMessageSize,
    ExternalRecipients,
    DistributionLists,
    RateLimit,
    /// `From:` / `Sender:` mailboxes must belong to the login (milter).
    HeaderFromMatch,
    /// `may_send_attachments = false` and the message has one (milter).
    Attachments,
    MaxAttachments,
    MaxAttachmentSize,
    DirectoryUnavailable,
    StoreUnavailable,
}

impl RuleKind {
    pub const ALL: [RuleKind; 15] = [
        RuleKind::AuthRequired,
        RuleKind::UnknownUser,
        RuleKind::SenderMatch,
        RuleKind::SenderDomain,
        RuleKind::MaxRecipients,
        RuleKind::MaxMessageSize,
        RuleKind::ExternalRecipients,
        RuleKind::DistributionLists,
        RuleKind::RateLimit,
        RuleKind::HeaderFromMatch,
        RuleKind::Attachments,
        RuleKind::MaxAttachments,
        RuleKind::MaxAttachmentSize,
        RuleKind::DirectoryUnavailable,
        RuleKind::StoreUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::AuthRequired => "auth_required",
            RuleKind::UnknownUser => "unknown_user",
            RuleKind::SenderMatch => "sender_match",
            RuleKind::SenderDomain => "sender_domain",
            RuleKind::MaxRecipients => "max_recipients",
            RuleKind::MaxMessageSize => "max_message_size",
            RuleKind::ExternalRecipients => "external_recipients",
            RuleKind::DistributionLists => "distribution_lists",
            RuleKind::RateLimit => "rate_limit",
            RuleKind::HeaderFromMatch => "header_from_match",
            RuleKind::Attachments => "attachments",
            RuleKind::MaxAttachments => "max_attachments",
            RuleKind::MaxAttachmentSize => "max_attachment_size",
            RuleKind::DirectoryUnavailable => "directory_unavailable",
            RuleKind::StoreUnavailable => "store_unavailable",
        }
    }

    pub fn parse(name: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Infrastructure outages follow `store_error_action`, not a mode.
    pub fn observable(self) -> bool {
        !matches!(self, RuleKind::DirectoryUnavailable | RuleKind::StoreUnavailable)
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal's severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Reject,
    Defer,
}

impl Verdict {
    /// The word logged in observe mode.
    pub fn would(self) -> &'static str {
        match self {
            Verdict::Reject => "would_reject",
            Verdict::Defer => "would_defer",
        }
    }
}

/// One rule that refused, with what to tell the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: RuleKind,
    /// The rate limit's name for `RateLimit`, else empty.
    pub detail: String,
    pub verdict: Verdict,
    pub code: ReplyCode,
    /// Text for the client, without the reference.
    pub text: String,
    /// The profile and group whose field decided, when a field did.
    pub source: Option<Source>,
}

impl Finding {
    pub fn new(rule: RuleKind, verdict: Verdict, code: ReplyCode, text: String) -> Self {
        Finding { rule, detail: String::new(), verdict, code, text, source: None }
    }

    pub fn from_source(mut self, source: &Source) -> Self {
        self.source = Some(source.clone());
        self
    }

    /// The rule as written in texts and logs (`rate_limit:user_burst`).
    pub fn rule_name(&self) -> String {
        if self.detail.is_empty() {
            self.rule.to_string()
        } else {
            format!("{}:{}", self.rule, self.detail)
        }
    }
}

/// The evaluator's answer for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The enforced refusal; `None` lets the request through.
    pub refusal: Option<Finding>,
    /// Refusals held back by observe mode, to be logged.
    pub observed: Vec<Finding>,
    /// Short id that `explain --ref` resolves; set by the service when it
    /// records the decision.
    pub reference: Option<String>,
}

impl Decision {
    pub fn accept() -> Self {
        Decision::default()
    }

    pub fn refuse(finding: Finding) -> Self {
        Decision { refusal: Some(finding), ..Decision::default() }
    }

    pub fn is_accept(&self) -> bool {
        self.refusal.is_none()
    }

    /// The rule that decided, for logs: the refusal's, or `accepted`.
    pub fn rule(&self) -> String {
        self.refusal.as_ref().map(Finding::rule_name).unwrap_or_else(|| "accepted".into())
    }

    /// The text for the client: the finding's text and the reference.
    pub fn client_text(&self) -> Option<String> {
        let f = self.refusal.as_ref()?;
        Some(match &self.reference {
            Some(r) => format!("{} (ref {r})", f.text),
            None => f.text.clone(),
        })
    }

    /// True when something was refused or would have been.
    pub fn is_notable(&self) -> bool {
        self.refusal.is_some() || !self.observed.is_empty()
    }
}
