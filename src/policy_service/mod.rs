//! The send-policy service: the I/O around the pure `policy` module.
//!
//! For one request it finds the identity (SASL login, or the envelope
//! sender's owner on a trusted relay), resolves the user's profiles, looks
//! up whether a recipient is a distribution list, reads or charges the
//! rate-limit counters, calls `policy::evaluate`, and records refusals in
//! the audit log with a reference. Every front end (policy delegation,
//! milter, HTTP) calls [`PolicyService::check`]; none holds a rule.
//!
//! Fail closed on identity (unknown user → refused), fail soft on
//! infrastructure (directory down → 4xx; store down → the configured
//! `store_error_action`).

pub mod audit;
pub mod explain;
pub mod lists;

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::audit_log::{clip, AuditLine, AuditLog};
use crate::config::policy::{OutageAction, Unauthenticated};
use crate::config::PolicySettings;
use crate::directory::{AddressOwner, Directory};
use crate::identity::{Address, Identity, IdentityCache};
use crate::policy::decision::{self, Finding, RuleKind, Verdict};
use crate::policy::evaluate::{conclude, mode_for};
use crate::policy::{
    evaluate, resolve, CounterReading, Decision, MessageFacts, Mode, RecipientFacts, ResolvedPolicy, Sender, Stage,
};
use crate::ratelimit::{Charge, RateLimiter, Subjects, When};
use crate::store::{Store, StoreError};
use audit::AuditRecord;
use lists::ListCache;

/// A policy question, independent of the protocol that asked it. The
/// texts borrow from the request as the front end decoded it where they
/// can (the policy delegation server asks tens of thousands a second, and
/// copying every attribute cost an allocation each); front ends that keep
/// a request across awaits own them (`SendRequest<'static>`).
#[derive(Clone, Debug, Default)]
pub struct SendRequest<'a> {
    pub stage: Option<Stage>,
    /// Empty or absent when the client did not authenticate.
    pub sasl_username: Option<Cow<'a, str>>,
    /// The envelope sender as given; `None` before MAIL FROM.
    pub sender: Option<Cow<'a, str>>,
    pub recipient: Option<Cow<'a, str>>,
    pub recipient_count: u32,
    pub size: u64,
    pub client_address: Option<Cow<'a, str>>,
    /// Postfix's per-message id; the rate-limit charge is keyed on it.
    pub instance: Option<Cow<'a, str>>,
    pub queue_id: Option<Cow<'a, str>>,
    pub policy_context: Option<Cow<'a, str>>,
    /// Headers and attachments (milter, HTTP); `None` from the policy
    /// delegation protocol, which never sees them.
    pub content: Option<crate::policy::ContentFacts>,
}

/// What a check does with the rate-limit counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rates {
    /// Read at DATA, charge at END-OF-MESSAGE (once per `instance`).
    Charge,
    /// Read only, never charge (`explain`).
    Read,
    /// Leave the rate limits to another front end: neither read nor charge.
    Skip,
}

/// The answer, with what front ends need to format it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// The user's highest-priority profile, for `X-Mailwarrant-Policy`.
    pub profile: Option<Arc<str>>,
    /// Whether a header may be prepended (config, and an accepted DATA stage).
    pub prepend: bool,
}

/// Shared by every front end; cheap to clone.
#[derive(Clone)]
pub struct PolicyService {
    settings: Arc<RwLock<Arc<PolicySettings>>>,
    identities: IdentityCache,
    directory: Arc<dyn Directory>,
    store: Arc<dyn Store>,
    limiter: RateLimiter,
    lists: ListCache,
    audit: AuditLog,
}

impl PolicyService {
    pub fn new(settings: PolicySettings, identities: IdentityCache, store: Arc<dyn Store>) -> Self {
        let directory = identities.directory().clone();
        PolicyService {
            settings: Arc::new(RwLock::new(Arc::new(settings))),
            lists: ListCache::new(directory.clone()),
            limiter: RateLimiter::new(store.clone()),
            identities,
            directory,
            store,
            audit: AuditLog::disabled(),
        }
    }

