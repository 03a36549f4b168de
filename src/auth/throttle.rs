//! Failure budgets: how many unproven passwords a login, a client network,
//! and a login from one client network may have checked.
//!
//! The throttle exists to keep a guessing virus from ever pushing the
//! directory's own lockout (OpenLDAP ppolicy `pwdMaxFailure`, AD
//! `lockoutThreshold`) over its threshold, which would lock the real user
//! out. Three rules make that hold whatever the attacker does:
//!
//! - **Reserved before the check.** A password that is not known to be
//!   right takes one unit of every budget *before* it is checked, in one
//!   atomic check-and-charge in the store ([`Store::incr_within`]: one
//!   transaction on SQLite, one script on Redis, shared by every instance).
//!   Forty concurrent guesses on forty connections get exactly `per_login`
//!   checks; the rest are refused unchecked. A right password hands its
//!   unit back.
//! - **Forgotten only after a quiet window.** A budget's count is forgotten
//!   `window` after its *last* failure ([`Expiry::AfterLast`]), the way AD
//!   forgets `badPwdCount` only after a `lockoutObservationWindow` without
//!   failures. Failures paced at any speed therefore never exceed
//!   `per_login` within any stretch of `window`, so with `window` at least
//!   the directory's observation window (ppolicy `pwdFailureCountInterval`)
//!   and `per_login` below its threshold, the directory never locks.
//! - **The source before the login.** A budget per (login, client network)
//!   is smaller than the login's, so one network guessing cannot spend the
//!   whole login budget, and the user's own device keeps its share.
//!
//! IPv6 clients are counted per /64 (one host usually owns a whole /64).
//!
//! When the store cannot answer, `store_error_action = "local"` (the
//! default) keeps budgets in this process: every reservation is mirrored
//! there all along, so an outage starts from this instance's recent
//! history, not from zero.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::auth::{StoreErrorAction, ThrottleSettings};
use crate::directory::LockoutPolicy;
use crate::store::local::LocalCounters;
use crate::store::{ChargeOutcome, Expiry, Increment, LogEvery, Store, StoreError};

/// Store key prefixes; stable, other tools read them.
pub const LOGIN_PREFIX: &str = "auth:fail:login:";
pub const CLIENT_PREFIX: &str = "auth:fail:client:";
pub const PAIR_PREFIX: &str = "auth:fail:pair:";

/// During a store outage every failure hits it: a line every 30 s.
static OUTAGE_LOG: LogEvery = LogEvery::new(Duration::from_secs(30));

/// Which budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// This login from this client network.
    LoginFromClient,
    /// This client network, all logins.
    Client,
    /// This login, from anywhere: the directory's own lockout is near.
    Login,
}

/// The answer to a reservation.
#[derive(Debug)]
pub enum Budget {
    /// One unit taken from every budget; hand it back with
    /// [`Throttle::refund`] when the password proves right.
    Reserved(Reservation),
    /// Nothing was taken: this budget has no unit left.
    Spent(Limit),
}

/// The units one attempt holds.
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<String>,
    /// Taken from the in-process fallback only (the store was down).
    local_only: bool,
}

pub struct Throttle {
    store: Arc<dyn Store>,
    settings: ThrottleSettings,
    local: Arc<LocalCounters>,
}

impl Throttle {
    /// `local` outlives reloads, so does what it remembers.
    pub fn new(store: Arc<dyn Store>, settings: ThrottleSettings, local: Arc<LocalCounters>) -> Self {
        Self { store, settings, local }
    }

    /// Takes one unit from the (login, client), client and login budgets,
    /// all or none.
    pub async fn reserve(&self, login_key: &str, client: Option<IpAddr>) -> Result<Budget, StoreError> {
        let increments = self.increments(login_key, client);
        let (outcome, local_only) = match self.store.incr_within(None, &increments).await {
            Ok(outcome) => {
                if matches!(outcome, ChargeOutcome::Charged(_)) {
                    // The mirror the outage falls back on: what the store
                    // took, without its limits.
                    self.local.incr_within(&unlimited(&increments));
                }
                (outcome, false)
            }
            Err(e) => {
                self.outage(&e)?;
                (self.local.incr_within(&increments), true)
            }
        };
        Ok(budget(outcome, increments, client.is_some(), local_only))
    }

    /// Hands a reservation back: the password was right (or never
    /// reached a check).
    pub async fn refund(&self, reservation: Reservation) {
        let window = self.settings.window;
        for key in &reservation.keys {
            self.local.incr(key, -1, window);
            if !reservation.local_only {
                if let Err(e) = self.store.incr(key, -1, window).await {
                    if OUTAGE_LOG.due() {
                        tracing::warn!(error = %e, "a failure budget was not handed back: store unavailable");
                    }
                }
            }
        }
    }

