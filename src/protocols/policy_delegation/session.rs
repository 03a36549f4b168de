//! One policy request → one `action=`. No sockets: the listener feeds
//! decoded requests and writes what comes back, so every mapping here is
//! tested with plain values.

use std::borrow::Cow;

use time::OffsetDateTime;

use super::codec::{Request, ACTION_DUNNO, ACTION_PREPEND};
use crate::policy::Stage;
use crate::policy_service::{Outcome, PolicyService, SendRequest};

/// The only request type Postfix sends.
pub const REQUEST_TYPE: &str = "smtpd_access_policy";
/// The header prepended to accepted mail when configured.
pub const POLICY_HEADER: &str = "X-Mailwarrant-Policy";

/// A request the session will not answer: the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a policy request (request={0:?})")]
    NotAPolicyRequest(String),
}

/// Postfix `protocol_state` values (SMTPD_POLICY_README).
pub fn stage(protocol_state: &str) -> Stage {
    match protocol_state {
        "CONNECT" => Stage::Connect,
        "EHLO" | "HELO" => Stage::Helo,
        "MAIL" => Stage::Mail,
        "RCPT" => Stage::Rcpt,
        "DATA" => Stage::Data,
        "END-OF-MESSAGE" => Stage::EndOfMessage,
        _ => Stage::Other,
    }
}

/// The protocol-neutral request. Missing numbers count as 0, as the
/// README allows; a non-empty attribute is kept as sent. One pass over
/// the attributes; the first of a repeated name wins, as with
/// [`Request::get`].
pub fn to_send_request<'a>(req: &'a Request) -> Result<SendRequest<'a>, SessionError> {
    #[derive(Default)]
    struct Seen<'a> {
        request: Option<&'a str>,
        protocol_state: Option<&'a str>,
        sasl_username: Option<&'a str>,
        sender: Option<&'a str>,
        recipient: Option<&'a str>,
        recipient_count: Option<&'a str>,
        size: Option<&'a str>,
        client_address: Option<&'a str>,
        instance: Option<&'a str>,
        queue_id: Option<&'a str>,
        policy_context: Option<&'a str>,
    }
    let mut seen = Seen::default();
    for (name, value) in req.attributes() {
        let slot = match name {
            "request" => &mut seen.request,
            "protocol_state" => &mut seen.protocol_state,
            "sasl_username" => &mut seen.sasl_username,
            "sender" => &mut seen.sender,
            "recipient" => &mut seen.recipient,
            "recipient_count" => &mut seen.recipient_count,
            "size" => &mut seen.size,
            "client_address" => &mut seen.client_address,
            "instance" => &mut seen.instance,
            "queue_id" => &mut seen.queue_id,
            "policy_context" => &mut seen.policy_context,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    match seen.request {
        Some(REQUEST_TYPE) => {}
        other => return Err(SessionError::NotAPolicyRequest(other.unwrap_or("").chars().take(64).collect())),
    }
    let text = |value: Option<&'a str>| value.filter(|v| !v.is_empty()).map(Cow::Borrowed);
    let stage = seen.protocol_state.map(stage);
    Ok(SendRequest {
        stage,
        sasl_username: text(seen.sasl_username),
        // `sender` is empty both for `MAIL FROM:<>` and before MAIL; the
        // stage tells them apart.
        sender: match stage {
            Some(Stage::Mail | Stage::Rcpt | Stage::Data | Stage::EndOfMessage) => {
                Some(Cow::Borrowed(seen.sender.unwrap_or("")))
            }
            _ => None,
        },
        recipient: text(seen.recipient),
        recipient_count: seen.recipient_count.and_then(|v| v.parse().ok()).unwrap_or(0),
        size: seen.size.and_then(|v| v.parse().ok()).unwrap_or(0),
        client_address: text(seen.client_address),
        instance: text(seen.instance),
        queue_id: text(seen.queue_id),
        policy_context: text(seen.policy_context),
        content: None,
    })
}

/// The `action=` value for an outcome; the common `DUNNO` is not
/// allocated.
pub fn action(outcome: &Outcome) -> Cow<'static, str> {
    match (&outcome.decision.refusal, outcome.decision.client_text()) {
        (Some(f), Some(text)) => format!("{} {text}", f.code).into(),
        _ => match (&outcome.profile, outcome.prepend) {
            (Some(profile), true) => format!("{ACTION_PREPEND} {POLICY_HEADER}: profile={profile}").into(),
            _ => ACTION_DUNNO.into(),
        },
    }
}

/// Per-connection state: the service and nothing else (requests are
/// independent; `instance` ties a message's requests together in the
/// counters, not here).
pub struct Session {
    service: PolicyService,
}

impl Session {
    pub fn new(service: PolicyService) -> Self {
        Self { service }
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Request, now: OffsetDateTime) -> Result<Cow<'static, str>, SessionError> {
        let send = to_send_request(req)?;
        let started = std::time::Instant::now();
        let outcome = self.service.check(&send, now).await;
        crate::metrics::observe_request(crate::metrics::POLICY, started.elapsed());
        Ok(action(&outcome))
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
