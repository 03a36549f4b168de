//! The OpenLDAP backend against a real slapd (testkit::slapd, seeded from
//! schemas/ldap/ with the demo cast of docs/design.md).
//!
//! Read-only tests share one slapd (kept alive while any of them runs);
//! tests that stop or reconfigure the server start their own.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mailwarrant::config::directory::{GroupMembership, TlsMode};
use mailwarrant::config::{Config, DirectorySettings};
use mailwarrant::directory::ldap::LdapDirectory;
use mailwarrant::directory::{AddressOwner, BindOutcome, Directory, DirectoryError, RejectReason};
use mailwarrant::identity::{AccountStatus, Address, Identity};
use mailwarrant::testkit::slapd::Slapd;
use secrecy::SecretString;
use time::OffsetDateTime;

/// One slapd for the read-only tests, started by the first that needs it
/// and stopped when the last one using it ends.
fn shared_slapd() -> Arc<Slapd> {
    static SHARED: Mutex<Weak<Slapd>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.upgrade() {
        return running;
    }
    let started = Arc::new(Slapd::start().expect("slapd starts"));
    *slot = Arc::downgrade(&started);
    started
}

fn directory(slapd: &Slapd) -> LdapDirectory {
    LdapDirectory::new(&slapd.ldap_settings()).expect("the backend builds")
}

async fn user(dir: &LdapDirectory, login: &str) -> Identity {
    dir.lookup(login).await.expect("the directory answers").unwrap_or_else(|| panic!("{login} exists"))
}

fn password(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn group_names(identity: &Identity) -> Vec<(&str, bool)> {
    identity.groups.iter().map(|g| (g.name.as_str(), g.direct)).collect()
}

#[tokio::test]
async fn lookup_by_login_maps_the_entry() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let alice = user(&dir, "alice").await;
    assert_eq!(alice.login.as_str(), "alice");
    assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=com");
    assert_eq!(alice.display_name, "Alice Smith");
    assert_eq!(alice.primary_address.as_ref().map(Address::as_str), Some("alice@example.com"));
    assert_eq!(alice.aliases.iter().map(Address::as_str).collect::<Vec<_>>(), ["a.smith@example.com"]);
    assert_eq!(alice.account.status(OffsetDateTime::now_utc()), AccountStatus::Active);
    assert!(alice.account.password_expires_at.is_some(), "the default policy has pwdMaxAge");

    // The user filter also matches the mail address, and matching is
    // case-insensitive as in the directory.
    assert_eq!(user(&dir, "alice@example.com").await.dn, alice.dn);
    assert_eq!(user(&dir, "ALICE").await.dn, alice.dn);

    let dave = user(&dir, "dave").await;
    assert_eq!(dave.send_as.iter().map(Address::as_str).collect::<Vec<_>>(), ["helpdesk@example.com"]);
    let groups = group_names(&dave);
    assert!(groups.contains(&("it-admins", true)) && groups.contains(&("staff", true)), "{groups:?}");

    assert_eq!(dir.lookup("nobody").await.expect("answers"), None);
}

#[tokio::test]
async fn nested_groups_are_resolved_and_marked_indirect() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let alice = user(&dir, "alice").await;
    assert_eq!(group_names(&alice), [("sales", true), ("staff", false), ("all-staff", false)]);
    assert!(alice.in_group("sales") && alice.in_group("staff"));

    // cycle-a and cycle-b contain each other: each is listed once.
    let oscar = user(&dir, "oscar").await;
    assert_eq!(group_names(&oscar), [("cycle-a", true), ("cycle-b", false)]);
}

#[tokio::test]
async fn groups_by_member_search_match_groups_by_member_of() {
    let slapd = shared_slapd();
    let mut settings = slapd.ldap_settings();
    settings.group_membership = GroupMembership::Search;
    let dir = LdapDirectory::new(&settings).unwrap();
    let alice = user(&dir, "alice").await;
    assert_eq!(group_names(&alice), [("sales", true), ("staff", false), ("all-staff", false)]);
    let oscar = user(&dir, "oscar").await;
    assert_eq!(group_names(&oscar), [("cycle-a", true), ("cycle-b", false)]);
}

