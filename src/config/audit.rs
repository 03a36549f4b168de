//! `[audit]`: the structured audit log, one JSON object per line for every
//! AUTH and policy decision of every front end. Absent: no file (the
//! `mailwarrant::audit` log target and the policy trail in the store
//! still exist).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::Validate;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// File the JSON lines are appended to, relative to the config file.
    /// Reopened on SIGHUP, so logrotate can move it and then
    /// `systemctl reload mailwarrant` (the package's logrotate file does).
    pub path: PathBuf,
    /// Lines held in memory while the disk is slow; more are dropped
    /// (and counted in `mailwarrant_audit_lines_dropped_total`) rather
    /// than slowing a mail server's request.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_queue() -> usize {
    65_536
}

#[derive(Clone, Debug)]
pub struct AuditSettings {
    pub path: PathBuf,
    pub queue: usize,
}

impl Validate for RawAudit {
    type Output = AuditSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<AuditSettings> {
        if self.path.as_os_str().is_empty() {
            p.error("audit.path", "must name a file");
            return None;
        }
        if self.queue == 0 {
            p.error("audit.queue", "must be at least 1");
            return None;
        }
        Some(AuditSettings { path: base_dir.join(&self.path), queue: self.queue })
    }
}
