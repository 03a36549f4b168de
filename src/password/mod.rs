//! The password policy engine: which rules a new password must meet, and
//! the verdict of each rule on one candidate.
//!
//! The rules are pure by design (ARCHITECTURE invariant 1): no I/O, no
//! clock — `now`,
//! the user's history hashes and the time of the last change come in as
//! arguments, so every rule is tested with a table and no fixtures. The
//! blocklist is loaded once at start-up ([`Blocklist::load`] reads the
//! file) and then consulted in memory. [`change`] is the flow around the
//! rules (directory, store) and the only part here that does I/O.
//!
//! A policy is a list of rules, each with the requirement shown before the
//! user types and the specific message shown when it fails. Policies are
//! per group ([`PolicySet::for_identity`]: highest priority first, first
//! match wins, the default last), like send profiles.
//!
//! Never log a candidate: nothing in this module formats one into a
//! message, and [`Candidate`] redacts itself in `Debug`.

pub mod blocklist;
pub mod change;
pub mod check;
pub mod context;
pub mod history;
pub mod policy;

pub use blocklist::Blocklist;
pub use change::{ChangeError, ChangeListener, ChangeRequest, ChangeResult, PasswordService, Refusal, Rules};
pub use check::{check, Facts, Outcome, Report, Strength, Verdict};
pub use context::UserContext;
pub use policy::{CharClass, PasswordPolicy, PatternRule, PolicySet};

/// A candidate password; its `Debug` never shows it.
#[derive(Clone, Copy)]
pub struct Candidate<'a>(pub &'a str);

impl std::fmt::Debug for Candidate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Candidate([redacted, {} chars])", self.0.chars().count())
    }
}
