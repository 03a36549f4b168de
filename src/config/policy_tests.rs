use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

fn load(policy: &str) -> Result<Config, crate::config::ConfigError> {
    let text = format!("[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"demo-directory.ldif\"\n{policy}");
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Config::from_toml(&text, &config_dir, Path::new("test.toml"))
}

#[test]
fn rates_and_sizes_parse() {
    let rl = |rate: &str| {
        parse_limit(&RawRateLimit { rate: rate.into(), count: Counted::Messages, per: LimitSubject::User, name: None })
    };
    let l = rl("500/1d").unwrap();
    assert_eq!((l.limit, l.window, l.name.as_str()), (500, Duration::from_secs(86_400), "user_messages_1d"));
    assert_eq!(rl("30 / 1m").unwrap().window, Duration::from_secs(60));
    for bad in ["500", "x/1d", "5/soon", "5/0s", "5/1500ms"] {
        assert!(rl(bad).is_err(), "{bad}");
    }
    let size = |s: &str| parse_size(&ByteSize::Text(s.into()));
    assert_eq!(size("25M"), Ok(25 << 20));
    assert_eq!(size("512kb"), Ok(512 << 10));
    assert_eq!(size("1GiB"), Ok(1 << 30));
    assert_eq!(size("1000"), Ok(1000));
    assert!(size("big").is_err());
    assert_eq!(parse_size(&ByteSize::Bytes(7)), Ok(7));
}

#[test]
fn configs_without_policy_still_load() {
    let c = load("").unwrap();
    assert!(c.policy.is_none());
}

#[test]
fn a_full_section_validates_into_a_policy_set() {
    let c = load(
        r#"
[policy]
organisation_domains = ["Example.COM."]
rule_modes = { external_recipients = "observe" }
groups = { sales = "sales", interns = "interns" }
[policy.profiles.default]
allowed_sender_domains = ["example.com"]
max_recipients = 100
max_message_size = "25M"
rate_limits = [{ rate = "500/1d" }, { rate = "2000/1d", count = "recipients" }, { rate = "1000/1d", per = "client_address" }, { rate = "30/1m", name = "burst" }]
[policy.profiles.sales]
priority = 10
may_send_to_lists = true
[policy.profiles.interns]
priority = 20
mode = "observe"
may_send_external = false
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let policy_warnings: Vec<_> = c.warnings.iter().filter(|w| w.path.starts_with("policy")).collect();
    assert!(policy_warnings.is_empty(), "{policy_warnings:?}");
    let s = c.policy.unwrap();
    assert_eq!(s.listener.tcp, vec!["127.0.0.1:10040".parse::<std::net::SocketAddr>().unwrap()]);
    assert_eq!(s.listener.socket_mode, 0o660, "sockets are not world-writable by default");
    assert_eq!(s.set.organisation_domains, ["example.com"]);
    let names: Vec<&str> = s.set.profiles.iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["interns", "sales"]);
    let limits: Vec<&str> =
        s.set.default.fields.rate_limits.as_ref().unwrap().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(limits, ["user_messages_1d", "user_recipients_1d", "client_messages_1d", "burst"]);
    assert_eq!(s.set.rule_modes.get(&RuleKind::ExternalRecipients), Some(&Mode::Observe));
    assert_eq!(s.store_error_action, OutageAction::Defer);
}

#[test]
fn every_policy_mistake_is_named() {
    let err = load(
        r#"
[policy]
listen = "localhost"
rule_modes = { nonsense = "observe" }
groups = { sales = "salez" }
[policy.profiles.a]
priority = 1
max_message_size = "huge"
rate_limits = [{ rate = "5 per day" }]
[policy.profiles.b]
priority = 1
[policy.profiles.c]
"#,
    )
    .unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "policy.listen",
        "policy.rule_modes.nonsense",
        "policy.groups.sales",
        "policy.profiles.a.max_message_size",
        "policy.profiles.a.rate_limits[0]",
        "policy.profiles.b.priority",
        "policy.profiles.c.priority",
    ] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
}

#[test]
fn unknown_profile_keys_are_refused() {
    let err = load("[policy.profiles.default]\nmax_recipient = 5\n").unwrap_err();
    assert!(err.to_string().contains("max_recipient"), "{err}");
}
