//! Failure counting per login and per client address, over the store.
//!
//! Counters live in [`Store`] (fixed windows: the first failure starts the
//! window), so with a shared store every instance sees the same counts
//! and a lockout holds across them. A throttled request is refused as a
//! *temporary* failure before the directory is asked, so a virus guessing
//! passwords can neither find the password nor push the directory's own
//! lockout over its threshold.
//!
//! IPv6 clients are counted per /64 (one host usually owns a whole /64).
//!
//! Every check reads the store. On the embedded store that is a lookup in
//! memory (its counters live there, `store::sqlite::counters`), so the
//! hot path of a good login costs no disk or thread hop, and the counts
//! survive a restart or a reload: restarting mailwarrant does not hand a
//! guesser a fresh allowance.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::auth::ThrottleSettings;
use crate::store::{Store, StoreError};

/// Store key prefixes; stable, other tools read them.
const LOGIN_PREFIX: &str = "auth:fail:login:";
const CLIENT_PREFIX: &str = "auth:fail:client:";

/// Which limit was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Login,
    Client,
}

pub struct Throttle {
    store: Arc<dyn Store>,
    settings: ThrottleSettings,
}

impl Throttle {
    pub fn new(store: Arc<dyn Store>, settings: ThrottleSettings) -> Self {
        Self { store, settings }
    }

    /// The limit already reached, if any. Both counters are read at once.
    pub async fn check(&self, login_key: &str, client: Option<IpAddr>) -> Result<Option<Limit>, StoreError> {
        let login_key = login_counter(login_key);
        let login = self.store.counter(&login_key);
        let (login, client) = match client {
            Some(ip) => {
                let client_key = client_counter(ip);
                let (l, c) = tokio::join!(login, self.store.counter(&client_key));
                (l?, c?)
            }
            None => (login.await?, 0),
        };
        Ok(self.limit(login, client))
    }

    fn limit(&self, login: i64, client: i64) -> Option<Limit> {
        if login >= i64::from(self.settings.per_login) {
            Some(Limit::Login)
        } else if client >= i64::from(self.settings.per_client) {
            Some(Limit::Client)
        } else {
            None
        }
    }

    /// Counts one failure against the login and the client.
    pub async fn record_failure(&self, login_key: &str, client: Option<IpAddr>) -> Result<(), StoreError> {
        let window = self.settings.window;
        let login_key = login_counter(login_key);
        let login = self.store.incr(&login_key, 1, window);
        match client {
            Some(ip) => {
                let client_key = client_counter(ip);
                let (l, c) = tokio::join!(login, self.store.incr(&client_key, 1, window));
                l.and(c).map(|_| ())
            }
            None => login.await.map(|_| ()),
        }
    }

    /// Clears a login's failures (an administrator's unlock).
    pub async fn reset_login(&self, login_key: &str) -> Result<(), StoreError> {
        let key = login_counter(login_key);
        self.store.delete(&key).await.map(|_| ())
    }
}

fn login_counter(login_key: &str) -> String {
    format!("{LOGIN_PREFIX}{login_key}")
}

fn client_counter(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{CLIENT_PREFIX}{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{CLIENT_PREFIX}{v4}"),
            None => {
                let s = v6.segments();
                format!("{CLIENT_PREFIX}{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_per_address_and_ipv6_per_64() {
        assert_eq!(client_counter("192.0.2.7".parse().unwrap()), "auth:fail:client:192.0.2.7");
        assert_eq!(client_counter("::ffff:192.0.2.7".parse().unwrap()), "auth:fail:client:192.0.2.7");
        assert_eq!(
            client_counter("2001:db8:1:2:aaaa::1".parse().unwrap()),
            client_counter("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
    }
}
