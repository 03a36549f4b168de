//! The embedded LDIF directory with the demo cast, through the same trait
//! and cache the services use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailwarrant::config::{Config, DirectorySettings, IdentitySettings};
use mailwarrant::directory::ldif::LdifDirectory;
use mailwarrant::directory::{AddressOwner, BindOutcome, Directory, RejectReason};
use mailwarrant::identity::{AccountStatus, Address, IdentityCache};
use secrecy::SecretString;
use time::OffsetDateTime;

fn demo() -> LdifDirectory {
    let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml")).unwrap();
    let DirectorySettings::Ldif(settings) = &config.directory else { panic!("demo uses the LDIF backend") };
    LdifDirectory::open(settings).unwrap()
}

async fn bind(dir: &LdifDirectory, login: &str, password: &str) -> BindOutcome {
    let who = dir.lookup(login).await.unwrap().unwrap_or_else(|| panic!("{login} exists"));
    dir.authenticate(&who, &SecretString::from(password.to_owned())).await.unwrap()
}

#[tokio::test]
async fn states_of_the_cast() {
    let dir = demo();
    let now = OffsetDateTime::now_utc();
    for (login, expected) in [
        ("alice", AccountStatus::Active),
        ("erin", AccountStatus::PasswordExpired),
        ("frank", AccountStatus::Locked),
        ("grace", AccountStatus::Disabled),
        ("heidi", AccountStatus::MustChangePassword),
    ] {
        let who = dir.lookup(login).await.unwrap().unwrap();
        assert_eq!(who.account.status(now), expected, "{login}");
    }
}

#[tokio::test]
async fn binds_tell_wrong_passwords_from_account_states() {
    let dir = demo();
    assert_eq!(bind(&dir, "alice", "Alice-Demo-2026!").await, BindOutcome::ACCEPTED);
    assert_eq!(bind(&dir, "alice", "alice-demo-2026!").await, BindOutcome::Rejected(RejectReason::InvalidCredentials));
    assert_eq!(bind(&dir, "alice", "").await, BindOutcome::Rejected(RejectReason::EmptyPassword));
    assert_eq!(bind(&dir, "frank", "Frank-Demo-2026!").await, BindOutcome::Rejected(RejectReason::AccountLocked));
    assert_eq!(bind(&dir, "frank", "wrong").await, BindOutcome::Rejected(RejectReason::InvalidCredentials));
    assert_eq!(bind(&dir, "grace", "Grace-Demo-2026!").await, BindOutcome::Rejected(RejectReason::AccountDisabled));
    assert_eq!(bind(&dir, "erin", "Erin-Demo-2026!").await, BindOutcome::Rejected(RejectReason::PasswordExpired));
    assert_eq!(bind(&dir, "jürgen", "Jürgen-Demo-2026!").await, BindOutcome::ACCEPTED);
}

#[tokio::test]
async fn logins_and_addresses_resolve_to_one_identity() {
    let dir = demo();
    for typed in ["alice", "ALICE", " alice ", "alice@example.com", "A.Smith@Example.COM"] {
        let who = dir.lookup(typed).await.unwrap().unwrap_or_else(|| panic!("{typed:?}"));
        assert_eq!(who.login.as_str(), "alice");
    }
    for typed in ["*", "ali*", ")(uid=*", "alice\0", "", &"a".repeat(10_000), "mıke", "alİce"] {
        assert!(dir.lookup(typed).await.unwrap().is_none(), "{typed:?} must match nobody");
    }
    let alias = Address::parse("a.smith@example.com").unwrap();
    assert!(
        matches!(dir.lookup_address(&alias).await.unwrap(), Some(AddressOwner::User { identity }) if identity.login.as_str() == "alice")
    );
    let list = Address::parse("all-staff@example.com").unwrap();
    assert!(matches!(dir.lookup_address(&list).await.unwrap(), Some(AddressOwner::List { .. })));
    assert_eq!(dir.distribution_lists().await.unwrap().len(), 1);
}

#[tokio::test]
async fn nested_groups_are_resolved() {
    let dir = demo();
    let alice = dir.lookup("alice").await.unwrap().unwrap();
    let groups: Vec<(&str, bool)> = alice.groups.iter().map(|g| (g.name.as_str(), g.direct)).collect();
    assert_eq!(groups, [("sales", true), ("staff", false), ("all-staff", false)]);
    let dave = dir.lookup("dave").await.unwrap().unwrap();
    assert!(dave.in_group("it-admins") && dave.in_group("staff"));
    assert_eq!(dave.send_as[0].as_str(), "helpdesk@example.com");
}

#[tokio::test]
async fn the_cache_shares_one_handle_and_remembers_absence() {
    let cache = IdentityCache::new(
        Arc::new(demo()),
        IdentitySettings {
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            refresh_after: Duration::from_secs(50),
            capacity: 100,
        },
    );
    let a = cache.get("alice").await.unwrap().unwrap();
    let b = cache.get("Alice").await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "warm lookups hand out the same Arc");
    assert!(cache.get("nobody").await.unwrap().is_none());
    assert_eq!(cache.len(), 2);
    cache.forget("ALICE");
    assert_eq!(cache.len(), 1);
}
