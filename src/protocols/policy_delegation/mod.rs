//! Postfix SMTP access policy delegation (SMTPD_POLICY_README).
//!
//! Postfix connects (`check_policy_service inet:127.0.0.1:10040` or
//! `unix:/path`), keeps the connection for many requests, and asks one
//! question at a time:
//!
//! ```text
//! C> request=smtpd_access_policy\n
//! C> protocol_state=RCPT\n
//! C> sasl_username=alice\n
//! C> sender=alice@example.com\n
//! C> recipient=bob@example.com\n
//! C> instance=4d4f.6b0a04dc.36c76.0\n
//! C> …\n
//! C> \n
//! S> action=DUNNO\n
//! S> \n
//! C> request=smtpd_access_policy\n
//! C> protocol_state=END-OF-MESSAGE\n
//! C> recipient_count=1\n
//! C> size=260\n
//! C> …\n
//! C> \n
//! S> action=450 4.7.1 rate limit user_messages_1d: 500/500 messages today, resets 00:00 UTC; rule rate_limit (ref 3f9c2a7b41d0)\n
//! S> \n
//! ```
//!
//! [`codec`] turns bytes into requests and replies into bytes (no I/O),
//! [`session`] maps a request onto the policy service and the decision
//! onto an `action=` (no sockets), [`listener`] owns the TCP and UNIX
//! sockets. Unknown attributes are ignored; oversized or garbled input
//! closes that connection only, without a reply, so Postfix retries and
//! then applies `smtpd_policy_service_default_action`.

pub mod codec;
pub mod listener;
pub mod session;