#[tokio::test]
async fn nesting_depth_is_limited() {
    let slapd = shared_slapd();
    let mut settings = slapd.ldap_settings();
    settings.max_group_depth = 1;
    let dir = LdapDirectory::new(&settings).unwrap();
    let alice = user(&dir, "alice").await;
    assert_eq!(group_names(&alice), [("sales", true), ("staff", false)]);
}

#[tokio::test]
async fn lookup_by_address_finds_users_by_alias_and_lists() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let owner = |a: &str| {
        let dir = &dir;
        let a = Address::parse(a).unwrap();
        async move { dir.lookup_address(&a).await.expect("the directory answers") }
    };
    match owner("a.smith@example.com").await {
        Some(AddressOwner::User { identity }) => assert_eq!(identity.login.as_str(), "alice"),
        other => panic!("a.smith@ should be alice, got {other:?}"),
    }
    match owner("A.Smith@EXAMPLE.com").await {
        Some(AddressOwner::User { identity }) => assert_eq!(identity.login.as_str(), "alice"),
        other => panic!("case should not matter, got {other:?}"),
    }
    match owner("all-staff@example.com").await {
        Some(AddressOwner::List { list }) => {
            assert_eq!(list.name, "all-staff");
            assert_eq!(list.dn, "cn=all-staff,ou=groups,dc=example,dc=com");
        }
        other => panic!("all-staff@ should be a list, got {other:?}"),
    }
    assert_eq!(owner("nobody@example.com").await, None);
    assert_eq!(owner("*@example.com").await, None);

    let lists = dir.distribution_lists().await.expect("the directory answers");
    assert_eq!(lists.iter().map(|l| l.address.as_str()).collect::<Vec<_>>(), ["all-staff@example.com"]);
}

#[tokio::test]
async fn non_ascii_users_are_found() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let jurgen = user(&dir, "jürgen").await;
    assert_eq!(jurgen.display_name, "Jürgen Groß");
    assert_eq!(jurgen.login.as_str(), "jürgen");
    assert!(jurgen.in_group("staff"));
    assert_eq!(user(&dir, "zoë").await.display_name, "Zoë Ångström");
    assert_eq!(user(&dir, "soren@example.com").await.login.as_str(), "søren");
    let by_mail = dir.lookup_address(&Address::parse("juergen@example.com").unwrap()).await.unwrap();
    assert!(matches!(by_mail, Some(AddressOwner::User { identity }) if identity.login.as_str() == "jürgen"));
    // Non-ASCII passwords are UTF-8 on the wire, as slappasswd hashed them.
    assert_eq!(dir.authenticate(&jurgen, &password("Jürgen-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);
}

#[tokio::test]
async fn account_states_come_from_ppolicy_and_the_disabled_flag() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let now = OffsetDateTime::now_utc();
    for (login, expected) in [
        ("bob", AccountStatus::Active),
        ("erin", AccountStatus::PasswordExpired),
        ("frank", AccountStatus::Locked),
        ("grace", AccountStatus::Disabled),
        ("heidi", AccountStatus::MustChangePassword),
    ] {
        assert_eq!(user(&dir, login).await.account.status(now), expected, "{login}");
    }
}

#[tokio::test]
async fn binds_accept_right_passwords_and_reject_with_the_reason() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let check = |login: &'static str, pw: &'static str, expected: BindOutcome| {
        let dir = &dir;
        async move {
            let who = user(dir, login).await;
            let got = dir.authenticate(&who, &password(pw)).await.expect("the directory answers");
            assert_eq!(got, expected, "{login}");
        }
    };
    let rejected = BindOutcome::Rejected;
    check("alice", "Alice-Demo-2026!", BindOutcome::ACCEPTED).await;
    check("alice", "alice-demo-2026!", rejected(RejectReason::InvalidCredentials)).await;
    check("bob", "Bob-Demo-2026!", BindOutcome::ACCEPTED).await;
    check("erin", "Erin-Demo-2026!", rejected(RejectReason::PasswordExpired)).await;
    check("frank", "Frank-Demo-2026!", rejected(RejectReason::AccountLocked)).await;
    check("grace", "Grace-Demo-2026!", rejected(RejectReason::AccountDisabled)).await;
    check("heidi", "Heidi-Demo-2026!", rejected(RejectReason::MustChangePassword)).await;
    // The bind connection is reused after a refusal, and still works.
    check("alice", "Alice-Demo-2026!", BindOutcome::ACCEPTED).await;
}

