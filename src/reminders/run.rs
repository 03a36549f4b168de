//! One reminder run: scan, plan, send each due mail once.
//!
//! "Once" holds across restarts and across instances: before sending, a
//! ledger key `reminder:<login>:<expiry>:<stage>` is claimed in the store
//! with `set_if_absent` (a short TTL while sending), then marked sent until
//! well past the expiry. A new password means a new expiry, so a new cycle.
//! A crash between the send and the mark can repeat that one mail on the
//! next run (at most one duplicate per crash); nobody is ever skipped.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::plan::{self, Planned, Stage};
use crate::config::ReminderSettings;
use crate::directory::{Directory, DirectoryError};
use crate::identity::Address;
use crate::mailer::Mailer;
use crate::store::{Store, StoreError};

/// How long a claim protects a mail being sent.
const CLAIM_TTL: Duration = Duration::from_secs(15 * 60);
/// Ledger entries outlive the expiry by this much.
const LEDGER_GRACE: Duration = Duration::from_secs(60 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What happened to one planned mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "error")]
pub enum Status {
    WouldSend,
    Sent,
    AlreadySent,
    Failed(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub mail: Planned,
    /// Expiry in the configured time zone, as the mail shows it.
    pub expires_on: String,
    #[serde(flatten)]
    pub status: Status,
    /// A reminder of an earlier stage went out for this same password.
    pub reminded_before: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    pub users_scanned: usize,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn count(&self, status: &Status) -> usize {
        self.outcomes.iter().filter(|o| &o.status == status).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o.status, Status::Failed(_))).count()
    }
}

/// Everything a run needs.
pub struct Job<'a> {
    pub directory: &'a dyn Directory,
    pub store: &'a dyn Store,
    pub settings: &'a ReminderSettings,
    /// `None` for a dry run: nothing is sent or recorded.
    pub mailer: Option<&'a Mailer>,
}

impl Job<'_> {
    pub async fn run(&self, now: OffsetDateTime) -> Result<Report, ReminderError> {
        let users = self.directory.list_users().await?;
        let planned = plan::plan(&users, self.settings, now);
        let mut outcomes = Vec::with_capacity(planned.len());
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.settings.max_per_second)));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for mail in planned {
            let key = ledger_key(&mail.login, mail.expires_at, mail.stage);
            let reminded_before = self.reminded_before(&mail).await?;
            let expires_on = local_time(mail.expires_at, self.settings);
            let status = match self.mailer {
                None => {
                    if self.store.get(&key).await?.is_some() {
                        Status::AlreadySent
                    } else {
                        Status::WouldSend
                    }
                }
                Some(mailer) => {
                    if !self.store.set_if_absent(&key, b"sending", Some(CLAIM_TTL)).await? {
                        Status::AlreadySent
                    } else {
                        pace.tick().await;
                        self.send(mailer, &mail, &expires_on, &key, now).await?
                    }
                }
            };
            outcomes.push(Outcome { mail, expires_on, status, reminded_before });
        }
        let report = Report { run_at: now, users_scanned: users.len(), outcomes };
        tracing::info!(
            scanned = report.users_scanned,
            sent = report.count(&Status::Sent),
            already_sent = report.count(&Status::AlreadySent),
            failed = report.failed(),
            dry_run = self.mailer.is_none(),
            "reminder run finished"
        );
        if let (Some(mailer), Some(admin)) = (self.mailer, &self.settings.admin_summary_to) {
            self.send_summary(mailer, admin, &report).await;
        }
        Ok(report)
    }

    async fn send(
        &self,
        mailer: &Mailer,
        mail: &Planned,
        expires_on: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Status, ReminderError> {
        let context = serde_json::json!({
            "display_name": mail.display_name,
            "login": mail.login,
            "days_left": mail.days_left.max(0),
            "expires_on": expires_on,
            "time_zone": self.settings.time_zone_name,
            "self_service_url": self.settings.self_service_url,
        });
        match mailer.send(&mail.address, Some(&mail.display_name), mail.stage.template(), &context).await {
            Ok(()) => {
                crate::metrics::reminder_sent();
                let keep = (mail.expires_at - now).unsigned_abs() + LEDGER_GRACE;
                self.store.set(key, b"sent", Some(keep)).await?;
                tracing::info!(login = %mail.login, stage = %mail.stage.key(), "reminder sent");
                Ok(Status::Sent)
            }
            Err(e) => {
                // Release the claim so the next run tries again.
                self.store.delete(key).await?;
                tracing::warn!(login = %mail.login, stage = %mail.stage.key(), error = %e, "reminder not sent");
                Ok(Status::Failed(e.to_string()))
            }
        }
    }

    async fn reminded_before(&self, mail: &Planned) -> Result<bool, ReminderError> {
        let earlier = self.settings.warning_days.iter().filter(|d| match mail.stage {
            Stage::Warning(now) => **d > now,
            Stage::Expired => true,
        });
        for d in earlier {
            if self.store.get(&ledger_key(&mail.login, mail.expires_at, Stage::Warning(*d))).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn send_summary(&self, mailer: &Mailer, admin: &Address, report: &Report) {
        let pick = |f: &dyn Fn(&Outcome) -> bool| report.outcomes.iter().filter(|o| f(o)).collect::<Vec<_>>();
        let reminded = pick(&|o| o.status == Status::Sent && matches!(o.mail.stage, Stage::Warning(_)));
        let expired = pick(&|o| o.status == Status::Sent && o.mail.stage == Stage::Expired);
        let not_changed = pick(&|o| o.reminded_before);
        let failed: Vec<_> = report
            .outcomes
            .iter()
            .filter_map(|o| match &o.status {
                Status::Failed(e) => Some(serde_json::json!({ "login": o.mail.login, "error": e })),
                _ => None,
            })
            .collect();
        let context = serde_json::json!({
            "run_date": local_time(report.run_at, self.settings),
            "time_zone": self.settings.time_zone_name,
            "reminded": reminded,
            "expired": expired,
            "not_changed": not_changed,
            "failed": failed,
        });
        if let Err(e) = mailer.send(admin, None, "admin-summary", &context).await {
            tracing::warn!(error = %e, "admin summary not sent");
        }
    }
}

/// The ledger key of one mail; the expiry makes a new password a new cycle.
pub fn ledger_key(login: &str, expires_at: OffsetDateTime, stage: Stage) -> String {
    format!("reminder:{login}:{}:{}", expires_at.unix_timestamp(), stage.key())
}

/// `2026-12-10 08:00` in the configured time zone.
pub fn local_time(at: OffsetDateTime, settings: &ReminderSettings) -> String {
    match jiff::Timestamp::from_second(at.unix_timestamp()) {
        Ok(ts) => ts.to_zoned(settings.time_zone.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
        Err(_) => at.to_string(),
    }
}
