//! IANA time-zone names in the config (`reminders.time_zone`,
//! `policy.time_zone`), read from the system's tz database.

/// The zone named `name`, or an error telling how to write one.
pub fn parse_time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|e| format!("{e}; write an IANA name such as \"Europe/Berlin\""))
}
