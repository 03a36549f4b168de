//! Active Directory's FILETIME: a signed 64-bit count of 100-nanosecond
//! intervals since 1601-01-01 UTC, written as a decimal string
//! (`pwdLastSet`, `lockoutTime`, `accountExpires`,
//! `msDS-UserPasswordExpiryTimeComputed`).
//!
//! Two values mean something other than an instant: `0` ("never set":
//! must change for `pwdLastSet`, not locked for `lockoutTime`, never for
//! `accountExpires`) and `0x7FFFFFFFFFFFFFFF` ("never"). Callers decide
//! which applies; this module only reads. Nothing here panics on what a
//! server sends: a value that is not a number, or an instant `time` cannot
//! hold, is `None` ("unknown").

use time::OffsetDateTime;

/// Ticks per second (one tick is 100 ns).
pub const TICKS_PER_SECOND: i64 = 10_000_000;
/// Seconds from 1601-01-01 to 1970-01-01.
pub const EPOCH_DIFFERENCE_SECONDS: i64 = 11_644_473_600;
/// "Never" (`accountExpires`, `msDS-UserPasswordExpiryTimeComputed`).
pub const NEVER: i64 = i64::MAX;

/// A FILETIME attribute value, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTime {
    /// `0`: not set.
    Zero,
    /// `0x7FFFFFFFFFFFFFFF`: never.
    Never,
    /// An instant.
    At(OffsetDateTime),
}

/// Reads a FILETIME attribute value; `None` when it is not a decimal
/// 64-bit integer or names an instant out of range.
pub fn parse(value: &str) -> Option<FileTime> {
    let ticks: i64 = value.trim().parse().ok()?;
    match ticks {
        0 => Some(FileTime::Zero),
        NEVER => Some(FileTime::Never),
        t => to_datetime(t).map(FileTime::At),
    }
}

/// The instant a tick count names; `None` when out of `time`'s range
/// (negative counts are before 1601, which no attribute means).
pub fn to_datetime(ticks: i64) -> Option<OffsetDateTime> {
    if ticks < 0 {
        return None;
    }
    let seconds = ticks / TICKS_PER_SECOND - EPOCH_DIFFERENCE_SECONDS;
    let nanos = (ticks % TICKS_PER_SECOND) * 100;
    let whole = OffsetDateTime::from_unix_timestamp(seconds).ok()?;
    whole.checked_add(time::Duration::nanoseconds(nanos))
}

/// The tick count of an instant (for tests and seeding); `None` before 1601.
pub fn from_datetime(at: OffsetDateTime) -> Option<i64> {
    let seconds = at.unix_timestamp().checked_add(EPOCH_DIFFERENCE_SECONDS)?;
    if seconds < 0 {
        return None;
    }
    seconds.checked_mul(TICKS_PER_SECOND)?.checked_add(i64::from(at.nanosecond() / 100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn check(input: &str, expected: Option<FileTime>) {
        assert_eq!(parse(input), expected, "{input:?}");
    }

    #[test]
    fn values() {
        check("0", Some(FileTime::Zero));
        check("9223372036854775807", Some(FileTime::Never));
        check("116444736000000000", Some(FileTime::At(datetime!(1970-01-01 0:00 UTC))));
        check(" 134402975973160000 ", Some(FileTime::At(datetime!(2026-11-27 23:59:57.316 UTC))));
        check("1", Some(FileTime::At(datetime!(1601-01-01 0:00:00.0000001 UTC))));
        check("", None);
        check("-1", None);
        check("12a", None);
        check("9223372036854775808", None);
        check("0x7fffffffffffffff", None);
        // Far future values the `time` crate cannot hold are unknown, not a panic.
        check("9223372036854775806", None);
    }

    #[test]
    fn round_trip_of_a_known_instant() {
        let at = datetime!(2026-11-27 12:34:56.789 UTC);
        assert_eq!(from_datetime(at).and_then(to_datetime), Some(at));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,24}") {
            let _ = parse(&s);
        }

        #[test]
        fn any_tick_count_is_safe(ticks in any::<i64>()) {
            let _ = parse(&ticks.to_string());
            if let Some(at) = to_datetime(ticks) {
                prop_assert_eq!(from_datetime(at), Some(ticks));
            }
        }
    }
}
