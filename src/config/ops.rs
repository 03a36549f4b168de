//! `[ops]`: a listener of its own for `/healthz`, `/readyz` and
//! `/metrics`, bound where only monitoring reaches it; with it, `[http]`
//! no longer serves them. Absent: they are on the `[http]` listener.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listener::{ListenerDefaults, ListenerSettings};
use super::problems::Problems;
use super::Validate;

crate::listener_section! {
/// `listen` defaults to `127.0.0.1:8041`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOps {}
}

/// Scrapers and probes: a few connections, quick requests.
pub const OPS_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: "ops",
    client: Some("monitoring"),
    listen: &["127.0.0.1:8041"],
    tcp: true,
    max_connections: 64,
    max_connections_per_client: 0,
    handshake_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};

/// The validated `[ops]` section.
#[derive(Clone, Debug)]
pub struct OpsSettings {
    pub listener: ListenerSettings,
}

impl Validate for RawOps {
    type Output = OpsSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<OpsSettings> {
        Some(OpsSettings { listener: self.listener().validate_as(p, base_dir, "ops", &OPS_DEFAULTS)? })
    }
}
