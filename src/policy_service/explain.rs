//! `mailwarrant explain`: why a user gets the policy they get, what the
//! server would answer for a message, and what a refusal reference means.
//!
//! Returns plain data (serializable, for the HTTP API) and renders it as
//! text for the CLI. Never charges a counter.

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;

use super::audit::{self, AuditRecord};
use super::{PolicyService, SendRequest};
use crate::directory::DirectoryError;
use crate::policy::{resolve, Decision, Sourced, Stage};
use crate::ratelimit::{Subjects, When};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}: not found in the directory")]
    UnknownUser(String),
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("reference {0} is not in the audit log (only the newest records are kept)")]
    UnknownReference(String),
}

/// One resolved field.
#[derive(Clone, Debug, Serialize)]
pub struct FieldLine {
    pub field: &'static str,
    pub value: String,
    pub profile: String,
    pub group: Option<String>,
}

/// One counter with its limit.
#[derive(Clone, Debug, Serialize)]
pub struct CounterLine {
    pub name: String,
    pub used: u64,
    pub limit: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

/// The effective policy of one user.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyReport {
    pub login: String,
    pub groups: Vec<String>,
    pub profiles: Vec<String>,
    pub fields: Vec<FieldLine>,
    pub counters: Vec<CounterLine>,
}

fn line<T: std::fmt::Debug>(out: &mut Vec<FieldLine>, field: &'static str, v: &Option<Sourced<T>>) {
    if let Some(s) = v {
        out.push(FieldLine {
            field,
            value: format!("{:?}", s.value),
            profile: s.source.profile.to_string(),
            group: s.source.group.clone(),
        });
    }
}

/// The resolved policy of `login` with its counters.
pub async fn policy_report(
    service: &PolicyService,
    login: &str,
    client_address: Option<&str>,
    now: OffsetDateTime,
) -> Result<PolicyReport, ExplainError> {
    let identity = service.identities().get(login).await?.ok_or_else(|| ExplainError::UnknownUser(login.into()))?;
    let settings = service.settings();
    let p = resolve(&settings.set, &identity);
    let mut fields = Vec::new();
    line(&mut fields, "max_recipients", &p.max_recipients);
    line(&mut fields, "max_message_size", &p.max_message_size);
    line(&mut fields, "max_attachments", &p.max_attachments);
    line(&mut fields, "may_send_external", &p.may_send_external);
    line(&mut fields, "may_send_to_lists", &p.may_send_to_lists);
    line(&mut fields, "may_send_attachments", &p.may_send_attachments);
    line(&mut fields, "max_attachment_size", &p.max_attachment_size);
    line(&mut fields, "allowed_sender_domains", &p.allowed_sender_domains);
    line(&mut fields, "require_sender_match", &p.require_sender_match);
    line(&mut fields, "require_header_from_match", &p.require_header_from_match);
    line(&mut fields, "limit_action", &p.limit_action);
    if let Some(r) = &p.rate_limits {
        let names: Vec<String> = r
            .value
            .iter()
            .map(|l| format!("{} {}/{}", l.name, l.limit, humantime::format_duration(l.window)))
            .collect();
        fields.push(FieldLine {
            field: "rate_limits",
            value: names.join(", "),
            profile: r.source.profile.to_string(),
            group: r.source.group.clone(),
        });
    }
    let subjects = Subjects { login: identity.login.as_str(), client_address };
    let readings = service.limiter().read(p.limits(), subjects, When { now, zone: &settings.set.time_zone }).await?;
    let counters = readings
        .iter()
        .filter_map(|r| {
            let l = p.limits().get(r.limit)?;
            Some(CounterLine { name: l.name.clone(), used: r.used, limit: l.limit, resets_at: r.resets_at })
        })
        .collect();
    Ok(PolicyReport {
        login: identity.login.to_string(),
        groups: identity
            .groups
            .iter()
            .map(|g| if g.direct { g.name.clone() } else { format!("{} (nested)", g.name) })
            .collect(),
        profiles: p.profiles.iter().map(|s| s.to_string()).collect(),
        fields,
        counters,
    })
}

