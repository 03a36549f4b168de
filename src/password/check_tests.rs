//! Every rule, table-driven through one helper: the rules that fail.

use std::time::Duration;

use regex::Regex;
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::identity::{AccountState, Address, GroupRef, Identity, Login};
use crate::password::{history, CharClass, PatternRule, PolicySet};

const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

fn alice() -> Identity {
    Identity {
        login: Login::new("alice"),
        dn: "uid=alice,ou=people,dc=example,dc=com".into(),
        display_name: "Alice Smith".into(),
        primary_address: Some(Address::parse("alice@example.com").unwrap()),
        aliases: vec![Address::parse("a.smith@example.com").unwrap()],
        send_as: vec![],
        groups: vec![GroupRef { dn: "cn=sales".into(), name: "sales".into(), direct: true }],
        account: AccountState { enabled: true, ..Default::default() },
    }
}

fn facts<'a>(ctx: &'a UserContext, list: &'a Blocklist, history: Option<&'a [String]>) -> Facts<'a> {
    Facts { context: ctx, blocklist: list, history, changed_at: None, forced: false, now: NOW }
}

/// The ids of the rules `password` fails under `policy`.
fn failing(policy: &PasswordPolicy, password: &str) -> Vec<String> {
    let ctx = UserContext::from_identity(&alice());
    let list = Blocklist::from_text("password\nletmein\nqwertyuiopasdfgh\ncorrecthorsebatterystaple\n");
    let report = check(policy, Candidate(password), &facts(&ctx, &list, None));
    report.failures().map(|v| v.rule.clone()).collect()
}

fn expect(policy: &PasswordPolicy, table: &[(&str, &[&str])]) {
    for (password, expected) in table {
        assert_eq!(failing(policy, password), *expected, "password {password:?}");
    }
}

#[test]
fn length_counts_unicode_characters_not_bytes() {
    let mut p = PasswordPolicy::minimal("t", 8);
    p.max_length = Some(64);
    expect(
        &p,
        &[
            ("1234567", &["min_length"]),
            ("12345678", &[]),
            ("ééééééé", &["min_length"]), // 7 characters, 14 bytes
            ("éééééééé", &[]),
            ("🔑🔑🔑🔑🔑🔑🔑🔑", &[]), // 8 code points, 32 bytes
            (&"x".repeat(64), &[]),
            (&"x".repeat(65), &["max_length"]),
        ],
    );
    let report = check(&p, Candidate("1234"), &facts(&UserContext::default(), &Blocklist::default(), None));
    let msg = report.failures().next().unwrap().message.clone().unwrap();
    assert_eq!(msg, "Too short: 4 characters; use at least 8.");
}

#[test]
fn long_passwords_are_accepted_whole() {
    let mut p = PasswordPolicy::minimal("t", 8);
    p.max_length = Some(128);
    p.min_score = Some(3);
    // 128 characters, not truncated: a change in the last one still counts.
    let long: String = "Tr0ub4dor&3-horse-".repeat(8).chars().take(128).collect();
    assert_eq!(long.chars().count(), 128);
    assert!(failing(&p, &long).is_empty());
}

#[test]
fn character_classes_count_any_script() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.min_classes = 3;
    expect(
        &p,
        &[
            ("lowercase", &["character_classes"]),
            ("lower1234", &["character_classes"]),
            ("Lower1234", &[]),
            ("lower-123", &[]),
            ("über1234", &[]),                // lower + digit + non-ASCII
            ("ÜBER", &["character_classes"]), // upper + non-ASCII
            ("ÜBERjа", &[]),                  // Cyrillic а is lowercase and non-ASCII
        ],
    );
    p.classes = vec![CharClass::Lower, CharClass::Upper, CharClass::Digit, CharClass::Symbol];
    expect(&p, &[("über1234", &["character_classes"]), ("Über1234", &[])]);
    let report = check(&p, Candidate("abc"), &facts(&UserContext::default(), &Blocklist::default(), None));
    assert_eq!(
        report.failures().next().unwrap().message.as_deref(),
        Some("Uses 1 of the character kinds; mix in at least 3 of: lowercase letters, uppercase letters, digits, symbols.")
    );
}

