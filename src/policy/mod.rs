//! Send policy: which directory groups get which profile, and whether a
//! message may go.
//!
//! Architecture invariant: nothing in this module does I/O or reads the
//! clock. Identity, list membership, counter readings and `now` are
//! arguments, so every rule is tested with plain values. The I/O around it
//! (directory, counters, audit) lives in `policy_service`.
//!
//! Flow: [`resolve::resolve`] turns an identity into a [`ResolvedPolicy`]
//! (each field with the profile and group that set it), then
//! [`evaluate::evaluate`] turns a request into a [`Decision`] naming the
//! rule that decided.

pub mod content;
pub mod decision;
pub mod evaluate;
pub mod profile;
pub mod resolve;
pub mod window;

pub use content::{AttachmentSummary, ContentFacts, HeaderSenders};
pub use decision::{Decision, Finding, ReplyCode, RuleKind, Verdict};
pub use evaluate::{evaluate, CounterReading, MessageFacts, RecipientFacts, Sender, Stage};
pub use profile::{
    Counted, LimitAction, LimitSubject, LocalPartMatch, Mode, PolicySet, Profile, ProfileFields, RateLimit,
    DEFAULT_PROFILE,
};
pub use resolve::{resolve, ResolvedPolicy, Source, Sourced};

#[cfg(test)]
pub(crate) mod fixtures;