/// One stage of a simulated message and the answer it would get.
#[derive(Clone, Debug, Serialize)]
pub struct StepLine {
    pub stage: Stage,
    pub recipient: Option<String>,
    pub answer: String,
    pub rule: String,
    pub decided_by: Option<String>,
    pub observed: Vec<String>,
    /// The audit reference of a refusal (only when the run was charged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Whether this stage let the message through.
    pub accepted: bool,
}

/// A whole message to run through the stages.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub login: String,
    pub from: String,
    pub to: Vec<String>,
    pub size: u64,
    pub client_address: Option<String>,
    /// Attachments and headers, when the caller knows them.
    pub content: Option<crate::policy::ContentFacts>,
}

/// How [`simulate`] asks the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// `explain`: preview every recipient (a refused one does not stop the
    /// others, as in Postfix), charge nothing, audit nothing.
    Explain,
    /// A dry run that stops at the first refusal.
    DryRun,
    /// The real decision (`check_as` with `front_end`): counters charged
    /// once at END-OF-MESSAGE, refusals audited; stops at the first
    /// refusal.
    Charge { front_end: &'static str },
}

/// What the server would answer for a message from `from` to `to` of
/// `size` bytes, sent by `login`: each RCPT, then DATA and
/// END-OF-MESSAGE with the recipients that passed.
pub async fn message_report(
    service: &PolicyService,
    login: &str,
    from: &str,
    to: &[String],
    size: u64,
    now: OffsetDateTime,
) -> Vec<StepLine> {
    let message = Message { login: login.into(), from: from.into(), to: to.to_vec(), size, ..Message::default() };
    simulate(service, &message, Run::Explain, now).await
}

/// Runs a message through the stages as Postfix would ask them: each
/// RCPT, then DATA and END-OF-MESSAGE with the count of accepted
/// recipients. One copy of this walk serves `explain` and the HTTP API.
pub async fn simulate(service: &PolicyService, m: &Message, run: Run, now: OffsetDateTime) -> Vec<StepLine> {
    let instance = match run {
        Run::Charge { .. } => Some(format!("mw-{:016x}", rand::random::<u64>()).into()),
        _ => None,
    };
    let base = SendRequest {
        sasl_username: Some(m.login.as_str().into()),
        sender: Some(m.from.as_str().into()),
        client_address: m.client_address.as_deref().map(Into::into),
        content: m.content.clone(),
        instance,
        ..SendRequest::default()
    };
    let stop_early = run != Run::Explain;
    let mut steps = Vec::new();
    let mut accepted = 0u32;
    for rcpt in &m.to {
        let req = SendRequest { stage: Some(Stage::Rcpt), recipient: Some(rcpt.as_str().into()), ..base.clone() };
        let d = ask(service, run, &req, now).await;
        accepted += u32::from(d.is_accept());
        steps.push(step(Stage::Rcpt, Some(rcpt.clone()), &d));
        if stop_early && !d.is_accept() {
            return steps;
        }
    }
    if accepted > 0 {
        for stage in [Stage::Data, Stage::EndOfMessage] {
            let size = if stage == Stage::EndOfMessage { m.size } else { 0 };
            let req = SendRequest { stage: Some(stage), recipient_count: accepted, size, ..base.clone() };
            let d = ask(service, run, &req, now).await;
            let stop = !d.is_accept();
            steps.push(step(stage, None, &d));
            if stop {
                break;
            }
        }
    }
    steps
}

/// One stage of the walk: charged as `run` says, or only previewed.
async fn ask(service: &PolicyService, run: Run, req: &SendRequest<'_>, now: OffsetDateTime) -> Decision {
    match run {
        Run::Charge { front_end } => service.check_as(front_end, req, now).await.decision,
        Run::Explain | Run::DryRun => service.preview(req, now).await,
    }
}

