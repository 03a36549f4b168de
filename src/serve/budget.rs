//! The descriptor budget: every listener's connection cap must fit in the
//! process's open-file limit, with room left for everything else, so no
//! front end can take the descriptors another needs (1 100 idle HTTP
//! connections must not stop Postfix's AUTH and policy connections).
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit. When the
//! caps (each connection is one descriptor) plus [`RESERVE`] exceed it,
//! every cap is lowered in proportion and each lowered one is logged with
//! what to do; when even one connection per listener does not fit, the
//! service refuses to start.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::config::listener::ListenerSettings;

/// Descriptors kept for what is not a client connection: the listening
/// sockets, directory and Redis connections, the SQLite files, the audit
/// log, systemd's and the runtime's own.
pub const RESERVE: u64 = 128;

#[derive(Debug, thiserror::Error)]
#[error(
    "the open-file limit is {limit}: after {RESERVE} descriptors kept for the directory, the store and the logs, \
     {listeners} listener(s) cannot each get a connection; raise it (systemd LimitNOFILE=, ulimit -n)"
)]
pub struct BudgetError {
    pub limit: u64,
    pub listeners: usize,
}

/// Raises the soft open-file limit to the hard one; returns the limit in
/// force (`u64::MAX` when unlimited).
pub fn raise_descriptor_limit() -> u64 {
    let current = getrlimit(Resource::Nofile);
    let raised = Rlimit { current: current.maximum, maximum: current.maximum };
    if current.current != current.maximum {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit to its hard limit");
            return current.current.unwrap_or(u64::MAX);
        }
    }
    current.maximum.unwrap_or(u64::MAX)
}

/// Lowers the caps of `listeners` until their sum fits in `limit` less
/// the reserve. Returns a line per lowered listener for the log.
pub fn fit(listeners: &mut [ListenerSettings], limit: u64) -> Result<Vec<String>, BudgetError> {
    let available = limit.saturating_sub(RESERVE);
    let wanted: u64 = listeners.iter().map(|l| l.max_connections as u64).sum();
    if wanted <= available {
        return Ok(Vec::new());
    }
    if (listeners.len() as u64) > available {
        return Err(BudgetError { limit, listeners: listeners.len() });
    }
    let mut caps: Vec<u64> =
        listeners.iter().map(|l| ((l.max_connections as u64 * available) / wanted).max(1)).collect();
    // Rounding up to one connection may overshoot: take from the largest.
    while caps.iter().sum::<u64>() > available {
        if let Some(largest) = caps.iter_mut().max() {
            *largest -= 1;
        }
    }
    let mut lowered = Vec::new();
    for (listener, cap) in listeners.iter_mut().zip(caps) {
        if (cap as usize) < listener.max_connections {
            lowered.push(format!(
                "{}: max_connections lowered from {} to {cap} to fit the open-file limit of {limit} \
                 (raise LimitNOFILE= or lower the caps to silence this)",
                listener.fd_name, listener.max_connections
            ));
            listener.max_connections = cap as usize;
        }
    }
    Ok(lowered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::DOVECOT_DEFAULTS;
    use crate::config::http::HTTP_DEFAULTS;
    use crate::config::milter::MILTER_DEFAULTS;
    use crate::config::policy::POLICY_DEFAULTS;

    fn all() -> Vec<ListenerSettings> {
        [DOVECOT_DEFAULTS, POLICY_DEFAULTS, MILTER_DEFAULTS, HTTP_DEFAULTS]
            .iter()
            .map(ListenerSettings::defaults)
            .collect()
    }

    #[test]
    fn caps_that_fit_are_kept() {
        let mut l = all();
        assert!(fit(&mut l, 1 << 20).unwrap().is_empty());
        assert_eq!(l[0].max_connections, 4096);
    }

    #[test]
    fn caps_that_do_not_fit_are_lowered_in_proportion() {
        let mut l = all();
        let lowered = fit(&mut l, 1024).unwrap();
        assert_eq!(lowered.len(), 4, "{lowered:?}");
        let sum: usize = l.iter().map(|l| l.max_connections).sum();
        assert!(sum as u64 <= 1024 - RESERVE, "{sum}");
        assert!(l[0].max_connections > l[3].max_connections, "dovecot keeps the largest share");
        assert!(l.iter().all(|l| l.max_connections >= 1));
        assert!(lowered[0].starts_with("dovecot-auth: max_connections lowered from 4096 to "), "{}", lowered[0]);
    }

    #[test]
    fn a_limit_below_the_reserve_refuses_to_start() {
        let mut l = all();
        let e = fit(&mut l, RESERVE + 2).unwrap_err().to_string();
        assert!(e.contains("LimitNOFILE"), "{e}");
        assert_eq!(fit(&mut l, RESERVE + 4).unwrap().len(), 4);
        assert!(l.iter().all(|l| l.max_connections == 1));
    }
}
