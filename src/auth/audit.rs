//! One audit line per AUTH decision.
//!
//! Stable field names (`login`, `user`, `client`, `protocol`, `outcome`,
//! `reason`, `latency_ms`) under the `mailwarrant::audit` target, so log
//! pipelines can key on them. What the client typed is escaped (CR, LF,
//! TAB, every control character, and backslash) before it reaches the log:
//! a login like `x\nAUTH OK user=admin` must not forge a second line. A
//! password or a SASL payload is never an argument here.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::{AuthDecision, AuthRequest, Protocol};
use crate::audit_log::{clip, AuditLine, AuditLog};

/// Longest typed login written to the log; the rest is cut.
const MAX_LOGGED_LOGIN: usize = 128;

/// A user-supplied string made safe for one log line.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_LOGGED_LOGIN {
                return f.write_str("…");
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// A client address, empty when unknown; formatted only when the line is
/// written (an AUTH whose audit level is off allocates nothing here).
struct Client(Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => Ok(()),
        }
    }
}

/// The decision's line in the JSON audit file, and its metric.
pub fn write_line(log: &AuditLog, request: &AuthRequest, decision: &AuthDecision, latency: Duration) {
    crate::metrics::auth_decision(request.protocol.as_str(), decision.kind.as_str(), decision.reason.as_str());
    if !log.is_enabled() {
        return;
    }
    let login = decision.login.as_ref().map(|l| l.as_str()).unwrap_or(&request.login);
    log.write(&AuditLine {
        time: time::OffsetDateTime::now_utc(),
        kind: "auth",
        front_end: request.protocol.as_str(),
        login: Some(clip(login)),
        client: request.client.map(|c| c.to_string()),
        outcome: decision.kind.as_str(),
        rule: decision.reason.as_str().to_owned(),
        reference: None,
        stage: None,
        sender: None,
        recipient: None,
        observed: Vec::new(),
        latency_ms: Some(latency.as_secs_f64() * 1000.0),
    });
}

/// Writes the decision's audit line.
pub fn record(typed: &str, client: Option<IpAddr>, protocol: Protocol, decision: &AuthDecision, latency: Duration) {
    let user = decision.login.as_ref().map(|l| l.as_str()).unwrap_or("");
    tracing::info!(
        target: "mailwarrant::audit",
        login = %Escaped(typed),
        user = %Escaped(user),
        client = %Client(client),
        protocol = protocol.as_str(),
        outcome = decision.kind.as_str(),
        reason = decision.reason.as_str(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "auth decision"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(Escaped("alice").to_string(), "alice");
        assert_eq!(Escaped("x\nAUTH OK\r\t\\").to_string(), "x\\nAUTH OK\\r\\t\\\\");
        assert_eq!(Escaped("a\u{0}b\u{1b}[31m").to_string(), "a\\u{0}b\\u{1b}[31m");
        assert_eq!(Escaped(&"y".repeat(500)).to_string().chars().count(), MAX_LOGGED_LOGIN + 1);
    }
}
