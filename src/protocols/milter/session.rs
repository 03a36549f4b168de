//! One milter connection's state machine: commands in, replies out, and at
//! end of message one [`SendRequest`] for the policy service. No sockets
//! and no service: [`Session::feed`] returns a [`Step`], the listener does
//! the I/O and calls the service, and [`Session::verdict`] maps the outcome
//! onto a reply — so every mapping here is tested with plain values.
//!
//! Negotiation (protocol version 6): the filter asks the MTA not to send
//! CONNECT, HELO, DATA, end-of-headers and unknown commands, and not to wait
//! for replies to MAIL, RCPT, headers and body chunks — only the end of the
//! message is answered. RCPT is still sent (to count recipients), headers
//! feed the `From:` check and the MIME walk, body chunks feed the walk.
//! Flags the MTA does not offer are not requested, and any command that
//! still arrives is answered `continue` unless its reply was waived.
//! With `SMFIF_SETSYMLIST` the MTA is asked for `{auth_authen}` and
//! `{client_addr}` at MAIL and `i` (queue id) at end of message.

use super::codec::*;
use super::headers::SenderHeaders;
use super::mime::MimeWalker;
use crate::policy::{ContentFacts, Stage};
use crate::policy_service::{Outcome, SendRequest};

/// Stages skipped.
pub const SKIP: u32 = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NOUNKNOWN;
/// Replies waived.
pub const NO_REPLY: u32 = SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_HDR
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;
/// Macros asked for at MAIL.
pub const MAIL_MACROS: &str = "{auth_authen} {client_addr}";
/// Macros asked for at end of message.
pub const EOM_MACROS: &str = "i {client_addr}";
/// `policy_context` of milter requests: `[policy.unauthenticated_by_context]
/// milter = "dunno"` lets unauthenticated (inbound) mail through the milter
/// while the policy service still refuses it.
pub const POLICY_CONTEXT: &str = "milter";

/// What the listener does next.
#[derive(Debug)]
pub enum Step {
    Reply(Reply),
    /// The MTA expects no reply.
    Silent,
    /// Ask the policy service, then send [`Session::verdict`].
    Decide(Box<SendRequest<'static>>),
    Close,
}

/// The message being received.
#[derive(Default)]
struct Message {
    auth: Option<String>,
    queue_id: Option<String>,
    sender: Option<String>,
    recipients: u32,
    headers: SenderHeaders,
    walker: MimeWalker,
    body_started: bool,
    size: u64,
}

pub struct Session {
    /// The protocol flags agreed (which replies are waived).
    agreed: u32,
    client: Option<String>,
    message: Message,
    /// Distinguishes this connection's messages in the rate-limit once-key
    /// when the MTA gives no queue id.
    id: u64,
    seq: u64,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session { agreed: 0, client: None, message: Message::default(), id: rand::random(), seq: 0 }
    }

    fn reply_unless(&self, waived: u32) -> Step {
        if self.agreed & waived != 0 {
            Step::Silent
        } else {
            Step::Reply(Reply::Continue)
        }
    }

    /// Handles one command.
    pub fn feed(&mut self, command: Command) -> Step {
        match command {
            Command::OptNeg { version, actions, protocol } => {
                let version = version.min(VERSION);
                self.agreed = protocol & (SKIP | NO_REPLY);
                let symlist = version >= 6 && actions & SMFIF_SETSYMLIST != 0;
                let macros = if symlist {
                    vec![(SMFIM_ENVFROM, MAIL_MACROS.to_owned()), (SMFIM_EOM, EOM_MACROS.to_owned())]
                } else {
                    Vec::new()
                };
                Step::Reply(Reply::OptNeg {
                    version,
                    actions: if symlist { SMFIF_SETSYMLIST } else { 0 },
                    protocol: self.agreed,
                    macros,
                })
            }
            Command::Macro { pairs, .. } => {
                for (name, value) in pairs {
                    let value = Some(value).filter(|v| !v.is_empty());
                    match name.as_str() {
                        "{auth_authen}" => self.message.auth = value,
                        "{client_addr}" => self.client = value.or(self.client.take()),
                        "i" => self.message.queue_id = value,
                        _ => {}
                    }
                }
                Step::Silent
            }
            Command::Connect { address, .. } => {
                self.client = address;
                self.reply_unless(SMFIP_NR_CONN)
            }
            Command::Helo(_) => self.reply_unless(SMFIP_NR_HELO),
            Command::Mail(args) => {
                let raw = args.first().map(String::as_str).unwrap_or("");
                let bare = raw.trim().strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(raw.trim());
                self.message.sender = Some(bare.to_owned());
                self.reply_unless(SMFIP_NR_MAIL)
            }
            Command::Rcpt(_) => {
                self.message.recipients = self.message.recipients.saturating_add(1);
                self.reply_unless(SMFIP_NR_RCPT)
            }
            Command::Data => self.reply_unless(SMFIP_NR_DATA),
            Command::Header { name, value } => {
                let m = &mut self.message;
                m.size = m.size.saturating_add((name.len() + value.len() + 4) as u64);
                m.headers.add(&name, &value);
                m.walker.header(&name, &value);
                self.reply_unless(SMFIP_NR_HDR)
            }
            Command::EndOfHeaders => {
                self.start_body();
                self.reply_unless(SMFIP_NR_EOH)
            }
            Command::Body(chunk) => {
                self.body(&chunk);
                self.reply_unless(SMFIP_NR_BODY)
            }
            Command::EndOfBody(chunk) => {
                self.body(&chunk);
                Step::Decide(Box::new(self.request()))
            }
            Command::Abort => {
                self.message = Message::default();
                Step::Silent
            }
            Command::QuitNewConnection => {
                self.message = Message::default();
                self.client = None;
                Step::Silent
            }
            Command::Quit => Step::Close,
            Command::Unknown(_) => self.reply_unless(SMFIP_NR_UNKN),
        }
    }

    fn start_body(&mut self) {
        if !self.message.body_started {
            self.message.body_started = true;
            self.message.size = self.message.size.saturating_add(2);
            self.message.walker.end_of_headers();
        }
    }

    fn body(&mut self, chunk: &[u8]) {
        self.start_body();
        self.message.size = self.message.size.saturating_add(chunk.len() as u64);
        self.message.walker.feed(chunk);
    }

    /// The end-of-message request; the message state starts afresh.
    fn request(&mut self) -> SendRequest<'static> {
        let m = std::mem::take(&mut self.message);
        self.seq += 1;
        let instance = match &m.queue_id {
            Some(q) => format!("milter.{q}"),
            None => format!("milter.{:016x}.{}", self.id, self.seq),
        };
        SendRequest {
            stage: Some(Stage::EndOfMessage),
            sasl_username: m.auth.map(Into::into),
            sender: Some(m.sender.unwrap_or_default().into()),
            recipient: None,
            recipient_count: m.recipients,
            size: m.size,
            client_address: self.client.clone().map(Into::into),
            instance: Some(instance.into()),
            queue_id: m.queue_id.map(Into::into),
            policy_context: Some(POLICY_CONTEXT.into()),
            content: Some(ContentFacts { senders: Some(m.headers.finish()), attachments: Some(m.walker.finish()) }),
        }
    }

    /// The reply to end of message.
    pub fn verdict(outcome: &Outcome) -> Reply {
        match (&outcome.decision.refusal, outcome.decision.client_text()) {
            (Some(f), Some(text)) => Reply::ReplyCode(format!("{} {text}", f.code)),
            _ => Reply::Continue,
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
