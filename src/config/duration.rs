//! Durations written as `"30s"`, `"15m"`, `"1d"`.

use std::time::Duration;

use super::problems::Problems;

/// Parses a human duration, recording a problem at `path` when it is bad.
pub fn parse(p: &mut Problems, path: &str, text: &str) -> Option<Duration> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            p.error(path, format!("{text:?} is not a duration ({e}); write e.g. \"30s\", \"15m\", \"1d\""));
            None
        }
    }
}
