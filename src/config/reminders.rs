//! `[reminders]`: warning mails before a password expires.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::{duration, Validate};

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReminders {
    /// Days before expiry at which a reminder goes out, e.g. [14, 7, 3, 1].
    #[serde(default = "default_warning_days")]
    pub warning_days: Vec<u32>,
    /// One more mail once the password has expired.
    #[serde(default = "yes")]
    pub notify_expired: bool,
    /// Passwords expire this long after the last change when the directory
    /// has no expiry of its own (mailwarrant's own maximum age).
    pub max_age: Option<String>,
    /// IANA time zone for dates in mails and for `daily_at`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Local time (HH:MM) at which `serve` runs the job each day.
    #[serde(default = "default_daily_at")]
    pub daily_at: String,
    /// Most mails per second, so a large directory does not trip the
    /// company's own outbound limits.
    #[serde(default = "default_per_second")]
    pub max_per_second: u32,
    /// The self-service page linked from every reminder; defaults to
    /// mailwarrant's own page, `{http.public_base_url}/password`.
    pub self_service_url: Option<String>,
    /// Where the summary of each run goes; leave out for none.
    pub admin_summary_to: Option<String>,
}

fn default_warning_days() -> Vec<u32> {
    vec![14, 7, 3, 1]
}
fn yes() -> bool {
    true
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_daily_at() -> String {
    "08:00".into()
}
fn default_per_second() -> u32 {
    5
}

#[derive(Debug, Clone)]
pub struct ReminderSettings {
    /// Sorted, largest first, no duplicates.
    pub warning_days: Vec<u32>,
    pub notify_expired: bool,
    pub max_age: Option<Duration>,
    pub time_zone: jiff::tz::TimeZone,
    pub time_zone_name: String,
    pub daily_at: jiff::civil::Time,
    pub max_per_second: u32,
    pub self_service_url: String,
    pub admin_summary_to: Option<crate::identity::Address>,
}

impl Validate for RawReminders {
    type Output = ReminderSettings;

    fn validate(&self, p: &mut Problems, _: &Path) -> Option<ReminderSettings> {
        let mut days = self.warning_days.clone();
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        if days.is_empty() {
            p.error("reminders.warning_days", "list at least one day, e.g. [14, 7, 3, 1]");
        }
        let max_age = self.max_age.as_deref().and_then(|s| duration::parse(p, "reminders.max_age", s));
        let time_zone = p.check("reminders.time_zone", super::zone::parse_time_zone(&self.time_zone));
        let daily_at = p.check(
            "reminders.daily_at",
            self.daily_at.parse::<jiff::civil::Time>().map_err(|e| format!("{:?}: {e}; write HH:MM", self.daily_at)),
        );
        if self.max_per_second == 0 {
            p.error("reminders.max_per_second", "must be at least 1");
        }
        let url = self.self_service_url.clone().unwrap_or_default();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            p.error(
                "reminders.self_service_url",
                "write the full URL of the self-service page, e.g. https://mail.example.com/password \
                 (or set [http] public_base_url to link to mailwarrant's own page)",
            );
        }
        let admin = self
            .admin_summary_to
            .as_deref()
            .map(|a| p.check("reminders.admin_summary_to", crate::identity::Address::parse(a)));
        Some(ReminderSettings {
            warning_days: days,
            notify_expired: self.notify_expired,
            max_age,
            time_zone: time_zone?,
            time_zone_name: self.time_zone.clone(),
            daily_at: daily_at?,
            max_per_second: self.max_per_second,
            self_service_url: url,
            admin_summary_to: admin.map(|a| a.ok_or(())).transpose().ok()?,
        })
    }
}
