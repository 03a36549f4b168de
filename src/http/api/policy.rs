//! The send policy over HTTP: a user's resolved policy with usage
//! (`GET /v1/identities/{login}/policy`), the decision for a whole
//! message (`POST /v1/policy/check`), and recent refusals
//! (`GET /v1/refusals`, admin).
//!
//! A check walks the message through the stages Postfix would ask
//! (each RCPT, then DATA and END-OF-MESSAGE with the accepted count),
//! stopping at the first refusal, through the one walk in
//! `policy_service::explain::simulate`. Without `dry_run` it is the real
//! decision: counters are charged once at END-OF-MESSAGE and refusals are
//! audited, as for the policy delegation front end.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, Code};
use super::identities::clean_login;
use super::Caller;
use crate::config::http::Scope;
use crate::http::HttpState;
use crate::policy::content::{AttachmentSummary, ContentFacts};
use crate::policy_service::audit::{AuditRecord, AUDIT_LOG};
use crate::policy_service::explain::{self, ExplainError, Message, PolicyReport, Run, StepLine};
use crate::policy_service::PolicyService;

/// Most recipients one check may name (Postfix's default
/// `smtpd_recipient_limit` is 1000).
const MAX_RECIPIENTS: usize = 1000;

fn service(s: &HttpState) -> Result<&PolicyService, ApiError> {
    s.policy.as_ref().ok_or_else(|| ApiError::new(Code::NotConfigured, "the config has no [policy] section"))
}

fn explain_error(e: ExplainError) -> ApiError {
    match e {
        ExplainError::UnknownUser(_) => ApiError::not_found("no such login in the directory"),
        ExplainError::UnknownReference(_) => ApiError::not_found("no such reference"),
        ExplainError::Directory(e) => ApiError::unavailable("directory", &e),
        ExplainError::Store(e) => ApiError::unavailable("store", &e),
    }
}

pub async fn show(
    State(s): State<HttpState>,
    caller: Caller,
    ApiPath(login): ApiPath<String>,
) -> Result<Json<PolicyReport>, ApiError> {
    caller.require(Scope::Lookup)?;
    let login = clean_login(&login)?;
    let report = explain::policy_report(service(&s)?, login, None, OffsetDateTime::now_utc()).await;
    Ok(Json(report.map_err(explain_error)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    login: String,
    sender: String,
    recipients: Vec<String>,
    #[serde(default)]
    size: u64,
    /// How many attachments the message carries, when known.
    #[serde(default)]
    attachments: Option<u32>,
    #[serde(default)]
    client_address: Option<String>,
}

#[derive(Deserialize)]
pub struct CheckQuery {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize)]
pub struct CheckAnswer {
    /// `accept`, `reject` or `defer`.
    pub action: &'static str,
    /// `accepted`, or the rule that refused.
    pub rule: String,
    /// The SMTP reply the policy server would give (`DUNNO (accepted)`,
    /// or code and text).
    pub reply: String,
    /// The audit reference of a refusal (not in a dry run).
    pub reference: Option<String>,
    pub dry_run: bool,
    /// Every stage asked, in order; the last one decided.
    pub steps: Vec<StepLine>,
}

pub async fn check(
    State(s): State<HttpState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CheckQuery>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<CheckAnswer>, ApiError> {
    caller.require(Scope::Lookup)?;
    let service = service(&s)?;
    let login = clean_login(&body.login)?.to_owned();
    if body.recipients.is_empty() || body.recipients.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(format!("recipients: 1 to {MAX_RECIPIENTS} addresses")));
    }
    let long = |v: &str| v.len() > 320 || v.chars().any(char::is_control);
    if long(&body.sender) || body.recipients.iter().any(|r| long(r)) {
        return Err(ApiError::invalid("addresses: at most 320 printable characters"));
    }
    let client_address = match body.client_address.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => {
            let ip: std::net::IpAddr =
                a.parse().map_err(|_| ApiError::invalid("client_address is not an IP address"))?;
            Some(ip.to_string())
        }
    };
    let content = body
        .attachments
        .map(|count| ContentFacts { attachments: Some(AttachmentSummary { count, largest: 0 }), senders: None });
    let message = Message { login, from: body.sender, to: body.recipients, size: body.size, client_address, content };
    let run = if q.dry_run { Run::DryRun } else { Run::Charge { front_end: crate::metrics::HTTP } };
    let steps = explain::simulate(service, &message, run, OffsetDateTime::now_utc()).await;
    let last = steps.last().ok_or_else(|| ApiError::invalid("nothing to check"))?;
    let action = if last.accepted {
        "accept"
    } else if last.answer.starts_with('4') {
        "defer"
    } else {
        "reject"
    };
    Ok(Json(CheckAnswer {
        action,
        rule: last.rule.clone(),
        reply: last.answer.clone(),
        reference: last.reference.clone(),
        dry_run: q.dry_run,
        steps,
    }))
}

#[derive(Deserialize)]
pub struct RefusalsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    /// Only this login's records.
    #[serde(default)]
    login: Option<String>,
}

fn default_limit() -> usize {
    50
}

/// The newest policy audit records, newest first.
pub async fn recent(s: &HttpState, limit: usize, login: Option<&str>) -> Result<Vec<AuditRecord>, ApiError> {
    let keep = service(s)?.settings().audit_keep;
    let raw = s.store.tail(AUDIT_LOG, keep).await.map_err(|e| ApiError::unavailable("store", &e))?;
    let mut out: Vec<AuditRecord> = raw
        .iter()
        .filter_map(|b| serde_json::from_slice::<AuditRecord>(b).ok())
        .filter(|r| login.is_none_or(|l| r.login.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(l))))
        .collect();
    // The store returns oldest first.
    out.reverse();
    out.truncate(limit);
    Ok(out)
}

pub async fn refusals(
    State(s): State<HttpState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RefusalsQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    caller.require(Scope::Admin)?;
    if q.limit == 0 || q.limit > 1000 {
        return Err(ApiError::invalid("limit: 1 to 1000"));
    }
    let login = q.login.as_deref().map(clean_login).transpose()?;
    Ok(Json(recent(&s, q.limit, login).await?))
}
