//! LDAP GeneralizedTime (RFC 4517 §3.3.13), as ppolicy writes
//! `pwdChangedTime` and `pwdAccountLockedTime`.
//!
//! Shared by the LDAP and LDIF backends. A value that cannot be read is
//! `None`, which callers treat as "unknown", never as "not expired".

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Formats an instant as `YYYYMMDDHHMMSSZ` (UTC), as ppolicy writes
/// `pwdChangedTime`.
pub fn format(at: OffsetDateTime) -> String {
    let t = at.to_offset(UtcOffset::UTC);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// Parses an LDAP GeneralizedTime (RFC 4517 §3.3.13):
/// `YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|(+|-)HH[MM])`. `None` for anything
/// else, including out-of-range fields; never panics.
pub fn parse(input: &str) -> Option<OffsetDateTime> {
    let s = input.trim().as_bytes();
    let digits = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        part.iter().try_fold(0u32, |acc, b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
    };
    let year = digits(0, 4)? as i32;
    let month = Month::try_from(digits(4, 2)? as u8).ok()?;
    let day = digits(6, 2)? as u8;
    let hour = digits(8, 2)? as u8;
    let mut i = 10;
    let mut minute = 0u8;
    let mut second = 0u8;
    if let Some(m) = digits(i, 2) {
        minute = m as u8;
        i += 2;
        if let Some(sec) = digits(i, 2) {
            // A leap second (60) is legal in GeneralizedTime; time has none.
            second = (sec as u8).min(59);
            i += 2;
        }
    }
    let mut nanos = 0u32;
    if matches!(s.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(s[i] - b'0');
            }
            i += 1;
        }
        let used = i - start;
        if used == 0 {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub(used as u32));
    }
    let offset = match s.get(i) {
        Some(b'Z') if i + 1 == s.len() => UtcOffset::UTC,
        Some(sign @ (b'+' | b'-')) => {
            let hours = digits(i + 1, 2)? as i8;
            let (minutes, end) = match digits(i + 3, 2) {
                Some(m) => (m as i8, i + 5),
                None => (0, i + 3),
            };
            if end != s.len() || hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
        _ => return None,
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).to_offset(UtcOffset::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn check_time(input: &str, expected: Option<OffsetDateTime>) {
        assert_eq!(parse(input), expected, "{input:?}");
    }

    #[test]
    fn generalized_times() {
        check_time("20261127231800Z", Some(datetime!(2026-11-27 23:18:00 UTC)));
        check_time("20261127231800.123456Z", Some(datetime!(2026-11-27 23:18:00.123456 UTC)));
        check_time("202611272318Z", Some(datetime!(2026-11-27 23:18 UTC)));
        check_time("2026112723Z", Some(datetime!(2026-11-27 23:00 UTC)));
        check_time("20261127231800+0200", Some(datetime!(2026-11-27 21:18:00 UTC)));
        check_time("20261127231800-05", Some(datetime!(2026-11-28 04:18:00 UTC)));
        check_time("20261127231800,5Z", Some(datetime!(2026-11-27 23:18:00.5 UTC)));
        check_time("20161231235960Z", Some(datetime!(2016-12-31 23:59:59 UTC)));
        check_time("000001010000Z", Some(datetime!(0000-01-01 00:00 UTC)));
        for bad in [
            "",
            "Z",
            "2026",
            "20261127231800",
            "20261327231800Z",
            "20260230231800Z",
            "20261127251800Z",
            "20261127231800.Z",
            "20261127231800Zjunk",
            "20261127231800+2500",
            "2026112723180٠Z",
            "+0261127231800Z",
        ] {
            check_time(bad, None);
        }
    }

    proptest! {
        #[test]
        fn generalized_time_never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn generalized_time_digit_soup_never_panics(s in "[0-9]{0,20}[.,]?[0-9]{0,12}[Z+-]?[0-9]{0,6}") {
            let _ = parse(&s);
        }

        #[test]
        fn generalized_time_round_trips(secs in 0i64..253_402_300_799) {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let text = format!("{:04}{:02}{:02}{:02}{:02}{:02}Z",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second());
            prop_assert_eq!(parse(&text), Some(t));
        }
    }
}