fn step(stage: Stage, recipient: Option<String>, d: &Decision) -> StepLine {
    StepLine {
        stage,
        recipient,
        answer: d
            .refusal
            .as_ref()
            .map(|f| format!("{} {}", f.code, f.text))
            .unwrap_or_else(|| "DUNNO (accepted)".into()),
        rule: d.rule(),
        decided_by: d.refusal.as_ref().and_then(|f| f.source.as_ref()).map(|s| s.to_string()),
        observed: d.observed.iter().map(|f| format!("{} {}", f.verdict.would(), f.rule_name())).collect(),
        reference: d.reference.clone(),
        accepted: d.is_accept(),
    }
}

/// The audit record of a refusal reference.
pub async fn reference_report(service: &PolicyService, reference: &str) -> Result<AuditRecord, ExplainError> {
    let keep = service.settings().audit_keep;
    audit::find(service.store().as_ref(), reference, keep)
        .await?
        .ok_or_else(|| ExplainError::UnknownReference(reference.into()))
}

pub fn render_policy(r: &PolicyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "login:    {}", r.login);
    let _ = writeln!(out, "groups:   {}", if r.groups.is_empty() { "(none)".into() } else { r.groups.join(", ") });
    let _ = writeln!(out, "profiles: {}", r.profiles.join(" > "));
    let _ = writeln!(out, "\nfield                   value                          set by");
    for f in &r.fields {
        let by = match &f.group {
            Some(g) => format!("profile {} (group {g})", f.profile),
            None => format!("profile {}", f.profile),
        };
        let _ = writeln!(out, "{:<23} {:<30} {by}", f.field, f.value);
    }
    if !r.counters.is_empty() {
        let _ = writeln!(out, "\ncounter                 used/limit   resets");
        for c in &r.counters {
            let at = c.resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            let _ = writeln!(out, "{:<23} {:<12} {at}", c.name, format!("{}/{}", c.used, c.limit));
        }
    }
    out
}

pub fn render_message(steps: &[StepLine]) -> String {
    let mut out = String::new();
    for s in steps {
        let what = match &s.recipient {
            Some(r) => format!("{:?} <{r}>", s.stage),
            None => format!("{:?}", s.stage),
        };
        let _ = writeln!(out, "{what}: {}", s.answer);
        if let Some(by) = &s.decided_by {
            let _ = writeln!(out, "    decided by {by}");
        }
        for o in &s.observed {
            let _ = writeln!(out, "    observe mode: {o}");
        }
    }
    out
}

pub fn render_record(r: &AuditRecord) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("cannot print the record: {e}"))
}

/// What `mailwarrant explain` was asked.
#[derive(Clone, Debug)]
pub enum Query {
    /// The resolved policy of a login, with counters.
    Policy { login: String, client_address: Option<String> },
    /// The answer a message would get.
    Message { login: String, from: String, to: Vec<String>, size: u64 },
    /// A refusal reference from the audit log.
    Reference(String),
}

/// Answers a query as text, or as JSON when `json` is set.
pub async fn answer(
    service: &PolicyService,
    query: &Query,
    json: bool,
    now: OffsetDateTime,
) -> Result<String, ExplainError> {
    let to_json = |v: &dyn erased::Json| v.json();
    Ok(match query {
        Query::Policy { login, client_address } => {
            let r = policy_report(service, login, client_address.as_deref(), now).await?;
            if json {
                to_json(&r)
            } else {
                render_policy(&r)
            }
        }
        Query::Message { login, from, to, size } => {
            service.identities().get(login).await?.ok_or_else(|| ExplainError::UnknownUser(login.clone()))?;
            let steps = message_report(service, login, from, to, *size, now).await;
            if json {
                to_json(&steps)
            } else {
                render_message(&steps)
            }
        }
        Query::Reference(r) => {
            let record = reference_report(service, r).await?;
            render_record(&record) + "\n"
        }
    })
}

mod erased {
    /// Pretty JSON of any report.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("cannot print: {e}")) + "\n"
        }
    }
}
