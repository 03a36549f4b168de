//! The demo cast and the demo profiles of docs/design.md, as plain values for
//! unit tests.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::identity::{AccountState, Address, GroupRef, Identity, Login};

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn group(name: &str, direct: bool) -> GroupRef {
    GroupRef { dn: format!("cn={name},ou=groups,dc=example,dc=com"), name: name.into(), direct }
}

pub fn user(login: &str, groups: &[(&str, bool)]) -> Identity {
    Identity {
        login: Login::new(login),
        dn: format!("uid={login},ou=people,dc=example,dc=com"),
        display_name: login.into(),
        primary_address: Some(addr(&format!("{login}@example.com"))),
        aliases: Vec::new(),
        send_as: Vec::new(),
        groups: groups.iter().map(|(n, d)| group(n, *d)).collect(),
        account: AccountState { enabled: true, ..AccountState::default() },
    }
}

pub fn alice() -> Identity {
    let mut a = user("alice", &[("sales", true), ("staff", false)]);
    a.aliases.push(addr("a.smith@example.com"));
    a
}

pub fn bob() -> Identity {
    user("bob", &[("staff", true)])
}

pub fn carol() -> Identity {
    user("carol", &[("interns", true)])
}

pub fn dave() -> Identity {
    let mut d = user("dave", &[("it-admins", true), ("staff", true)]);
    d.send_as.push(addr("helpdesk@example.com"));
    d
}

pub fn limit(name: &str, per: LimitSubject, count: Counted, n: u64, secs: u64) -> RateLimit {
    RateLimit { name: name.into(), per, count, limit: n, window: Duration::from_secs(secs) }
}

/// docs/design.md: interns may not send to external domains nor to lists, nor
/// attachments; sales may send to lists; the default allows example.com
/// senders, 100 recipients, 500 messages a day.
pub fn demo_set() -> PolicySet {
    let default = ProfileFields {
        allowed_sender_domains: Some(Arc::from(vec!["example.com".to_owned()])),
        require_sender_match: Some(true),
        max_recipients: Some(100),
        may_send_external: Some(true),
        may_send_to_lists: Some(false),
        may_send_attachments: Some(true),
        rate_limits: Some(Arc::from(vec![limit(
            "user_messages_1d",
            LimitSubject::User,
            Counted::Messages,
            500,
            86_400,
        )])),
        ..ProfileFields::default()
    };
    let mut set = PolicySet::with_default(default, &["example.com"]);
    set.add_profile(Profile {
        name: Arc::from("interns"),
        priority: 20,
        mode: None,
        fields: ProfileFields {
            may_send_external: Some(false),
            may_send_to_lists: Some(false),
            may_send_attachments: Some(false),
            ..ProfileFields::default()
        },
    });
    set.add_profile(Profile {
        name: Arc::from("sales"),
        priority: 10,
        mode: None,
        fields: ProfileFields { may_send_to_lists: Some(true), ..ProfileFields::default() },
    });
    set.map_group("interns", "interns");
    set.map_group("sales", "sales");
    set
}
