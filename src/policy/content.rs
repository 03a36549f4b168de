//! What only a front end that sees the message itself (the milter, or an
//! HTTP caller describing a message) knows: the header senders and the
//! attachments. The policy and delegation front end never has these, so
//! the rules that need them are skipped when [`MessageFacts::content`]
//! is `None`.
//!
//! [`MessageFacts::content`]: super::MessageFacts::content

use serde::Serialize;

use crate::identity::Address;

/// The message content, as far as the send rules care.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContentFacts {
    /// The `From:` and `Sender:` headers; `None` when the caller did not
    /// look at headers (an HTTP check that gave no `header_from`).
    pub senders: Option<HeaderSenders>,
    /// `None` when the caller did not look at the body.
    pub attachments: Option<AttachmentSummary>,
}

/// The mailboxes a reader sees as the author of the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HeaderSenders {
    /// Exactly one `From:` header that parsed, and at most one `Sender:`.
    Parsed { from: Vec<Address>, sender: Option<Address> },
    /// No `From:` header at all.
    Missing,
    /// Several `From:` (or several `Sender:`) headers.
    Repeated,
    /// A header that does not parse as a mailbox list; the raw text,
    /// shortened, for the audit line.
    Unparsable(String),
}

/// Attachments found in the MIME structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttachmentSummary {
    pub count: u32,
    /// Decoded size of the largest attachment, in bytes (an estimate from
    /// the encoded size where the walker does not decode).
    pub largest: u64,
}