#[tokio::test]
async fn injection_attempts_in_logins_match_nobody() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let long = "a".repeat(10 * 1024);
    let long_star = "*".repeat(10 * 1024);
    for login in [
        "*",
        "a*",
        "*)(uid=*",
        ")(uid=*",
        "*)(|(uid=*",
        "alice)(|(uid=*",
        "alice\0",
        "\0",
        "alice\\",
        "\\2a",
        "uid=alice,ou=people,dc=example,dc=com",
        "alice,ou=people",
        "cn=admin,dc=example,dc=com",
        "#alice",
        " alice=\"x\"+<y>;",
        long.as_str(),
        long_star.as_str(),
    ] {
        let shown: String = login.chars().take(40).collect();
        assert_eq!(dir.lookup(login).await.expect("the directory answers"), None, "{shown:?}");
    }
    // The escaped values reached slapd as plain values (no wildcard).
    assert!(!slapd.log().contains("(uid=*)"), "an unescaped wildcard reached slapd");
}

#[tokio::test]
async fn an_empty_password_never_reaches_the_directory() {
    let slapd = shared_slapd();
    let dir = directory(&slapd);
    let carol = user(&dir, "carol").await;
    let binds_as_carol = || slapd.log().matches("BIND dn=\"uid=carol,").count();
    let before = binds_as_carol();
    let got = dir.authenticate(&carol, &password("")).await.expect("a verdict");
    assert_eq!(got, BindOutcome::Rejected(RejectReason::EmptyPassword));

    // A real bind afterwards is logged; the empty one never was.
    let got = dir.authenticate(&carol, &password("wrong")).await.expect("a verdict");
    assert_eq!(got, BindOutcome::Rejected(RejectReason::InvalidCredentials));
    assert!(
        mailwarrant::testkit::wait_until(Duration::from_secs(5), || binds_as_carol() > before),
        "slapd logs binds (the control bind is missing from its log)"
    );
    assert_eq!(binds_as_carol(), before + 1, "exactly one bind as carol: the non-empty one");
}

#[tokio::test]
async fn a_wrong_service_password_is_an_error_naming_the_setting() {
    let slapd = shared_slapd();
    let mut settings = slapd.ldap_settings();
    settings.bind_password = password("not-the-password");
    let err = LdapDirectory::connect(&settings).await.expect_err("the service bind fails");
    assert!(matches!(err, DirectoryError::ServiceBind(_)), "{err:?}");
    assert!(err.to_string().contains("directory.ldap.bind_dn"), "{err}");
}

