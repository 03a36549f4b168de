//! Wire protocols of the front ends. Each parses, calls the core, and
//! formats; none decides anything itself.

pub mod accept;
pub mod bind;
pub mod dovecot_auth;
pub mod milter;
pub mod policy_delegation;
pub mod saslauthd;
pub mod timed;
