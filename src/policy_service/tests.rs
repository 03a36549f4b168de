//! The service over the demo directory (LDIF) and a temporary SQLite
//! store: identity, lists, counters, audit and explain together.

use std::path::Path;

use time::macros::datetime;

use super::*;
use crate::config::Config;
use crate::store::sqlite::SqliteStore;

const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

pub(crate) async fn service(edit: impl FnOnce(&mut PolicySettings)) -> (tempfile::TempDir, PolicyService) {
    let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml")).unwrap();
    let directory = crate::directory::open(&config.directory).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    let mut settings = config.policy.clone().unwrap();
    edit(&mut settings);
    let identities = IdentityCache::new(directory, config.identity.clone());
    (dir, PolicyService::new(settings, identities, store))
}

/// The default profile's only rate: `limit` messages a day per user.
fn user_messages_per_day(limit: u64) -> Arc<[crate::policy::RateLimit]> {
    Arc::from(vec![crate::policy::RateLimit {
        name: "user_messages_1d".into(),
        per: crate::policy::LimitSubject::User,
        count: crate::policy::Counted::Messages,
        limit,
        window: std::time::Duration::from_secs(86_400),
    }])
}

fn rcpt<'a>(login: &'a str, from: &'a str, to: &'a str) -> SendRequest<'a> {
    SendRequest {
        stage: Some(Stage::Rcpt),
        sasl_username: Some(login.into()),
        sender: Some(from.into()),
        recipient: Some(to.into()),
        client_address: Some("192.0.2.1".into()),
        instance: Some("a.b.c.0".into()),
        ..SendRequest::default()
    }
}

fn eom<'a>(login: &'a str, from: &'a str, count: u32, instance: &'a str) -> SendRequest<'a> {
    SendRequest {
        stage: Some(Stage::EndOfMessage),
        sasl_username: Some(login.into()),
        sender: Some(from.into()),
        recipient_count: count,
        size: 300,
        client_address: Some("192.0.2.1".into()),
        instance: Some(instance.into()),
        ..SendRequest::default()
    }
}

async fn answer(s: &PolicyService, req: &SendRequest<'_>) -> String {
    let d = s.check(req, NOW).await.decision;
    d.refusal.map(|f| format!("{} {}", f.code, f.rule_name())).unwrap_or_else(|| "DUNNO".into())
}

#[tokio::test]
async fn the_demo_cast_against_the_demo_profiles() {
    let (_d, s) = service(|_| {}).await;
    let cases = [
        (rcpt("alice", "alice@example.com", "bob@example.com"), "DUNNO"),
        (rcpt("alice", "a.smith@example.com", "bob@example.com"), "DUNNO"),
        (rcpt("ALICE", "alice@example.com", "bob@example.com"), "DUNNO"),
        (rcpt("alice", "bob@example.com", "carol@example.com"), "553 5.7.1 sender_match"),
        (rcpt("alice", "alice@foreign.example", "bob@example.com"), "553 5.7.1 sender_match"),
        (rcpt("carol", "carol@example.com", "x@example.net"), "550 5.7.1 external_recipients"),
        (rcpt("carol", "carol@example.com", "bob@example.com"), "DUNNO"),
        (rcpt("carol", "carol@example.com", "all-staff@example.com"), "550 5.7.1 distribution_lists"),
        (rcpt("bob", "bob@example.com", "ALL-STAFF@example.com"), "550 5.7.1 distribution_lists"),
        (rcpt("alice", "alice@example.com", "all-staff@example.com"), "DUNNO"),
        (rcpt("dave", "helpdesk@example.com", "x@example.net"), "DUNNO"),
        (rcpt("mallory", "mallory@example.com", "bob@example.com"), "550 5.7.1 unknown_user"),
        (
            SendRequest { sasl_username: None, ..rcpt("", "bob@example.com", "x@example.net") },
            "530 5.7.0 auth_required",
        ),
    ];
    for (req, want) in cases {
        assert_eq!(answer(&s, &req).await, want, "{req:?}");
    }
}