    /// Writes every decision to the JSON-lines audit log too.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<PolicySettings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in new settings (SIGHUP). Requests in flight finish with the
    /// old ones. Listener addresses are not rebound.
    pub fn reload(&self, new: PolicySettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.lists.clear();
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn identities(&self) -> &IdentityCache {
        &self.identities
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Decides one request for the policy delegation front end; see
    /// [`check_as`](Self::check_as).
    pub async fn check(&self, req: &SendRequest<'_>, now: OffsetDateTime) -> Outcome {
        self.check_with(crate::metrics::POLICY, req, now, Rates::Charge).await
    }

    /// Decides one request and records it when something was refused.
    /// `front_end` (`crate::metrics::{POLICY, MILTER, HTTP}`) labels the
    /// metric and the audit line.
    pub async fn check_as(&self, front_end: &'static str, req: &SendRequest<'_>, now: OffsetDateTime) -> Outcome {
        self.check_with(front_end, req, now, Rates::Charge).await
    }

    /// [`check_as`](Self::check_as), choosing what happens to the rate
    /// limits. The milter uses [`Rates::Skip`] when the policy service
    /// already charges the message at END-OF-MESSAGE, so a message is
    /// counted once.
    pub async fn check_with(
        &self,
        front_end: &'static str,
        req: &SendRequest<'_>,
        now: OffsetDateTime,
        rates: Rates,
    ) -> Outcome {
        let settings = self.settings();
        let mut trace = Trace::default();
        let decision = self.decide(&settings, req, now, rates, &mut trace).await;
        let decision = self.finish(&settings, req, decision, &trace, now).await;
        self.log_line(front_end, req, &decision, &trace, now);
        let prepend = settings.prepend_header && decision.is_accept() && req.stage == Some(Stage::Data);
        Outcome {
            decision,
            profile: trace.policy.as_ref().and_then(|p| p.profiles.first().map(|s| s.profile.clone())),
            prepend,
        }
    }

    /// What [`check`](Self::check) would answer, without charging counters
    /// or writing the audit log (`explain`).
    pub async fn preview(&self, req: &SendRequest<'_>, now: OffsetDateTime) -> Decision {
        let settings = self.settings();
        self.decide(&settings, req, now, Rates::Read, &mut Trace::default()).await
    }

    async fn decide(
        &self,
        settings: &PolicySettings,
        req: &SendRequest<'_>,
        now: OffsetDateTime,
        rates: Rates,
        trace: &mut Trace,
    ) -> Decision {
        let dry_run = rates == Rates::Read;
        let set = &settings.set;
        let stage = match req.stage {
            Some(s @ (Stage::Mail | Stage::Rcpt | Stage::Data | Stage::EndOfMessage)) => s,
            _ => return Decision::accept(),
        };
        let sender = req.sender.as_deref().map(Sender::parse);
        let identity = match self.identify(settings, req, sender.as_ref()).await {
            Ok(Some(identity)) => identity,
            Ok(None) => return Decision::accept(),
            Err(finding) => {
                let mut d = Decision::accept();
                conclude(set, &mut d, finding);
                return d;
            }
        };
        let policy = resolve(set, &identity);
        let recipient = match (stage, req.recipient.as_deref().map(Address::parse)) {
            (Stage::Rcpt, Some(Ok(address))) => {
                let list = if policy.may_send_to_lists.as_ref().is_some_and(|f| !f.value) {
                    match self
                        .lists
                        .list_name(&address, &set.listed_addresses, &set.recipient_delimiter, settings.lists_ttl)
                        .await
                    {
                        Ok(list) => list,
                        Err(e) => return directory_outage(&e.to_string()),
                    }
                } else {
                    None
                };
                Some(RecipientFacts { address, list })
            }
            _ => None,
        };
        let facts = MessageFacts {
            stage,
            identity: &identity,
            sender: sender.as_ref(),
            recipient: recipient.as_ref(),
            recipient_count: req.recipient_count,
            size: req.size,
            content: req.content.as_ref(),
        };
        let subjects = Subjects {
            login: identity.login.as_str(),
            client_address: req.client_address.as_deref().filter(|a| !a.is_empty()),
        };
        let limits = if rates == Rates::Skip { &[][..] } else { policy.limits() };
        let mut readings = Vec::new();
        if (stage == Stage::Data || (dry_run && stage == Stage::EndOfMessage)) && !limits.is_empty() {
            match self.limiter.read(limits, subjects, When { now, zone: &set.time_zone }).await {
                Ok(r) => readings = r,
                Err(e) => return store_outage(settings, &e),
            }
        }
        let mut decision = evaluate(set, &policy, &facts, &readings, now);
        if stage == Stage::EndOfMessage && !dry_run && decision.is_accept() && !limits.is_empty() {
            let capped = vec![rate_mode(set, &policy) == Mode::Enforce; limits.len()];
            let once = req.instance.as_deref().filter(|i| !i.is_empty());
            match self
                .limiter
                .charge(limits, &capped, subjects, once, req.recipient_count, When { now, zone: &set.time_zone })
                .await
            {
                Ok(Charge::Charged(after)) => {
                    // A limit in observe mode is counted but never caps: when
                    // this message passed it, the rate rule runs again on the
                    // counts before the charge, so the finding is observed
                    // (logged, audited, explained) like any other rule's.
                    let passed = after.iter().any(|r| limits.get(r.limit).is_some_and(|l| r.used > l.limit));
                    if passed {
                        let before: Vec<CounterReading> = after
                            .iter()
                            .map(|r| {
                                let spent = limits
                                    .get(r.limit)
                                    .map_or(0, |l| crate::policy::evaluate::cost(l, req.recipient_count));
                                CounterReading { used: r.used.saturating_sub(spent), ..r.clone() }
                            })
                            .collect();
                        let observed = evaluate(set, &policy, &facts, &before, now).observed;
                        decision.observed.extend(observed.into_iter().filter(|f| f.rule == RuleKind::RateLimit));
                    }
                    readings = after;
                }
                Ok(Charge::AlreadyCharged) => {}
                Ok(Charge::Refused(reading)) => {
                    readings = vec![reading];
                    decision = evaluate(set, &policy, &facts, &readings, now);
                }
                Err(e) => return store_outage(settings, &e),
            }
        }
        trace.readings = readings;
        trace.identity = Some(identity.clone());
        trace.policy = Some(policy);
        decision
    }

    /// The user the request is for. `Ok(None)`: not ours to judge.
    async fn identify(
        &self,
        settings: &PolicySettings,
        req: &SendRequest<'_>,
        sender: Option<&Sender>,
    ) -> Result<Option<Arc<Identity>>, Finding> {
        if let Some(login) = req.sasl_username.as_deref().filter(|l| !l.is_empty()) {
            return match self.identities.get(login).await {
                Ok(Some(identity)) => Ok(Some(identity)),
                Ok(None) => Err(unknown_user(&format!("login {login:?} is not in the directory"))),
                Err(e) => Err(directory_finding(&e.to_string())),
            };
        }
        let mode = req
            .policy_context
            .as_deref()
            .and_then(|c| settings.unauthenticated_by_context.get(c))
            .copied()
            .unwrap_or(settings.unauthenticated);
        match mode {
            Unauthenticated::Dunno => Ok(None),
            Unauthenticated::Refuse => Err(Finding::new(
                RuleKind::AuthRequired,
                Verdict::Reject,
                decision::AUTH_REQUIRED,
                "authentication required; rule auth_required".into(),
            )),
            Unauthenticated::BySender => {
                let Some(Sender::Address(address)) = sender else {
                    return Err(unknown_user("no sender address to identify the user by"));
                };
                match self.directory.lookup_address(address).await {
                    Ok(Some(AddressOwner::User { identity })) => Ok(Some(identity)),
                    Ok(_) => Err(Finding::new(
                        RuleKind::SenderMatch,
                        Verdict::Reject,
                        decision::SENDER_NOT_OWNED,
                        format!("sender <{address}> belongs to no user; rule sender_match"),
                    )),
                    Err(e) => Err(directory_finding(&e.to_string())),
                }
            }
        }
    }

    /// Gives a notable decision its reference, logs it and audits it.
    async fn finish(
        &self,
        settings: &PolicySettings,
        req: &SendRequest<'_>,
        mut decision: Decision,
        trace: &Trace,
        now: OffsetDateTime,
    ) -> Decision {
        let login = trace.identity.as_ref().map(|i| i.login.as_str()).or(req.sasl_username.as_deref());
        for f in &decision.observed {
            tracing::info!(outcome = f.verdict.would(), rule = %f.rule_name(), login = login.unwrap_or(""), text = %f.text, "policy observe");
        }
        if !decision.is_notable() {
            return decision;
        }
        let login = login.map(str::to_owned);
        let reference = audit::new_reference();
        decision.reference = Some(reference.clone());
        if let Some(f) = &decision.refusal {
            tracing::info!(
                reference = %reference, rule = %f.rule_name(), code = %f.code, login = login.as_deref().unwrap_or(""),
                sender = req.sender.as_deref().unwrap_or(""), recipient = req.recipient.as_deref().unwrap_or(""),
                client = req.client_address.as_deref().unwrap_or(""), "policy refusal"
            );
        }
        let record = audit_record(req, &decision, trace, login, now);
        if let Err(e) = audit::record(self.store.as_ref(), &record, settings.audit_keep).await {
            // Fails for every refusal while the store is down: a line every 30 s.
            static LOG: crate::store::LogEvery = crate::store::LogEvery::new(std::time::Duration::from_secs(30));
            if LOG.due() {
                tracing::warn!(error = %e, reference = %reference, "cannot write the policy audit record");
            }
        }
        decision
    }
}

impl PolicyService {
    /// The decision's metric and its line in the JSON audit file.
    fn log_line(
        &self,
        front_end: &'static str,
        req: &SendRequest<'_>,
        d: &Decision,
        trace: &Trace,
        now: OffsetDateTime,
    ) {
        let action = match d.refusal.as_ref().map(|f| f.verdict) {
            None => "accept",
            Some(Verdict::Reject) => "reject",
            Some(Verdict::Defer) => "defer",
        };
        crate::metrics::policy_decision(front_end, d.rule(), action);
        if !self.audit.is_enabled() {
            return;
        }
        let login = trace.identity.as_ref().map(|i| i.login.as_str()).or(req.sasl_username.as_deref());
        self.audit.write(&AuditLine {
            time: now,
            kind: "policy",
            front_end,
            login: login.map(clip),
            client: req.client_address.as_deref().filter(|c| !c.is_empty()).map(str::to_owned),
            outcome: action,
            rule: d.rule(),
            reference: d.reference.as_deref(),
            stage: req.stage.map(|s| format!("{s:?}")),
            sender: req.sender.as_deref().map(clip),
            recipient: req.recipient.as_deref().map(clip),
            observed: d.observed.iter().map(|f| format!("{} {}", f.verdict.would(), f.rule_name())).collect(),
            latency_ms: None,
        });
    }
}

/// What `decide` learned, for the audit record.
#[derive(Default)]
struct Trace {
    identity: Option<Arc<Identity>>,
    policy: Option<ResolvedPolicy>,
    readings: Vec<CounterReading>,
}

/// The mode of the rate-limit rule for this user.
fn rate_mode(set: &crate::policy::PolicySet, policy: &ResolvedPolicy) -> Mode {
    let mut probe = Finding::new(RuleKind::RateLimit, Verdict::Defer, decision::RATE_LIMITED, String::new());
    probe.source = policy.rate_limits.as_ref().map(|r| r.source.clone());
    mode_for(set, &probe)
}

fn unknown_user(why: &str) -> Finding {
    Finding::new(RuleKind::UnknownUser, Verdict::Reject, decision::NOT_AUTHORIZED, format!("{why}; rule unknown_user"))
}

fn directory_finding(error: &str) -> Finding {
    tracing::warn!(error, "directory unavailable for a policy request; deferring");
    Finding::new(
        RuleKind::DirectoryUnavailable,
        Verdict::Defer,
        decision::TEMPORARY_FAILURE,
        "directory temporarily unavailable, try again later; rule directory_unavailable".into(),
    )
}

fn directory_outage(error: &str) -> Decision {
    Decision::refuse(directory_finding(error))
}

fn store_outage(settings: &PolicySettings, error: &StoreError) -> Decision {
    // Every request fails alike during an outage: a line every 30 s.
    static LOG: crate::store::LogEvery = crate::store::LogEvery::new(std::time::Duration::from_secs(30));
    if LOG.due() {
        tracing::warn!(error = %error, action = ?settings.store_error_action, "counter store unavailable for policy requests");
    }
    let (verdict, code) = match settings.store_error_action {
        OutageAction::Dunno => return Decision::accept(),
        OutageAction::Defer => (Verdict::Defer, decision::TEMPORARY_FAILURE),
        OutageAction::Reject => (Verdict::Reject, decision::PERMANENT_FAILURE),
    };
    Decision::refuse(Finding::new(
        RuleKind::StoreUnavailable,
        verdict,
        code,
        "rate counters temporarily unavailable; rule store_unavailable".into(),
    ))
}

fn audit_record(
    req: &SendRequest<'_>,
    d: &Decision,
    trace: &Trace,
    login: Option<String>,
    now: OffsetDateTime,
) -> AuditRecord {
    let limits = trace.policy.as_ref().map(|p| p.limits()).unwrap_or(&[]);
    AuditRecord {
        reference: d.reference.clone().unwrap_or_default(),
        at: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        login,
        groups: trace.identity.as_ref().map(|i| i.groups.iter().map(|g| g.name.clone()).collect()).unwrap_or_default(),
        profiles: trace.policy.as_ref().map(|p| p.profiles.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
        stage: req.stage.map(|s| format!("{s:?}")).unwrap_or_default(),
        sender: req.sender.as_deref().map(str::to_owned),
        recipient: req.recipient.as_deref().map(str::to_owned),
        recipient_count: req.recipient_count,
        size: req.size,
        client_address: req.client_address.as_deref().map(str::to_owned),
        instance: req.instance.as_deref().map(str::to_owned),
        queue_id: req.queue_id.as_deref().filter(|q| !q.is_empty()).map(str::to_owned),
        rule: d.rule(),
        reply: d.refusal.as_ref().map(|f| format!("{} {}", f.code, f.text)).unwrap_or_else(|| "DUNNO".into()),
        decided_by: d.refusal.as_ref().and_then(|f| f.source.as_ref()).map(|s| s.to_string()),
        observed: d.observed.iter().map(|f| format!("{} {}: {}", f.verdict.would(), f.rule_name(), f.text)).collect(),
        counters: trace
            .readings
            .iter()
            .filter_map(|r| {
                let l = limits.get(r.limit)?;
                Some(format!(
                    "{} {}/{} resets {}",
                    l.name,
                    r.used,
                    l.limit,
                    r.resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