    /// The source budget already spent, if any: a cached right password
    /// is accepted despite a spent login budget, but not from a network
    /// that has spent its own (that would let it guess against the
    /// cache without bound).
    pub async fn source_spent(&self, login_key: &str, client: Option<IpAddr>) -> Result<Option<Limit>, StoreError> {
        let Some(ip) = client else { return Ok(None) };
        let (pair, net) = (pair_counter(login_key, ip), client_counter(ip));
        let read = tokio::join!(self.store.counter(&pair), self.store.counter(&net));
        let (pair, net) = match read {
            (Ok(p), Ok(n)) => (p, n),
            (Err(e), _) | (_, Err(e)) => {
                self.outage(&e)?;
                (self.local.counter(&pair), self.local.counter(&net))
            }
        };
        Ok(if pair >= i64::from(self.settings.per_login_client) {
            Some(Limit::LoginFromClient)
        } else if net >= i64::from(self.settings.per_client) {
            Some(Limit::Client)
        } else {
            None
        })
    }

    /// Clears a login's budget everywhere (an administrator's unlock);
    /// true when failures were counted. Budgets per (login, network)
    /// stay: an attacking network does not get a fresh allowance from an
    /// unlock.
    pub async fn unlock(&self, login_key: &str) -> Result<bool, StoreError> {
        let key = login_counter(login_key);
        // Read first: a budget whose units were all handed back (right
        // passwords) is still a key, at zero, and is not "live".
        let counted = self.store.counter(&key).await?;
        self.local.delete(&key);
        self.store.delete(&key).await?;
        Ok(counted > 0)
    }

    /// The login budget's current count (for the admin page and tests).
    pub async fn login_failures(&self, login_key: &str) -> Result<i64, StoreError> {
        self.store.counter(&login_counter(login_key)).await
    }

    fn increments(&self, login_key: &str, client: Option<IpAddr>) -> Vec<Increment> {
        let s = &self.settings;
        let budget = |key: String, limit: u32| Increment {
            key,
            delta: 1,
            limit: i64::from(limit),
            ttl: s.window,
            expiry: Expiry::AfterLast,
        };
        let mut out = Vec::with_capacity(3);
        if let Some(ip) = client {
            out.push(budget(pair_counter(login_key, ip), s.per_login_client));
            out.push(budget(client_counter(ip), s.per_client));
        }
        out.push(budget(login_counter(login_key), s.per_login));
        out
    }

    /// Logs a store failure; `Err` when AUTH must then answer "try later".
    fn outage(&self, e: &StoreError) -> Result<(), StoreError> {
        let local = self.settings.store_error_action == StoreErrorAction::Local;
        if OUTAGE_LOG.due() {
            if local {
                tracing::warn!(error = %e, "store unavailable: AUTH failure budgets kept in this process");
            } else {
                tracing::warn!(error = %e, "store unavailable: AUTH answers try-later for unproven passwords");
            }
        }
        if local {
            Ok(())
        } else {
            Err(StoreError::Unavailable(e.to_string()))
        }
    }
}

/// The same charges without limits: the mirror of what the store took.
fn unlimited(increments: &[Increment]) -> Vec<Increment> {
    increments.iter().map(|i| Increment { limit: i64::MAX, ..i.clone() }).collect()
}

fn budget(outcome: ChargeOutcome, increments: Vec<Increment>, has_client: bool, local_only: bool) -> Budget {
    match outcome {
        ChargeOutcome::Charged(_) | ChargeOutcome::AlreadyCharged => {
            Budget::Reserved(Reservation { keys: increments.into_iter().map(|i| i.key).collect(), local_only })
        }
        ChargeOutcome::Refused { index, .. } => Budget::Spent(match (has_client, index) {
            (true, 0) => Limit::LoginFromClient,
            (true, 1) => Limit::Client,
            _ => Limit::Login,
        }),
    }
}

/// What in the directory's lockout settings the budgets cannot keep below
/// its threshold: one sentence per problem, saying what to change.
pub fn lockout_risks(settings: &ThrottleSettings, policies: &[LockoutPolicy]) -> Vec<String> {
    let mut out = Vec::new();
    for p in policies.iter().filter(|p| p.threshold > 0) {
        if settings.per_login >= p.threshold {
            out.push(format!(
                "[auth.throttle] per_login = {} can reach the lockout threshold {} of {}: set it to at most {}",
                settings.per_login,
                p.threshold,
                p.source,
                p.threshold - 1
            ));
        }
        match p.observation {
            None => out.push(format!(
                "{} keeps failures until a successful bind (no failure count interval), so failures spread over                  time add up to its threshold {} whatever mailwarrant's window: give it an interval                  (ppolicy pwdFailureCountInterval)",
                p.source, p.threshold
            )),
            Some(observed) if observed > settings.window => out.push(format!(
                "[auth.throttle] window = {} is shorter than the {} for which {} remembers a failure: set the window                  to at least that",
                humantime::format_duration(settings.window),
                humantime::format_duration(observed),
                p.source
            )),
            Some(_) => {}
        }
    }
    out
}

fn login_counter(login_key: &str) -> String {
    format!("{LOGIN_PREFIX}{login_key}")
}

fn pair_counter(login_key: &str, ip: IpAddr) -> String {
    format!("{PAIR_PREFIX}{login_key}|{}", network(ip))
}

