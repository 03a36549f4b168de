//! Rate-limit windows on the calendar the admins live by.
//!
//! A window that is a whole number of days (`1d`, `7d`) follows the
//! configured time zone's calendar: `500/1d` in Berlin resets at local
//! midnight, so the day before a DST change lasts 23 or 25 hours, never
//! resets twice and never skips a reset. Shorter windows (`30/1m`, `1h`)
//! are plain stretches of time aligned on the Unix epoch. Either way the
//! window is named by its start in UTC seconds, the part of the counter
//! key that a rollover changes, so instances in different zones (or with
//! a jumped clock) name the same window alike.

use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use time::OffsetDateTime;

const DAY_SECS: i64 = 86_400;

/// One window of a limit: its start and the instant it resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub resets_at: OffsetDateTime,
}

/// The window of length `length` that holds `now`.
pub fn current(length: Duration, now: OffsetDateTime, zone: &TimeZone) -> Window {
    let secs = i64::try_from(length.as_secs()).unwrap_or(i64::MAX).max(1);
    if secs % DAY_SECS == 0 {
        if let Some(window) = local_days(secs / DAY_SECS, now, zone) {
            return window;
        }
    }
    let start = now.unix_timestamp().div_euclid(secs).saturating_mul(secs);
    Window { start: at(start).unwrap_or(now), resets_at: at(start.saturating_add(secs)).unwrap_or(now) }
}

/// Blocks of `days` local calendar days, counted from 1970-01-01, local
/// midnight to local midnight. `None` only outside jiff's range.
fn local_days(days: i64, now: OffsetDateTime, zone: &TimeZone) -> Option<Window> {
    let today = jiff::Timestamp::from_second(now.unix_timestamp()).ok()?.to_zoned(zone.clone()).date();
    let epoch = jiff::civil::date(1970, 1, 1);
    let since_epoch = i64::from(today.since(epoch).ok()?.get_days());
    let first = since_epoch.div_euclid(days) * days;
    let start_date = epoch.checked_add(jiff::Span::new().try_days(first).ok()?).ok()?;
    let end_date = start_date.checked_add(jiff::Span::new().try_days(days).ok()?).ok()?;
    Some(Window { start: midnight(start_date, zone)?, resets_at: midnight(end_date, zone)? })
}

/// The first instant of `date` in `zone` (later than 00:00 where a DST
/// gap swallows midnight).
fn midnight(date: Date, zone: &TimeZone) -> Option<OffsetDateTime> {
    let start = date.to_zoned(zone.clone()).ok()?.start_of_day().ok()?;
    at(start.timestamp().as_second())
}

fn at(unix: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).ok()
}

