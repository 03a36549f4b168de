//! Milter (sendmail/Postfix mail filter protocol, version 6): the front end
//! that sees the message itself, for the checks the policy delegation
//! protocol cannot make — the header `From:` spoof check and the
//! attachment rules.
//!
//! Postfix connects once per SMTP session (`smtpd_milters =
//! inet:127.0.0.1:10050` or `unix:/path`), negotiates, and sends for each
//! message the MAIL macros (`{auth_authen}`), the envelope, the headers and
//! the body in chunks; mailwarrant answers only at end of message, with
//! `continue` or `550 5.7.1 … (ref …)`. The decision is the policy
//! service's, the same evaluator as policy delegation: the milter holds no
//! rule.
//!
//! [`codec`] frames packets (no I/O), [`headers`] reads `From:`/`Sender:`,
//! [`mime`] walks the body as it streams, [`session`] turns commands into
//! one [`SendRequest`](crate::policy_service::SendRequest) per message (no
//! sockets), [`listener`] owns the sockets.
//!
//! Rate limits: by default the milter neither reads nor charges the
//! counters (`[milter] charge_rate_limits = false`), because the policy
//! service charges at END-OF-MESSAGE and a message must be counted once.
//! Set it to `true` when the milter is the only front end.

pub mod codec;
pub mod headers;
pub mod listener;
pub mod mime;
pub mod session;
