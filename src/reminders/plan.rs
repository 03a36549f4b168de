//! Who gets which reminder, decided from the users and `now` alone.
//!
//! Pure: no I/O, no clock. A user expiring in `d` days gets the stage of
//! the smallest warning day that is at least `d` (with [14, 7, 3, 1]: 10
//! days left → stage 14, 5 → stage 7, half a day → stage 1). A missed run
//! therefore sends the stage that is due now, never a backlog of old ones.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::ReminderSettings;
use crate::directory::UserSummary;
use crate::identity::Address;

/// Which mail a user is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "days")]
pub enum Stage {
    /// A warning at this many days before expiry.
    Warning(u32),
    /// The password has expired.
    Expired,
}

impl Stage {
    /// Part of the ledger key: stable across releases.
    pub fn key(self) -> String {
        match self {
            Stage::Warning(d) => format!("w{d}"),
            Stage::Expired => "expired".to_owned(),
        }
    }

    pub fn template(self) -> &'static str {
        match self {
            Stage::Warning(_) => "reminder",
            Stage::Expired => "expired",
        }
    }
}

/// One mail to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub login: String,
    pub display_name: String,
    pub address: Address,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Whole days left (0 on the last day, negative once expired).
    pub days_left: i64,
    pub stage: Stage,
}

/// The password expiry of a user: the directory's own, else the change
/// time plus mailwarrant's maximum age.
pub fn expiry(user: &UserSummary, settings: &ReminderSettings) -> Option<OffsetDateTime> {
    user.account.password_expires_at.or_else(|| {
        let age = settings.max_age?;
        Some(user.account.password_changed_at? + age)
    })
}

/// The stage due for a password expiring at `expires_at`.
pub fn stage(expires_at: OffsetDateTime, now: OffsetDateTime, settings: &ReminderSettings) -> Option<Stage> {
    if expires_at <= now {
        return settings.notify_expired.then_some(Stage::Expired);
    }
    let days_left = days_left(expires_at, now);
    // warning_days is sorted largest first: the last one still >= days_left.
    settings.warning_days.iter().rev().find(|d| i64::from(**d) >= days_left).map(|d| Stage::Warning(*d))
}

/// Whole days from `now` to `expires_at`, rounded down (so the last day
/// is 0 and the day after expiry is -1).
pub fn days_left(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (expires_at - now).whole_seconds().div_euclid(86_400)
}

/// Every mail due at `now`; disabled and locked accounts, users without a
/// mail address and passwords that never expire get none.
pub fn plan(users: &[UserSummary], settings: &ReminderSettings, now: OffsetDateTime) -> Vec<Planned> {
    let mut out: Vec<Planned> = users
        .iter()
        .filter(|u| u.account.enabled && !u.account.locked)
        .filter_map(|u| {
            let address = u.primary_address.clone()?;
            let expires_at = expiry(u, settings)?;
            let stage = stage(expires_at, now, settings)?;
            Some(Planned {
                login: u.login.as_str().to_owned(),
                display_name: u.display_name.clone(),
                address,
                expires_at,
                days_left: days_left(expires_at, now),
                stage,
            })
        })
        .collect();
    out.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.login.cmp(&b.login)));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::identity::{AccountState, Login};

    fn settings() -> ReminderSettings {
        ReminderSettings {
            warning_days: vec![14, 7, 3, 1],
            notify_expired: true,
            max_age: Some(Duration::from_secs(90 * 86_400)),
            time_zone: jiff::tz::TimeZone::UTC,
            time_zone_name: "UTC".into(),
            daily_at: jiff::civil::time(8, 0, 0, 0),
            max_per_second: 100,
            self_service_url: "https://mail.example.com/password".into(),
            admin_summary_to: None,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-27 08:00 UTC);

    fn check(expires_in_hours: i64, expected: Option<Stage>) {
        let at = NOW + time::Duration::hours(expires_in_hours);
        assert_eq!(stage(at, NOW, &settings()), expected, "{expires_in_hours} h");
    }

    #[test]
    fn stages_follow_the_warning_days() {
        check(15 * 24 + 1, None);
        check(15 * 24 - 1, Some(Stage::Warning(14)));
        check(10 * 24, Some(Stage::Warning(14)));
        check(7 * 24 + 5, Some(Stage::Warning(7)));
        check(5 * 24, Some(Stage::Warning(7)));
        check(2 * 24, Some(Stage::Warning(3)));
        check(30, Some(Stage::Warning(1)));
        check(12, Some(Stage::Warning(1)));
        check(0, Some(Stage::Expired));
        check(-48, Some(Stage::Expired));
        let mut quiet = settings();
        quiet.notify_expired = false;
        assert_eq!(stage(NOW, NOW, &quiet), None);
    }

    fn user(login: &str, changed_days_ago: Option<i64>, tweak: impl Fn(&mut UserSummary)) -> UserSummary {
        let mut u = UserSummary {
            login: Login::new(login),
            dn: format!("uid={login}"),
            display_name: login.into(),
            primary_address: Address::parse(&format!("{login}@example.com")).ok(),
            account: AccountState {
                enabled: true,
                password_changed_at: changed_days_ago.map(|d| NOW - time::Duration::days(d)),
                ..Default::default()
            },
        };
        tweak(&mut u);
        u
    }

    #[test]
    fn plan_skips_who_must_not_get_mail() {
        let users = [
            user("due7", Some(85), |_| {}),
            user("fresh", Some(1), |_| {}),
            user("never", None, |_| {}),
            user("disabled", Some(85), |u| u.account.enabled = false),
            user("locked", Some(85), |u| u.account.locked = true),
            user("nomail", Some(85), |u| u.primary_address = None),
            user("expired", Some(100), |_| {}),
            user("dirsays", Some(1), |u| u.account.password_expires_at = Some(NOW + time::Duration::days(2))),
        ];
        let plan = plan(&users, &settings(), NOW);
        let planned: Vec<(&str, Stage, i64)> = plan.iter().map(|p| (p.login.as_str(), p.stage, p.days_left)).collect();
        assert_eq!(
            planned,
            [("expired", Stage::Expired, -10), ("dirsays", Stage::Warning(3), 2), ("due7", Stage::Warning(7), 5)]
        );
    }
}
