//! The daily reminder run inside `serve`.
//!
//! Each instance wakes at `daily_at` in the configured time zone and tries
//! to take the day's lock in the store; only the instance that takes it
//! runs the job, so several instances send once.

use std::time::Duration;

use time::OffsetDateTime;

use super::run::{Job, ReminderError};
use crate::serve::{App, ServeError, Shutdown};

/// The next instant at or after `now` when the clock in `tz` shows `at`.
pub fn next_run(now: OffsetDateTime, at: jiff::civil::Time, tz: &jiff::tz::TimeZone) -> OffsetDateTime {
    let Ok(now_ts) = jiff::Timestamp::from_second(now.unix_timestamp()) else { return now };
    let today = now_ts.to_zoned(tz.clone()).date();
    for day in [today, today.tomorrow().unwrap_or(today)] {
        if let Ok(zoned) = day.to_datetime(at).to_zoned(tz.clone()) {
            if zoned.timestamp() > now_ts {
                return OffsetDateTime::from_unix_timestamp(zoned.timestamp().as_second()).unwrap_or(now);
            }
        }
    }
    now + Duration::from_secs(86_400)
}

/// Runs until shutdown; errors of one run are logged and the next day
/// tried again.
pub async fn run_daily(app: App, mut shutdown: Shutdown) -> Result<(), ServeError> {
    let (Some(settings), true) = (app.config.reminders.clone(), app.mailer.is_some()) else { return Ok(()) };
    loop {
        let now = OffsetDateTime::now_utc();
        let next = next_run(now, settings.daily_at, &settings.time_zone);
        let wait = (next - now).try_into().unwrap_or(Duration::from_secs(60));
        tracing::info!(next_run = %next, "reminders scheduled");
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        match run_once_per_day(&app, next.date(), OffsetDateTime::now_utc()).await {
            Ok(true) => {}
            Ok(false) => tracing::info!("another instance runs today's reminders"),
            Err(e) => tracing::error!(error = %e, "reminder run failed; next try tomorrow"),
        }
    }
}

/// Runs the job for `day` unless another instance (sharing the store)
/// already took that day's lock. True when this call ran it.
pub async fn run_once_per_day(app: &App, day: time::Date, now: OffsetDateTime) -> Result<bool, ReminderError> {
    let (Some(settings), Some(mailer)) = (app.config.reminders.as_ref(), app.mailer.as_deref()) else {
        return Ok(false);
    };
    let lock = format!("reminders:run:{day}");
    if !app.store.set_if_absent(&lock, b"running", Some(Duration::from_secs(20 * 3600))).await? {
        return Ok(false);
    }
    let job = Job { directory: &*app.directory, store: &*app.store, settings, mailer: Some(mailer) };
    job.run(now).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn next_run_is_today_or_tomorrow_in_the_zone() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let at = jiff::civil::time(8, 0, 0, 0);
        // 06:00 UTC is 07:00 in Berlin in winter: today 08:00 Berlin = 07:00 UTC.
        assert_eq!(next_run(datetime!(2026-11-27 06:00 UTC), at, &berlin), datetime!(2026-11-27 07:00 UTC));
        assert_eq!(next_run(datetime!(2026-11-27 07:00 UTC), at, &berlin), datetime!(2026-11-28 07:00 UTC));
        // Summer time: 08:00 Berlin = 06:00 UTC.
        assert_eq!(next_run(datetime!(2026-07-01 05:00 UTC), at, &berlin), datetime!(2026-07-01 06:00 UTC));
    }
}