/// When the window resets, as precise as the window needs, in the zone
/// the windows follow ("00:00 CET", "15:31:00 UTC", "2026-12-01 00:00 UTC").
pub fn reset_text(at: OffsetDateTime, now: OffsetDateTime, length: Duration, zone: &TimeZone) -> String {
    let Ok(local) = jiff::Timestamp::from_second(at.unix_timestamp()).map(|t| t.to_zoned(zone.clone())) else {
        return at.to_string();
    };
    let format = if length < Duration::from_secs(3_600) {
        "%H:%M:%S %Z"
    } else if at - now <= time::Duration::DAY {
        "%H:%M %Z"
    } else {
        "%Y-%m-%d %H:%M %Z"
    };
    local.strftime(format).to_string()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    #[test]
    fn utc_days_and_short_windows_align_on_the_epoch() {
        let w = current(DAY, datetime!(2026-11-27 23:59:59 UTC), &TimeZone::UTC);
        assert_eq!((w.start, w.resets_at), (datetime!(2026-11-27 00:00 UTC), datetime!(2026-11-28 00:00 UTC)));
        assert_eq!(
            current(DAY, datetime!(2026-11-28 00:00 UTC), &TimeZone::UTC).resets_at,
            datetime!(2026-11-29 00:00 UTC)
        );
        let minute = Duration::from_secs(60);
        assert_eq!(
            current(minute, datetime!(2026-11-27 10:15:42 UTC), &berlin()).resets_at,
            datetime!(2026-11-27 10:16 UTC)
        );
        // Before 1970 still floors downwards.
        assert_eq!(
            current(minute, datetime!(1969-12-31 23:59:30 UTC), &TimeZone::UTC).resets_at,
            datetime!(1970-01-01 00:00 UTC)
        );
    }

    #[test]
    fn a_local_day_runs_from_local_midnight_to_local_midnight() {
        // 23:30 UTC on the 27th is already the 28th in Berlin (CET, +1).
        let w = current(DAY, datetime!(2026-11-27 23:30 UTC), &berlin());
        assert_eq!(w.start, datetime!(2026-11-27 23:00 UTC));
        assert_eq!(w.resets_at, datetime!(2026-11-28 23:00 UTC));
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        // 2026-03-29: clocks go 02:00 → 03:00 in Berlin.
        let spring = current(DAY, datetime!(2026-03-29 12:00 UTC), &berlin());
        assert_eq!(spring.start, datetime!(2026-03-28 23:00 UTC));
        assert_eq!(spring.resets_at, datetime!(2026-03-29 22:00 UTC));
        assert_eq!(spring.resets_at - spring.start, time::Duration::hours(23));
        // 2026-10-25: clocks go 03:00 → 02:00.
        let autumn = current(DAY, datetime!(2026-10-25 12:00 UTC), &berlin());
        assert_eq!(autumn.start, datetime!(2026-10-24 22:00 UTC));
        assert_eq!(autumn.resets_at - autumn.start, time::Duration::hours(25));
    }

    #[test]
    fn every_minute_of_a_dst_week_belongs_to_exactly_one_day() {
        // Walk a week around each change minute by minute: the window start
        // only ever moves forward, once per local day, and `now` is always
        // inside its window.
        for first in [datetime!(2026-03-26 00:00 UTC), datetime!(2026-10-22 00:00 UTC)] {
            let mut starts = Vec::new();
            let mut t = first;
            while t < first + time::Duration::days(7) {
                let w = current(DAY, t, &berlin());
                assert!(w.start <= t && t < w.resets_at, "{t} outside {w:?}");
                if starts.last() != Some(&w.start) {
                    assert!(starts.last().is_none_or(|s| *s < w.start), "window went back at {t}");
                    starts.push(w.start);
                }
                t += time::Duration::minutes(1);
            }
            assert_eq!(starts.len(), 8, "7 days from midnight UTC touch 8 Berlin days: {starts:?}");
        }
    }

    #[test]
    fn multi_day_windows_follow_local_midnights() {
        let w = current(7 * DAY, datetime!(2026-11-27 12:00 UTC), &berlin());
        assert_eq!(w.resets_at - w.start, time::Duration::days(7));
        assert_eq!(w.start.to_offset(time::macros::offset!(+1)).time(), time::macros::time!(00:00));
    }

    #[test]
    fn reset_text_follows_the_window_and_the_zone() {
        let now = datetime!(2026-11-27 15:30 UTC);
        let check = |at, secs, zone: &TimeZone, want: &str| {
            assert_eq!(reset_text(at, now, Duration::from_secs(secs), zone), want)
        };
        check(datetime!(2026-11-28 00:00 UTC), 86_400, &TimeZone::UTC, "00:00 UTC");
        check(datetime!(2026-11-27 15:31 UTC), 60, &TimeZone::UTC, "15:31:00 UTC");
        check(datetime!(2026-12-01 00:00 UTC), 7 * 86_400, &TimeZone::UTC, "2026-12-01 00:00 UTC");
        check(datetime!(2026-11-27 23:00 UTC), 86_400, &berlin(), "00:00 CET");
        check(datetime!(2026-12-02 23:00 UTC), 7 * 86_400, &berlin(), "2026-12-03 00:00 CET");
        let summer = datetime!(2026-07-01 12:00 UTC);
        assert_eq!(reset_text(datetime!(2026-07-01 22:00 UTC), summer, DAY, &berlin()), "00:00 CEST");
    }
}
