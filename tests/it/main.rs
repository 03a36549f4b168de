//! One integration-test binary (links once): each module drives the
//! library or the built binary against real parts.

mod cli;
mod config;
mod ldap;
mod ldif;
mod password_browser;
mod password_http;
mod password_ldif;
mod password_slapd;
mod postfix;
mod reminders;