#[test]
fn custom_patterns_must_or_must_not_match() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.patterns = vec![
        PatternRule {
            regex: Regex::new(r"(?i)acme").unwrap(),
            must_match: false,
            message: "Does not contain the company name".into(),
        },
        PatternRule { regex: Regex::new(r"\d$").unwrap(), must_match: true, message: "Ends with a digit".into() },
    ];
    expect(
        &p,
        &[
            ("abc1", &[]),
            ("xAcMe1", &["pattern_1"]),
            ("abcd", &["pattern_2"]),
            ("acmé", &["pattern_2"]),
            ("ACMEé", &["pattern_1", "pattern_2"]),
        ],
    );
    let report = check(&p, Candidate("acme"), &facts(&UserContext::default(), &Blocklist::default(), None));
    let messages: Vec<_> = report.failures().filter_map(|v| v.message.clone()).collect();
    assert_eq!(messages, ["Does not contain the company name", "Ends with a digit"]);
}

#[test]
fn zxcvbn_score_uses_the_users_words() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.min_score = Some(3);
    expect(&p, &[("password", &["min_score"]), ("Summer2026!", &["min_score"]), ("vivid-cactus-lantern-97", &[])]);
    // A word zxcvbn does not know is weak once it is the user's own.
    let score = |ctx: &UserContext| {
        let r = check(&p, Candidate("Qwzxykowalczyk7"), &facts(ctx, &Blocklist::default(), None));
        r.strength.unwrap().score
    };
    let own = UserContext { words: vec!["qwzxykowalczyk".into()] };
    assert!(score(&own) < score(&UserContext::default()), "{} vs {}", score(&own), score(&UserContext::default()));
    let ctx = UserContext::from_identity(&alice());
    let report = check(&p, Candidate("password"), &facts(&ctx, &Blocklist::default(), None));
    let s = report.strength.unwrap();
    assert_eq!(s.score, 0);
    assert!(s.warning.is_some() || !s.suggestions.is_empty(), "zxcvbn gives advice");
}

#[test]
fn personal_information_is_refused_case_insensitively() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.reject_personal_info = true;
    expect(
        &p,
        &[
            ("my-ALICE-pass", &["personal_info"]), // login
            ("xxSmithxx", &["personal_info"]),     // last name
            ("a.smith-rocks", &["personal_info"]), // alias local part
            ("ali-ce-split", &[]),
            ("al", &[]), // fragments under 3 characters are not refused
        ],
    );
    let ctx = UserContext::from_identity(&alice());
    assert_eq!(ctx.words, ["alice", "smith", "a.smith"]);
    assert_eq!(UserContext::from_login("jürgen").found_in("JÜRGEN-1"), Some("jürgen"));
}

#[test]
fn blocklist_refuses_listed_passwords_in_any_case() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.use_blocklist = true;
    expect(&p, &[("password", &["blocklist"]), ("LetMeIn", &["blocklist"]), ("letmein!", &[])]);
}

#[test]
fn history_refuses_recent_passwords_only_when_given() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.history = 2;
    let h: Vec<String> = ["newest-pw", "older-pw", "oldest-pw"].iter().map(|pw| history::hash(pw).unwrap()).collect();
    let ctx = UserContext::default();
    let list = Blocklist::default();
    let run = |pw: &str, hist: Option<&[String]>| {
        let r = check(&p, Candidate(pw), &facts(&ctx, &list, hist));
        r.verdicts.iter().find(|v| v.rule == "history").unwrap().outcome
    };
    assert_eq!(run("newest-pw", Some(&h)), Outcome::Fail);
    assert_eq!(run("older-pw", Some(&h)), Outcome::Fail);
    assert_eq!(run("oldest-pw", Some(&h)), Outcome::Pass, "beyond the last 2");
    assert_eq!(run("fresh-pw", Some(&h)), Outcome::Pass);
    assert_eq!(run("newest-pw", None), Outcome::NotChecked, "the live check never tests history");
}