#[tokio::test]
async fn an_unreachable_first_url_fails_over_to_the_next() {
    let slapd = shared_slapd();
    let mut settings = slapd.ldap_settings();
    let dead = format!("ldap://127.0.0.1:{}/", mailwarrant::testkit::free_port());
    settings.urls = vec![dead, slapd.url()];
    let dir = LdapDirectory::connect(&settings).await.expect("the second URL answers");
    let bob = user(&dir, "bob").await;
    assert_eq!(dir.authenticate(&bob, &password("Bob-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);
}

#[tokio::test]
async fn connections_fail_back_to_the_first_url_when_it_returns() {
    let mut first = Slapd::start().expect("slapd starts");
    let second = Slapd::start().expect("slapd starts");
    let mut settings = first.ldap_settings();
    settings.urls = vec![first.url(), second.url()];
    settings.pool_size = 1;
    settings.bind_pool_size = 1;
    let dir = LdapDirectory::with_fail_back_interval(&settings, Duration::from_millis(200)).unwrap();
    let searches_for_bob = |slapd: &Slapd| slapd.log().matches("(uid=bob)").count();

    first.stop();
    let bob = user(&dir, "bob").await;
    assert!(searches_for_bob(&second) > 0, "served by the second server while the first is down");
    assert_eq!(dir.authenticate(&bob, &password("Bob-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);

    first.start_again().expect("the first server restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while searches_for_bob(&first) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never failed back to the first server");
        user(&dir, "bob").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Binds fail back too: the idle bind connection on the second server
    // is dropped once older than the interval.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let binds_as_bob = |slapd: &Slapd| slapd.log().matches("BIND dn=\"uid=bob,").count();
    let before = binds_as_bob(&first);
    assert_eq!(dir.authenticate(&bob, &password("Bob-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);
    assert!(
        mailwarrant::testkit::wait_until(Duration::from_secs(5), || binds_as_bob(&first) > before),
        "the bind went to the first server"
    );
}

#[tokio::test]
async fn an_outage_is_an_error_not_a_rejection_and_the_pool_recovers() {
    let mut slapd = Slapd::start().expect("slapd starts");
    let dir = directory(&slapd);
    let bob = user(&dir, "bob").await;
    assert_eq!(dir.authenticate(&bob, &password("Bob-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);

    slapd.stop();
    let lookup = dir.lookup("alice").await;
    assert!(lookup.is_err(), "lookup during an outage: {lookup:?}");
    let bind = dir.authenticate(&bob, &password("Bob-Demo-2026!")).await;
    assert!(bind.is_err(), "bind during an outage must be an error, got {bind:?}");
    let bind = dir.authenticate(&bob, &password("wrong")).await;
    assert!(bind.is_err(), "even a wrong password is not judged during an outage: {bind:?}");
    assert!(dir.check_health().await.is_err());

    slapd.start_again().expect("slapd restarts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match dir.lookup("alice").await {
            Ok(Some(alice)) => {
                assert_eq!(alice.login.as_str(), "alice");
                break;
            }
            other if tokio::time::Instant::now() > deadline => panic!("no recovery after restart: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(dir.authenticate(&bob, &password("Bob-Demo-2026!")).await.unwrap(), BindOutcome::ACCEPTED);
    dir.check_health().await.expect("healthy again");
}

#[tokio::test]
async fn a_hung_directory_times_out() {
    // Accepts TCP and never answers (docs/threat-model.md T13).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let slapd = shared_slapd();
    let mut settings = slapd.ldap_settings();
    settings.urls = vec![format!("ldap://127.0.0.1:{port}/")];
    settings.operation_timeout = Duration::from_millis(300);
    let dir = LdapDirectory::new(&settings).unwrap();
    let started = std::time::Instant::now();
    let err = dir.lookup("alice").await.expect_err("no answer is an error");
    assert!(matches!(err, DirectoryError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    let someone = user(&directory(&slapd), "bob").await;
    let started = std::time::Instant::now();
    let err = dir.authenticate(&someone, &password("Bob-Demo-2026!")).await.expect_err("no answer is an error");
    assert!(matches!(err, DirectoryError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    drop(listener);
}

#[tokio::test]
async fn a_failed_starttls_is_fatal_and_no_password_is_sent() {
    // This slapd has no certificate, so it refuses StartTLS (docs/threat-model.md T14).
    let slapd = Slapd::start().expect("slapd starts");
    let bob = user(&directory(&slapd), "bob").await;
    let mut settings = slapd.ldap_settings();
    settings.tls = TlsMode::Starttls;
    let binds_before = slapd.log().matches(" BIND ").count();
    assert!(binds_before > 0, "slapd logs binds (the service account's is missing)");

    let err = LdapDirectory::connect(&settings).await.expect_err("no cleartext fallback");
    assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
    let dir = LdapDirectory::new(&settings).unwrap();
    let bind = dir.authenticate(&bob, &password("Bob-Demo-2026!")).await;
    assert!(bind.is_err(), "a bind without TLS must not happen: {bind:?}");

    // slapd saw the StartTLS requests, and not one bind after them.
    assert!(
        mailwarrant::testkit::wait_until(Duration::from_secs(5), || slapd.log().contains("oid=1.3.6.1.4.1.1466.20037")),
        "the StartTLS request reached slapd"
    );
    assert_eq!(slapd.log().matches(" BIND ").count(), binds_before, "no bind may follow a failed StartTLS");

    // ldaps:// to a cleartext port fails the same way.
    settings.urls = vec![format!("ldaps://127.0.0.1:{}/", slapd.port())];
    assert!(LdapDirectory::connect(&settings).await.is_err());
    assert_eq!(slapd.log().matches(" BIND ").count(), binds_before);
}

#[test]
fn the_openldap_example_config_loads_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/openldap.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let DirectorySettings::Ldap(ldap) = config.directory else { panic!("kind = \"ldap\"") };
    assert_eq!(ldap.urls, ["ldap://127.0.0.1:3389"]);
}
