//! Reads the directory's own lockout settings, for `check-config
//! --connect` and the start of `serve` (the AUTH throttle must stay below
//! them).
//!
//! - OpenLDAP: every `pwdPolicy` entry under the base the service account
//!   can read (the default policy and those users point at with
//!   `pwdPolicySubentry`): `pwdLockout`, `pwdMaxFailure`,
//!   `pwdFailureCountInterval`.
//! - AD: the domain object's `lockoutThreshold` and
//!   `lockoutObservationWindow`, and every fine-grained password settings
//!   object (`msDS-PasswordSettings`) readable under the base.
//!   Intervals are negative counts of 100 ns.

use std::time::Duration;

use ldap3::Scope;

use super::pool::Search;
use super::LdapDirectory;
use crate::directory::{LockoutPolicy, Result};

const PPOLICY_FILTER: &str = "(objectClass=pwdPolicy)";
const PPOLICY_ATTRIBUTES: [&str; 3] = ["pwdLockout", "pwdMaxFailure", "pwdFailureCountInterval"];
const DOMAIN_ATTRIBUTES: [&str; 2] = ["lockoutThreshold", "lockoutObservationWindow"];
const FGPP_FILTER: &str = "(objectClass=msDS-PasswordSettings)";
const FGPP_ATTRIBUTES: [&str; 2] = ["msDS-LockoutThreshold", "msDS-LockoutObservationWindow"];

impl LdapDirectory {
    pub(super) async fn read_lockout_policies(&self) -> Result<Vec<LockoutPolicy>> {
        // The user base is often below the entries that hold the rules
        // (the AD domain object, ou=policies): search from each naming
        // context the server announces.
        let roots = self.naming_contexts().await?;
        let mut found = Vec::new();
        for root in roots.iter().filter(|r| !r.is_empty()) {
            if self.is_active_directory() {
                let domain = self.entries(root, Scope::Base, "(objectClass=domain)", &DOMAIN_ATTRIBUTES).await?;
                let fine = self.entries(root, Scope::Subtree, FGPP_FILTER, &FGPP_ATTRIBUTES).await?;
                found.extend(domain.into_iter().chain(fine).map(|(dn, get)| active_directory(dn, &get)));
            } else {
                let entries = self.entries(root, Scope::Subtree, PPOLICY_FILTER, &PPOLICY_ATTRIBUTES).await?;
                found.extend(entries.into_iter().map(|(dn, get)| ppolicy(dn, &get)));
            }
        }
        found.sort_by(|a, b| a.source.cmp(&b.source));
        found.dedup();
        Ok(found)
    }

    /// Every naming context of the RootDSE (all values, not only the first).
    async fn naming_contexts(&self) -> Result<Vec<String>> {
        let attrs = vec!["namingContexts".to_owned()];
        let search =
            Search { base: "", scope: Scope::Base, filter: "(objectClass=*)", attrs: &attrs, size_limit: None };
        let entries = self.reader_pool().search(&search).await?;
        Ok(entries
            .into_iter()
            .flat_map(|e| e.attrs.into_iter().filter(|(k, _)| k.eq_ignore_ascii_case("namingContexts")))
            .flat_map(|(_, values)| values)
            .collect())
    }

    /// `(dn, attribute → first value)` of each entry found.
    async fn entries(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
    ) -> Result<Vec<(String, std::collections::HashMap<String, String>)>> {
        let attrs: Vec<String> = attributes.iter().map(|a| (*a).to_owned()).collect();
        let search = Search { base, scope, filter, attrs: &attrs, size_limit: None };
        let entries = self.reader_pool().search(&search).await?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let first = e
                    .attrs
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.into_iter().next()?)))
                    .collect();
                (e.dn, first)
            })
            .collect())
    }
}

fn ppolicy(source: String, get: &std::collections::HashMap<String, String>) -> LockoutPolicy {
    let number = |name: &str| get.get(&name.to_ascii_lowercase()).and_then(|v| v.trim().parse::<u64>().ok());
    let locks = get.get("pwdlockout").is_some_and(|v| v.trim().eq_ignore_ascii_case("TRUE"));
    let threshold = if locks { number("pwdMaxFailure").unwrap_or(0).min(u64::from(u32::MAX)) as u32 } else { 0 };
    // 0 (or absent): failures are kept until a successful bind.
    let observation = number("pwdFailureCountInterval").filter(|s| *s > 0).map(Duration::from_secs);
    LockoutPolicy { source, threshold, observation }
}

fn active_directory(source: String, get: &std::collections::HashMap<String, String>) -> LockoutPolicy {
    let number = |name: &str| get.get(&name.to_ascii_lowercase()).and_then(|v| v.trim().parse::<i64>().ok());
    let (threshold, window) = if get.contains_key("msds-lockoutthreshold") {
        (number("msDS-LockoutThreshold"), number("msDS-LockoutObservationWindow"))
    } else {
        (number("lockoutThreshold"), number("lockoutObservationWindow"))
    };
    LockoutPolicy {
        source,
        threshold: threshold.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        observation: window.and_then(interval),
    }
}

/// An AD interval: a negative count of 100 ns units (`-18000000000` is 30
/// minutes). 0 would mean "never"; AD forbids it for the observation
/// window, so it reads as unknown.
fn interval(ticks: i64) -> Option<Duration> {
    let ticks = ticks.checked_neg().filter(|t| *t > 0)?;
    Some(Duration::from_nanos((ticks as u64).saturating_mul(100)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect()
    }

    #[test]
    fn ppolicy_entries_read_as_lockout_rules() {
        let p = ppolicy(
            "cn=default".into(),
            &map(&[("pwdLockout", "TRUE"), ("pwdMaxFailure", "10"), ("pwdFailureCountInterval", "900")]),
        );
        assert_eq!(p.threshold, 10);
        assert_eq!(p.observation, Some(Duration::from_secs(900)));
        assert_eq!(ppolicy("x".into(), &map(&[("pwdLockout", "FALSE"), ("pwdMaxFailure", "3")])).threshold, 0);
        assert_eq!(ppolicy("x".into(), &map(&[("pwdLockout", "TRUE"), ("pwdMaxFailure", "3")])).observation, None);
    }

    #[test]
    fn ad_intervals_are_negative_hundreds_of_nanoseconds() {
        let p = active_directory(
            "dc=corp".into(),
            &map(&[("lockoutThreshold", "10"), ("lockoutObservationWindow", "-18000000000")]),
        );
        assert_eq!((p.threshold, p.observation), (10, Some(Duration::from_secs(1800))));
        let fine = active_directory(
            "cn=pso".into(),
            &map(&[("msDS-LockoutThreshold", "5"), ("msDS-LockoutObservationWindow", "-6000000000")]),
        );
        assert_eq!((fine.threshold, fine.observation), (5, Some(Duration::from_secs(600))));
        assert_eq!(interval(0), None);
        assert_eq!(interval(i64::MIN), None);
    }
}