fn client_counter(ip: IpAddr) -> String {
    format!("{CLIENT_PREFIX}{}", network(ip))
}

/// The client network a budget counts: the address for IPv4, the /64 for
/// IPv6 (IPv4-mapped addresses count as IPv4).
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn clients_are_keyed_per_address_and_ipv6_per_64() {
        assert_eq!(client_counter("192.0.2.7".parse().unwrap()), "auth:fail:client:192.0.2.7");
        assert_eq!(client_counter("::ffff:192.0.2.7".parse().unwrap()), "auth:fail:client:192.0.2.7");
        assert_eq!(
            client_counter("2001:db8:1:2:aaaa::1".parse().unwrap()),
            client_counter("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
    }

    fn settings(per_login: u32, per_login_client: u32, per_client: u32) -> ThrottleSettings {
        ThrottleSettings {
            window: Duration::from_secs(600),
            per_login,
            per_login_client,
            per_client,
            store_error_action: StoreErrorAction::Local,
        }
    }

    fn throttle(s: ThrottleSettings) -> (tempfile::TempDir, Throttle) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        (dir, Throttle::new(store, s, Arc::default()))
    }

    #[test]
    fn lockout_risks_name_what_to_change() {
        let policy = |threshold, observation: Option<u64>| LockoutPolicy {
            source: "cn=default".into(),
            threshold,
            observation: observation.map(Duration::from_secs),
        };
        let s = settings(8, 4, 50); // window 600 s
        assert!(lockout_risks(&s, &[policy(10, Some(600)), policy(0, None)]).is_empty());
        let risks = lockout_risks(&s, &[policy(8, Some(900))]);
        assert_eq!(risks.len(), 2, "{risks:?}");
        assert!(risks[0].contains("at most 7"), "{risks:?}");
        assert!(risks[1].contains("15m"), "{risks:?}");
        assert!(lockout_risks(&s, &[policy(10, None)])[0].contains("until a successful bind"));
    }

    #[tokio::test]
    async fn concurrent_reservations_never_pass_the_login_budget() {
        let (_d, t) = throttle(settings(8, 100, 100));
        let t = Arc::new(t);
        let tasks: Vec<_> = (0..40u8)
            .map(|i| {
                let t = t.clone();
                tokio::spawn(async move { t.reserve("carol", Some(IpAddr::from([10, 0, 0, i]))).await.unwrap() })
            })
            .collect();
        let mut reserved = 0;
        for task in tasks {
            if let Budget::Reserved(_) = task.await.unwrap() {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 8);
        assert_eq!(t.login_failures("carol").await.unwrap(), 8);
    }

    #[tokio::test]
    async fn the_source_budget_comes_before_the_login_budget() {
        let (_d, t) = throttle(settings(8, 3, 100));
        let far = Some(IpAddr::from([203, 0, 113, 9]));
        for _ in 0..3 {
            assert!(matches!(t.reserve("carol", far).await.unwrap(), Budget::Reserved(_)));
        }
        assert!(matches!(t.reserve("carol", far).await.unwrap(), Budget::Spent(Limit::LoginFromClient)));
        assert_eq!(t.source_spent("carol", far).await.unwrap(), Some(Limit::LoginFromClient));
        let own = Some(IpAddr::from([192, 0, 2, 1]));
        assert_eq!(t.source_spent("carol", own).await.unwrap(), None);
        assert!(matches!(t.reserve("carol", own).await.unwrap(), Budget::Reserved(_)));
    }

    #[tokio::test]
    async fn a_refund_hands_every_unit_back() {
        let (_d, t) = throttle(settings(1, 1, 1));
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let Budget::Reserved(r) = t.reserve("dave", ip).await.unwrap() else { panic!("reserved") };
        assert!(matches!(t.reserve("dave", ip).await.unwrap(), Budget::Spent(_)));
        t.refund(r).await;
        assert!(matches!(t.reserve("dave", ip).await.unwrap(), Budget::Reserved(_)));
    }

    #[tokio::test]
    async fn unlock_clears_the_login_budget() {
        let (_d, t) = throttle(settings(2, 100, 100));
        for i in 0..2u8 {
            assert!(matches!(t.reserve("erin", Some(IpAddr::from([10, 0, 0, i]))).await.unwrap(), Budget::Reserved(_)));
        }
        assert!(matches!(t.reserve("erin", None).await.unwrap(), Budget::Spent(Limit::Login)));
        assert!(t.unlock("erin").await.unwrap());
        assert!(matches!(t.reserve("erin", None).await.unwrap(), Budget::Reserved(_)));
    }

    #[tokio::test]
    async fn a_budget_handed_back_to_zero_is_not_live() {
        let (_d, t) = throttle(settings(2, 100, 100));
        let Budget::Reserved(r) = t.reserve("bob", None).await.unwrap() else { panic!("reserved") };
        t.refund(r).await;
        assert!(!t.unlock("bob").await.unwrap(), "every unit was handed back");
        assert!(!t.unlock("nobody").await.unwrap());
    }
}
