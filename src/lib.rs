//! mailwarrant: the corporate directory as the authority for who may send
//! mail, and how much.
//!
//! The library holds every rule; `main.rs` is a thin CLI over it. Read
//! `ARCHITECTURE.md` for the codemap and the invariants.
#![forbid(unsafe_code)]

pub mod audit_log;
pub mod auth;
pub mod config;
pub mod directory;
pub mod http;
pub mod identity;
pub mod mailer;
pub mod metrics;
pub mod password;
pub mod policy;
pub mod policy_service;
pub mod protocols;
pub mod ratelimit;
pub mod reminders;
pub mod serve;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
