//! The Active Directory flavour against a real Samba AD DC
//! (testkit::samba: provisioned once per test process, seeded with the
//! demo cast of docs/design.md in nested AD groups, over LDAPS with a verified
//! certificate). Tests that write use users of their own (ivan, judy, kim).

use mailwarrant::config::directory::GroupMembership;
use mailwarrant::directory::ldap::ad_password::{AdChangeOutcome, AdChangeRefusal};
use mailwarrant::directory::ldap::LdapDirectory;
use mailwarrant::directory::{AddressOwner, BindOutcome, Directory, RejectReason};
use mailwarrant::identity::{AccountStatus, Address, Identity};
use mailwarrant::testkit::samba::{self, password_of, Samba};
use secrecy::SecretString;
use time::OffsetDateTime;

fn dc() -> &'static Samba {
    samba::shared().unwrap_or_else(|e| panic!("the Samba AD DC: {e}"))
}

fn directory(dc: &Samba) -> LdapDirectory {
    LdapDirectory::new(&dc.ldap_settings()).expect("the backend builds")
}

async fn user(dir: &LdapDirectory, login: &str) -> Identity {
    dir.lookup(login).await.expect("the directory answers").unwrap_or_else(|| panic!("{login} exists"))
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn group_names(identity: &Identity) -> Vec<(&str, bool)> {
    identity.groups.iter().map(|g| (g.name.as_str(), g.direct)).collect()
}

fn addresses(list: &[Address]) -> Vec<&str> {
    list.iter().map(Address::as_str).collect()
}

#[tokio::test]
async fn ad_login_by_each_name_form() {
    let dc = dc();
    let dir = directory(dc);
    let alice = user(&dir, "alice").await;
    assert_eq!(alice.login.as_str(), "alice", "the login is the sAMAccountName");
    assert_eq!(alice.dn, "CN=Alice Smith,OU=people,DC=corp,DC=example,DC=com");
    assert_eq!(alice.display_name, "Alice Smith");
    for form in ["alice@corp.example.com", "alice@example.com", "ALICE", "Alice@Corp.Example.Com"] {
        let found = user(&dir, form).await;
        assert_eq!(found.dn, alice.dn, "{form}");
        assert_eq!(found.login.as_str(), "alice", "{form}");
    }
    assert_eq!(dir.lookup("nobody").await.expect("answers"), None);
    assert_eq!(dir.lookup("*").await.expect("answers"), None, "filter values are escaped");

    assert_eq!(dir.authenticate(&alice, &secret(&password_of("alice"))).await.unwrap(), BindOutcome::ACCEPTED);
    let bob = user(&dir, "bob@corp.example.com").await;
    assert_eq!(dir.authenticate(&bob, &secret(&password_of("bob"))).await.unwrap(), BindOutcome::ACCEPTED);
    assert_eq!(
        dir.authenticate(&bob, &secret("Not-Bobs-Password-1")).await.unwrap(),
        BindOutcome::Rejected(RejectReason::InvalidCredentials)
    );
    assert_eq!(
        dir.authenticate(&bob, &secret("")).await.unwrap(),
        BindOutcome::Rejected(RejectReason::EmptyPassword),
        "never sent: an empty password is an unauthenticated bind"
    );
}

#[tokio::test]
async fn ad_addresses_come_from_mail_and_proxy_addresses() {
    let dir = directory(dc());
    let alice = user(&dir, "alice").await;
    assert_eq!(alice.primary_address.as_ref().map(Address::as_str), Some("alice@example.com"));
    // SMTP: (primary, = mail) once, smtp: as an alias, SIP: skipped.
    assert_eq!(addresses(&alice.aliases), ["a.smith@example.com"]);
    assert_eq!(alice.account.status(OffsetDateTime::now_utc()), AccountStatus::Active);
    assert!(alice.account.password_expires_at.is_some(), "msDS-UserPasswordExpiryTimeComputed is read");
    assert!(alice.account.password_changed_at.is_some(), "pwdLastSet is read");

    let owner = |a: &str| {
        let dir = &dir;
        let a = Address::parse(a).unwrap();
        async move { dir.lookup_address(&a).await.expect("the directory answers") }
    };
    match owner("a.smith@example.com").await {
        Some(AddressOwner::User { identity }) => assert_eq!(identity.login.as_str(), "alice"),
        other => panic!("the alias belongs to alice: {other:?}"),
    }
    match owner("bob@example.com").await {
        Some(AddressOwner::User { identity }) => assert_eq!(identity.login.as_str(), "bob"),
        other => panic!("{other:?}"),
    }
    match owner("all-staff@example.com").await {
        Some(AddressOwner::List { list }) => assert_eq!(list.name, "all-staff"),
        other => panic!("all-staff is a list: {other:?}"),
    }
    assert_eq!(owner("alice@sip.example.com").await, None);

    // dave is in the send-as group `helpdesk`.
    let dave = user(&dir, "dave").await;
    assert_eq!(addresses(&dave.send_as), ["helpdesk@example.com"]);
    assert!(user(&dir, "bob").await.send_as.is_empty());

    let lists = dir.distribution_lists().await.unwrap();
    let mut names: Vec<&str> = lists.iter().map(|l| l.address.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["all-staff@example.com", "helpdesk@example.com"]);
}

#[tokio::test]
async fn ad_nested_groups_by_the_in_chain_rule_and_by_token_groups() {
    let dc = dc();
    let dir = directory(dc);
    let alice = user(&dir, "alice").await;
    assert_eq!(group_names(&alice), [("sales", true), ("all-staff", false), ("staff", false)]);
    assert!(alice.in_group("staff") && alice.in_group("ALL-STAFF"));
    let dave = user(&dir, "dave").await;
    assert_eq!(group_names(&dave), [("helpdesk", true), ("it-admins", true), ("staff", true), ("all-staff", false)]);
    let carol = user(&dir, "carol").await;
    assert_eq!(group_names(&carol), [("interns", true)]);

    let mut settings = dc.ldap_settings();
    settings.group_membership = GroupMembership::TokenGroups;
    let by_token = LdapDirectory::new(&settings).unwrap();
    assert_eq!(group_names(&user(&by_token, "alice").await), group_names(&alice));
    assert_eq!(group_names(&user(&by_token, "dave").await), group_names(&dave));
}

#[tokio::test]
async fn ad_account_states_give_the_right_reasons() {
    let dir = directory(dc());
    let now = OffsetDateTime::now_utc();
    for (login, status, reason) in [
        ("erin", AccountStatus::PasswordExpired, RejectReason::PasswordExpired),
        ("frank", AccountStatus::Locked, RejectReason::AccountLocked),
        ("grace", AccountStatus::Disabled, RejectReason::AccountDisabled),
        ("heidi", AccountStatus::MustChangePassword, RejectReason::MustChangePassword),
    ] {
        let who = user(&dir, login).await;
        assert_eq!(who.account.status(now), status, "{login} as looked up: {:?}", who.account);
        // The right password: the DC's sub-code says why it is refused.
        let outcome = dir.authenticate(&who, &secret(&password_of(login))).await.unwrap();
        assert_eq!(outcome, BindOutcome::Rejected(reason), "{login}");
    }
    let users = dir.list_users().await.unwrap();
    let state = |login: &str| users.iter().find(|u| u.login.as_str() == login).map(|u| u.account.status(now));
    assert_eq!(state("alice"), Some(AccountStatus::Active));
    assert_eq!(state("erin"), Some(AccountStatus::PasswordExpired));
    assert_eq!(state("frank"), Some(AccountStatus::Locked));
    assert_eq!(state("grace"), Some(AccountStatus::Disabled));
    assert_eq!(state("heidi"), Some(AccountStatus::MustChangePassword));
    assert_eq!(state("mailwarrant"), None, "the service account is outside the user base");
}

#[tokio::test]
async fn ad_password_change_as_the_user_and_the_domains_refusals() {
    let dc = dc();
    let dir = directory(dc);
    let ivan = user(&dir, "ivan").await;
    let first = password_of("ivan");
    let second = "Ivan-Changed-2026!";
    let change = |current: &str, new: &str| {
        let (dir, ivan) = (&dir, &ivan);
        let (current, new) = (secret(current), secret(new));
        async move { dir.change_password_active_directory(ivan, &current, &new, false).await.expect("the DC answers") }
    };
    let refused = AdChangeOutcome::Refused;
    assert_eq!(change("Not-Ivans-Password-1", second).await, refused(AdChangeRefusal::InvalidCredentials));
    assert_eq!(change(&first, "Sh0rt!").await, refused(AdChangeRefusal::TooShort));
    assert_eq!(change(&first, "alllowercaseletters").await, refused(AdChangeRefusal::NotComplex));
    assert_eq!(change(&first, second).await, AdChangeOutcome::Changed);
    assert!(dc.bind_succeeds("ivan@corp.example.com", second), "the new password works");
    assert!(!dc.bind_succeeds("ivan@corp.example.com", &first), "the old one does not");
    assert_eq!(change(second, &first).await, refused(AdChangeRefusal::InHistory));
    assert_eq!(change(second, "").await, refused(AdChangeRefusal::EmptyPassword));
    for r in [AdChangeRefusal::TooShort, AdChangeRefusal::NotComplex, AdChangeRefusal::InHistory] {
        assert!(!r.user_message().is_empty());
    }
}

#[tokio::test]
async fn ad_expired_and_must_change_users_change_through_the_service_account() {
    let dc = dc();
    let dir = directory(dc);
    let now = OffsetDateTime::now_utc();
    let refused = AdChangeOutcome::Refused;

    let judy = user(&dir, "judy").await;
    assert_eq!(judy.account.status(now), AccountStatus::PasswordExpired);
    let old = secret(&password_of("judy"));
    let new = secret("Judy-Renewed-2026!");
    let change = |who: &Identity, current: &SecretString, new: &SecretString, service: bool| {
        let dir = &dir;
        let (who, current, new) = (who.clone(), current.clone(), new.clone());
        async move { dir.change_password_active_directory(&who, &current, &new, service).await.expect("the DC answers") }
    };
    assert_eq!(change(&judy, &old, &new, false).await, refused(AdChangeRefusal::Expired));
    assert_eq!(
        change(&judy, &secret("Not-Judys-Password-1"), &new, true).await,
        refused(AdChangeRefusal::InvalidCredentials),
        "a wrong old password never reaches the service-account path"
    );
    // The policy-hints control makes the reset honour history.
    assert_eq!(change(&judy, &old, &old, true).await, refused(AdChangeRefusal::InHistory));
    assert_eq!(change(&judy, &old, &new, true).await, AdChangeOutcome::Changed);
    let judy = user(&dir, "judy").await;
    assert_eq!(judy.account.status(now), AccountStatus::Active, "{:?}", judy.account);
    assert_eq!(dir.authenticate(&judy, &new).await.unwrap(), BindOutcome::ACCEPTED);

    let kim = user(&dir, "kim").await;
    assert_eq!(kim.account.status(now), AccountStatus::MustChangePassword);
    let old = secret(&password_of("kim"));
    let new = secret("Kim-Renewed-2026!");
    assert_eq!(change(&kim, &old, &secret("short"), true).await, refused(AdChangeRefusal::TooShort));
    assert_eq!(change(&kim, &old, &new, true).await, AdChangeOutcome::Changed);
    let kim = user(&dir, "kim").await;
    assert_eq!(kim.account.status(now), AccountStatus::Active, "must-change is cleared: {:?}", kim.account);
    assert_eq!(dir.authenticate(&kim, &new).await.unwrap(), BindOutcome::ACCEPTED);
}

#[tokio::test]
async fn ad_searches_at_the_domain_root_skip_continuation_references() {
    let dc = dc();
    let mut settings = dc.ldap_settings();
    // AD answers searches here with references to its configuration and
    // DNS partitions besides the entries; they are skipped, not followed.
    settings.base_dn = samba::BASE_DN.to_owned();
    settings.group_base_dn = samba::BASE_DN.to_owned();
    let dir = LdapDirectory::new(&settings).unwrap();
    let alice = user(&dir, "alice").await;
    assert_eq!(group_names(&alice), [("sales", true), ("all-staff", false), ("staff", false)]);
    let users = dir.list_users().await.unwrap();
    assert!(users.iter().any(|u| u.login.as_str() == "bob"), "the paged scan works at the root");
    assert!(users.iter().any(|u| u.login.as_str() == "mailwarrant"), "the whole domain is searched");
}

/// The change flow's entry point (`Directory::change_password`, which the
/// self-service page calls) reaches the AD change for the AD flavour.
#[tokio::test]
async fn ad_password_change_through_the_directory_trait() {
    use mailwarrant::directory::{ChangeOptions, ChangeOutcome, ChangeRefusal};
    let dc = dc();
    let dir = directory(dc);
    let mona = user(&dir, "mona").await;
    let old = secret(&password_of("mona"));
    let new = secret("Mona-Renewed-2026!");
    let plain = ChangeOptions::default();
    let service = ChangeOptions { expired_via_service_account: true };
    let change = |options: ChangeOptions, new: SecretString| {
        let (dir, mona, old) = (&dir, mona.clone(), old.clone());
        async move { dir.change_password(&mona, &old, &new, &options).await.expect("the DC answers") }
    };
    assert_eq!(change(plain, new.clone()).await, ChangeOutcome::Refused(ChangeRefusal::Expired));
    assert_eq!(
        change(service, secret("alllowercaseletters")).await,
        ChangeOutcome::Refused(ChangeRefusal::InsufficientQuality)
    );
    assert_eq!(change(service, new.clone()).await, ChangeOutcome::Changed);
    let mona = user(&dir, "mona").await;
    assert_eq!(dir.authenticate(&mona, &new).await.unwrap(), BindOutcome::ACCEPTED);
}
