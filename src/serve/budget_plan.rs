//! Which listeners this process runs, with their caps fitted to the
//! descriptor budget ([`super::budget`]).

use super::activation::Inherited;
use super::budget::{self, BudgetError};
use crate::config::listener::ListenerSettings;
use crate::config::Config;

/// Every listener that will serve, by its systemd name.
pub struct Plan {
    listeners: Vec<ListenerSettings>,
}

impl Plan {
    /// The configured listeners (and those systemd passed sockets for),
    /// caps lowered to fit `limit`; each lowering is logged.
    pub fn new(config: &Config, inherited: &Inherited, limit: u64) -> Result<Plan, BudgetError> {
        let mut candidates = vec![config.auth.dovecot.listener.clone(), config.auth.saslauthd.listener.clone()];
        if config.policy.is_some() {
            candidates.extend(config.policy.as_ref().map(|p| p.listener.clone()));
            candidates.extend(config.milter.as_ref().map(|m| m.listener.clone()));
        }
        candidates.extend(config.http.as_ref().map(|h| h.listener.clone()));
        candidates.extend(config.ops.as_ref().map(|o| o.listener.clone()));
        let mut listeners: Vec<ListenerSettings> =
            candidates.into_iter().filter(|l| !l.is_empty() || inherited.has(l.fd_name)).collect();
        for line in budget::fit(&mut listeners, limit)? {
            tracing::warn!("{line}");
        }
        let total: usize = listeners.iter().map(|l| l.max_connections).sum();
        tracing::info!(open_file_limit = limit, connections = total, reserve = budget::RESERVE, "descriptor budget");
        Ok(Plan { listeners })
    }

    /// The listener named `fd_name`, when it serves.
    pub fn get(&self, fd_name: &str) -> Option<&ListenerSettings> {
        self.listeners.iter().find(|l| l.fd_name == fd_name)
    }
}
