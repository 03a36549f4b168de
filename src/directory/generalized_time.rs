//! LDAP GeneralizedTime (`20260101120000Z`, RFC 4517 §3.3.13), as ppolicy
//! writes `pwdChangedTime`.
//!
//! A value we cannot read is an error, never "not expired".

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a GeneralizedTime (YYYYMMDDHHMMSS[.f]Z)")]
pub struct TimeError(pub String);

/// Formats an instant as `YYYYMMDDHHMMSSZ` (UTC), as ppolicy writes
/// `pwdChangedTime`.
pub fn format(at: OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses UTC values (`Z`); fractions are dropped, offsets refused.
pub fn parse(text: &str) -> Result<OffsetDateTime, TimeError> {
    let err = || TimeError(text.chars().take(40).collect());
    let body = text.strip_suffix('Z').ok_or_else(err)?;
    let body = body.split(['.', ',']).next().unwrap_or_default();
    if !(body.len() == 14 || body.len() == 12 || body.len() == 10) || !body.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let num = |range: std::ops::Range<usize>| body.get(range).map_or(Ok(0), |s| s.parse::<u16>().map_err(|_| err()));
    let year = num(0..4)? as i32;
    let month = Month::try_from(num(4..6)? as u8).map_err(|_| err())?;
    let date = Date::from_calendar_date(year, month, num(6..8)? as u8).map_err(|_| err())?;
    let clock = Time::from_hms(num(8..10)? as u8, num(10..12)? as u8, num(12..14)? as u8).map_err(|_| err())?;
    Ok(PrimitiveDateTime::new(date, clock).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn reads_ppolicy_values() {
        assert_eq!(parse("20260101120000Z"), Ok(datetime!(2026-01-01 12:00:00 UTC)));
        assert_eq!(parse("20260101120000.123Z"), Ok(datetime!(2026-01-01 12:00:00 UTC)));
        assert!(parse("20261301120000Z").is_err());
        assert!(parse("20260101120000+0100").is_err());
        assert!(parse("20260230000000Z").is_err());
        assert!(parse("").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }
    }
}