#[tokio::test]
async fn daily_limit_defers_with_reset_and_reask_is_free() {
    let (_d, s) = service(|p| {
        let mut set = (*p.set).clone();
        set.default.fields.rate_limits = Some(user_messages_per_day(3));
        p.set = Arc::new(set);
    })
    .await;
    for i in 0..3 {
        assert_eq!(answer(&s, &eom("bob", "bob@example.com", 1, &format!("m{i}"))).await, "DUNNO");
    }
    // Postfix asks again about an accepted message: still accepted, not counted.
    assert_eq!(answer(&s, &eom("bob", "bob@example.com", 1, "m0")).await, "DUNNO");
    let out = s.check(&eom("bob", "bob@example.com", 1, "m3"), NOW).await;
    let text = out.decision.client_text().unwrap();
    assert!(text.starts_with("rate limit user_messages_1d: 3/3 messages today, resets 00:00 CET"), "{text}");
    // A message refused for another rule is not counted: alice still has 3.
    assert_eq!(answer(&s, &eom("alice", "bob@example.com", 1, "x1")).await, "553 5.7.1 sender_match");
    let report = explain::policy_report(&s, "alice", None, NOW).await.unwrap();
    assert_eq!(report.counters[0].used, 0);
    // The reference resolves to the full decision.
    let reference = out.decision.reference.unwrap();
    let record = explain::reference_report(&s, &reference).await.unwrap();
    assert_eq!(record.login.as_deref(), Some("bob"));
    assert_eq!(record.rule, "rate_limit:user_messages_1d");
    assert!(record.counters[0].starts_with("user_messages_1d 3/3"), "{:?}", record.counters);
}

#[tokio::test]
async fn explain_names_profile_and_group_of_each_field() {
    let (_d, s) = service(|_| {}).await;
    let r = explain::policy_report(&s, "alice", None, NOW).await.unwrap();
    let lists = r.fields.iter().find(|f| f.field == "may_send_to_lists").unwrap();
    assert_eq!(
        (lists.value.as_str(), lists.profile.as_str(), lists.group.as_deref()),
        ("true", "sales", Some("sales"))
    );
    assert!(r.groups.contains(&"staff (nested)".to_owned()), "{:?}", r.groups);
    let text = explain::render_policy(&r);
    assert!(text.contains("profile sales (group sales)"), "{text}");

    let steps = explain::message_report(
        &s,
        "carol",
        "carol@example.com",
        &["bob@example.com".into(), "x@example.net".into()],
        100,
        NOW,
    )
    .await;
    let answers: Vec<&str> = steps.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(answers, ["accepted", "external_recipients", "accepted", "accepted"]);
    assert_eq!(steps[1].decided_by.as_deref(), Some("profile interns (group interns)"));
}

#[tokio::test]
async fn unauthenticated_modes() {
    let unauth = |from: &'static str, to: &'static str| SendRequest { sasl_username: None, ..rcpt("", from, to) };
    let (_d, s) = service(|p| p.unauthenticated = Unauthenticated::BySender).await;
    assert_eq!(answer(&s, &unauth("carol@example.com", "x@example.net")).await, "550 5.7.1 external_recipients");
    assert_eq!(answer(&s, &unauth("bob@example.com", "x@example.net")).await, "DUNNO");
    assert_eq!(answer(&s, &unauth("eve@foreign.example", "bob@example.com")).await, "553 5.7.1 sender_match");
    let (_d, s) = service(|p| {
        p.unauthenticated_by_context.insert("inbound".into(), Unauthenticated::Dunno);
    })
    .await;
    let inbound =
        SendRequest { policy_context: Some("inbound".into()), ..unauth("eve@foreign.example", "bob@example.com") };
    assert_eq!(answer(&s, &inbound).await, "DUNNO");
    assert_eq!(answer(&s, &unauth("eve@foreign.example", "bob@example.com")).await, "530 5.7.0 auth_required");
}

#[tokio::test]
async fn global_observe_mode_lets_through_but_records() {
    let (_d, s) = service(|p| {
        let mut set = (*p.set).clone();
        set.mode = Mode::Observe;
        p.set = Arc::new(set);
    })
    .await;
    let out = s.check(&rcpt("carol", "carol@example.com", "x@example.net"), NOW).await;
    assert!(out.decision.is_accept());
    let reference = out.decision.reference.expect("observed refusals are recorded");
    let record = explain::reference_report(&s, &reference).await.unwrap();
    assert_eq!(record.rule, "accepted");
    assert!(record.observed[0].starts_with("would_reject external_recipients"), "{:?}", record.observed);
}

#[tokio::test]
async fn a_rate_limit_in_observe_mode_is_counted_and_observed_but_never_defers() {
    let (_d, s) = service(|p| {
        let mut set = (*p.set).clone();
        set.default.fields.rate_limits = Some(user_messages_per_day(1));
        set.rule_modes.insert(RuleKind::RateLimit, Mode::Observe);
        p.set = Arc::new(set);
    })
    .await;
    let first = s.check(&eom("bob", "bob@example.com", 1, "o1"), NOW).await;
    assert!(first.decision.is_accept() && first.decision.observed.is_empty());
    let second = s.check(&eom("bob", "bob@example.com", 1, "o2"), NOW).await;
    assert!(second.decision.is_accept(), "observe mode never defers");
    let observed: Vec<_> = second.decision.observed.iter().map(|f| f.rule).collect();
    assert_eq!(observed, [RuleKind::RateLimit], "{:?}", second.decision.observed);
    assert!(second.decision.reference.is_some(), "an observed finding is audited with a reference");
}
