//! The Cyrus saslauthd protocol (server side) on a UNIX socket, for Cyrus
//! SASL clients (`pwcheck_method: saslauthd`) and Exim's `saslauthd`
//! condition.
//!
//! ```text
//! C> 00 05 "alice" 00 10 "Alice-Demo-2026!" 00 04 "smtp" 00 00
//! S> 00 02 "OK"                       (or 00 18 "NO Authentication failed")
//! (server closes: one request per connection)
//! ```
//!
//! The realm, when given, is appended as `login@realm` only if the login
//! has no `@` (saslauthd `-r` behaviour); the core then resolves it like
//! any typed login. The protocol cannot say "temporary": outages answer
//! `NO` with the temporary text.

pub mod codec;
pub mod listener;

pub use listener::SaslauthdServer;
