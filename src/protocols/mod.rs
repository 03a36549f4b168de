//! Wire protocols: each decodes its bytes, asks the core, encodes the
//! answer. No rule lives here.

pub mod policy_delegation;