#[test]
fn minimum_age_holds_back_changes_unless_forced() {
    let mut p = PasswordPolicy::minimal("t", 1);
    p.min_age = Some(Duration::from_secs(86_400));
    let ctx = UserContext::default();
    let list = Blocklist::default();
    let run = |changed: Option<OffsetDateTime>, forced: bool| {
        let f = Facts { changed_at: changed, forced, ..facts(&ctx, &list, None) };
        check(&p, Candidate("x"), &f).failures().map(|v| v.message.clone().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(
        run(Some(NOW - time::Duration::hours(2)), false),
        ["Was changed too recently; you can change it again in 22 hours."]
    );
    assert!(
        run(Some(NOW - time::Duration::hours(2)), true).is_empty(),
        "an expired or reset password may always change"
    );
    assert!(run(Some(NOW - time::Duration::days(1)), false).is_empty());
    assert!(run(None, false).is_empty(), "never changed: no minimum age");
}

#[test]
fn maximum_age_is_information_not_a_condition() {
    let mut p = PasswordPolicy::minimal("t", 8);
    p.max_age = Some(Duration::from_secs(90 * 86_400));
    let req = requirements(&p);
    assert_eq!(req.last().unwrap().requirement, "Expires 90 days after it is set");
    assert_eq!(req.last().unwrap().outcome, Outcome::Info);
    assert!(failing(&p, "long-enough").is_empty());
}

#[test]
fn requirements_list_every_rule_before_typing() {
    let set = PolicySet::default();
    let req = requirements(set.default_policy());
    let ids: Vec<_> = req.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(ids, ["min_length", "max_length", "personal_info", "blocklist"]);
    assert!(req.iter().all(|v| v.outcome == Outcome::NotChecked && v.message.is_none()));
    assert_eq!(req[0].requirement, "At least 15 characters");
}

#[test]
fn group_policies_resolve_by_priority_then_default() {
    let mut sales = PasswordPolicy::minimal("sales", 10);
    sales.groups = vec!["SALES".into()];
    sales.priority = 1;
    let mut staff = PasswordPolicy::minimal("staff", 12);
    staff.groups = vec!["staff".into(), "sales".into()];
    staff.priority = 5;
    let set = PolicySet::new(vec![sales, staff], PasswordPolicy::minimal("default", 15));
    let mut who = alice();
    assert_eq!(&*set.for_identity(Some(&who)).name, "staff", "highest priority wins");
    who.groups.clear();
    assert_eq!(&*set.for_identity(Some(&who)).name, "default");
    assert_eq!(&*set.for_identity(None).name, "default");
    assert_eq!(set.all().count(), 3);
}

#[test]
fn messages_never_echo_the_candidate() {
    let mut p = PasswordPolicy::minimal("t", 40);
    p.min_classes = 4;
    p.min_score = Some(4);
    p.use_blocklist = true;
    p.reject_personal_info = true;
    let secret = "alice-Secret-Value";
    let ctx = UserContext::from_identity(&alice());
    let report = check(&p, Candidate(secret), &facts(&ctx, &Blocklist::default(), None));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(secret) && !json.contains("Secret-Value"));
    assert_eq!(format!("{:?}", Candidate(secret)), "Candidate([redacted, 18 chars])");
}

#[test]
fn nothing_panics_on_odd_input() {
    let mut p = PasswordPolicy::minimal("t", 8);
    p.min_score = Some(3);
    p.min_classes = 3;
    p.reject_personal_info = true;
    p.use_blocklist = true;
    for pw in ["", "\0", "\u{202e}", "\u{FEFF}abc", &"🔑".repeat(1000), &"a".repeat(100_000)] {
        let _ = failing(&p, pw);
    }
}
