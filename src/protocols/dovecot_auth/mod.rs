//! The Dovecot authentication protocol (server side), as Postfix
//! (`smtpd_sasl_type = dovecot`) and Exim (`driver = dovecot`) speak it.
//!
//! Spec: Dovecot `docs/developers/design/auth_protocol.md` (v1.3), checked
//! against Postfix `xsasl_dovecot_server.c`, Exim `auths/dovecot.c` and a
//! capture of Postfix 3.7 talking to Dovecot 2.3. A session:
//!
//! ```text
//! C> VERSION\t1\t0
//! C> CPID\t19791
//! S> VERSION\t1\t2
//! S> MECH\tPLAIN\tplaintext
//! S> MECH\tLOGIN\tplaintext
//! S> SPID\t17390                    (after MECH: Exim insists)
//! S> CUID\t20
//! S> COOKIE\t70311ea978ebeac7fad43d3e93fbbb73
//! S> DONE
//! C> AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAGFsaWNlLXB3
//! S> OK\t1\tuser=alice
//! C> AUTH\t2\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1
//! S> CONT\t2\tVXNlcm5hbWU6
//! C> CONT\t2\tYm9i
//! S> CONT\t2\tUGFzc3dvcmQ6
//! C> CONT\t2\tYm9iLXB3
//! S> FAIL\t2\tuser=bob\treason=Authentication failed
//! ```
//!
//! `OK` always carries `user=` with the canonical login (Postfix's
//! `sasl_username`, Exim's `$auth1`). Temporary failures close the
//! connection by default, because both MTAs answer every `FAIL` with 535
//! and only a lost connection with 454 (Postfix) or 435 (Exim).
//!
//! `codec` and `session` hold no sockets; only `listener` touches streams.

pub mod codec;
pub mod listener;
pub mod session;

pub use listener::DovecotAuthServer;
