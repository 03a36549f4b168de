use time::macros::datetime;
use time::OffsetDateTime;

use super::*;
use crate::policy::fixtures::*;
use crate::policy::{resolve, AttachmentSummary, ContentFacts, HeaderSenders, LocalPartMatch, Mode};

const NOW: OffsetDateTime = datetime!(2026-11-27 15:30:00 UTC);

struct Req<'a> {
    stage: Stage,
    sender: &'a str,
    rcpt: Option<(&'a str, Option<&'a str>)>,
    count: u32,
    size: u64,
}

fn rcpt(sender: &'static str, to: &'static str) -> Req<'static> {
    Req { stage: Stage::Rcpt, sender, rcpt: Some((to, None)), count: 0, size: 0 }
}

fn run(set: &PolicySet, who: &Identity, req: &Req<'_>, counters: &[CounterReading]) -> Decision {
    let policy = resolve(set, who);
    let sender = Sender::parse(req.sender);
    let facts_rcpt = req.rcpt.map(|(a, list)| RecipientFacts { address: addr(a), list: list.map(str::to_owned) });
    let facts = MessageFacts {
        stage: req.stage,
        identity: who,
        sender: Some(&sender),
        recipient: facts_rcpt.as_ref(),
        recipient_count: req.count,
        size: req.size,
        content: None,
    };
    evaluate(set, &policy, &facts, counters, NOW)
}

/// Expected: `None` accept, or the rule and the SMTP code.
fn check(set: &PolicySet, who: &Identity, req: Req<'_>, expected: Option<(RuleKind, &str)>) {
    let d = run(set, who, &req, &[]);
    let got = d.refusal.as_ref().map(|f| (f.rule, f.code.to_string()));
    let want = expected.map(|(r, c)| (r, c.to_owned()));
    assert_eq!(got, want, "{} from {} to {:?}: {d:?}", who.login, req.sender, req.rcpt);
}

#[test]
fn sender_must_belong_to_the_login() {
    let set = demo_set();
    type Case = (Identity, &'static str, Option<(RuleKind, &'static str)>);
    let cases: Vec<Case> = vec![
        (alice(), "alice@example.com", None),
        (alice(), "a.smith@example.com", None), // alias
        (alice(), "alice@EXAMPLE.com", None),   // domain case folds
        (alice(), "Alice@example.com", Some((RuleKind::SenderMatch, "553 5.7.1"))), // local part exact
        (alice(), "bob@example.com", Some((RuleKind::SenderMatch, "553 5.7.1"))),
        (alice(), "alice+news@example.com", Some((RuleKind::SenderMatch, "553 5.7.1"))), // +tag off
        (alice(), "", Some((RuleKind::SenderMatch, "553 5.7.1"))),                       // null sender
        (alice(), "not-an-address", Some((RuleKind::SenderMatch, "553 5.7.1"))),
        (dave(), "helpdesk@example.com", None), // send-as grant
        (bob(), "helpdesk@example.com", Some((RuleKind::SenderMatch, "553 5.7.1"))),
        (alice(), "alice@example.org", Some((RuleKind::SenderMatch, "553 5.7.1"))),
    ];
    for (who, sender, expected) in cases {
        check(&set, &who, rcpt(sender, "bob@example.com"), expected);
    }
}

#[test]
fn case_and_subaddress_options() {
    let mut set = demo_set();
    set.local_part_match = LocalPartMatch::AsciiCaseInsensitive;
    set.recipient_delimiter = "+".into();
    check(&set, &alice(), rcpt("Alice@example.com", "bob@example.com"), None);
    check(&set, &alice(), rcpt("ALICE+news@Example.Com", "bob@example.com"), None);
    check(&set, &alice(), rcpt("a.smith+x@example.com", "bob@example.com"), None);
    // ASCII folding only: a dotless ı is not an i, a Kelvin sign not a k.
    check(
        &set,
        &alice(),
        rcpt("al\u{131}ce@example.com", "bob@example.com"),
        Some((RuleKind::SenderMatch, "553 5.7.1")),
    );
    let mut k = user("kim", &[]);
    k.primary_address = Some(addr("kim@example.com"));
    check(&set, &k, rcpt("\u{212a}im@example.com", "bob@example.com"), Some((RuleKind::SenderMatch, "553 5.7.1")));
}

#[test]
fn sender_domain_is_checked_when_sender_match_is_off() {
    let mut set = demo_set();
    set.default.fields.require_sender_match = Some(false);
    check(&set, &alice(), rcpt("anyone@example.com", "bob@example.com"), None);
    check(
        &set,
        &alice(),
        rcpt("alice@foreign.example", "bob@example.com"),
        Some((RuleKind::SenderDomain, "550 5.7.1")),
    );
}

#[test]
fn interns_stay_inside_and_off_lists() {
    let set = demo_set();
    check(&set, &carol(), rcpt("carol@example.com", "bob@example.com"), None);
    check(
        &set,
        &carol(),
        rcpt("carol@example.com", "someone@example.net"),
        Some((RuleKind::ExternalRecipients, "550 5.7.1")),
    );
    check(&set, &bob(), rcpt("bob@example.com", "someone@example.net"), None);
    let list = |from| Req {
        stage: Stage::Rcpt,
        sender: from,
        rcpt: Some(("all-staff@example.com", Some("all-staff"))),
        count: 0,
        size: 0,
    };
    check(&set, &carol(), list("carol@example.com"), Some((RuleKind::DistributionLists, "550 5.7.1")));
    check(&set, &bob(), list("bob@example.com"), Some((RuleKind::DistributionLists, "550 5.7.1")));
    check(&set, &alice(), list("alice@example.com"), None);
}

#[test]
fn message_level_limits() {
    let mut set = demo_set();
    set.default.fields.max_message_size = Some(1000);
    let data = |count, size| Req { stage: Stage::Data, sender: "bob@example.com", rcpt: None, count, size };
    check(&set, &bob(), data(100, 0), None);
    check(&set, &bob(), data(101, 0), Some((RuleKind::MaxRecipients, "550 5.5.3")));
    check(&set, &bob(), data(1, 1000), None);
    check(&set, &bob(), data(1, 1001), Some((RuleKind::MaxMessageSize, "552 5.3.4")));
    // Recipient count is meaningless at RCPT (Postfix sends 0).
    check(
        &set,
        &bob(),
        Req { stage: Stage::Rcpt, sender: "bob@example.com", rcpt: Some(("a@example.com", None)), count: 500, size: 0 },
        None,
    );
}

#[test]
fn rate_limit_text_names_rule_counts_and_reset() {
    let set = demo_set();
    let req = Req { stage: Stage::EndOfMessage, sender: "bob@example.com", rcpt: None, count: 1, size: 10 };
    let reset = datetime!(2026-11-28 00:00:00 UTC);
    let under = [CounterReading { limit: 0, used: 499, resets_at: reset }];
    assert!(run(&set, &bob(), &req, &under).is_accept());
    let at = [CounterReading { limit: 0, used: 500, resets_at: reset }];
    let d = run(&set, &bob(), &req, &at);
    let f = d.refusal.as_ref().unwrap();
    assert_eq!(f.code.to_string(), "450 4.7.1");
    assert_eq!(f.verdict, Verdict::Defer);
    assert_eq!(f.text, "rate limit user_messages_1d: 500/500 messages today, resets 00:00 UTC; rule rate_limit");
    assert_eq!(f.rule_name(), "rate_limit:user_messages_1d");
}

#[test]
fn rate_limit_counts_recipients_and_can_reject() {
    let mut set = demo_set();
    set.default.fields.rate_limits = Some(std::sync::Arc::from(vec![limit(
        "user_recipients_1h",
        crate::policy::LimitSubject::User,
        crate::policy::Counted::Recipients,
        10,
        3600,
    )]));
    set.default.fields.limit_action = Some(crate::policy::LimitAction::Reject);
    let req = Req { stage: Stage::Data, sender: "bob@example.com", rcpt: None, count: 4, size: 0 };
    let reading = |used| [CounterReading { limit: 0, used, resets_at: datetime!(2026-11-27 16:00:00 UTC) }];
    assert!(run(&set, &bob(), &req, &reading(6)).is_accept());
    let d = run(&set, &bob(), &req, &reading(7));
    let f = d.refusal.unwrap();
    assert_eq!(f.code.to_string(), "550 5.7.1");
    assert!(f.text.contains("7/10 recipients per 1h, resets 16:00 UTC"), "{}", f.text);
}

#[test]
fn observe_mode_logs_and_lets_through() {
    let mut set = demo_set();
    set.mode = Mode::Observe;
    let d = run(&set, &carol(), &rcpt("bob@example.com", "x@example.net"), &[]);
    assert!(d.is_accept());
    let rules: Vec<RuleKind> = d.observed.iter().map(|f| f.rule).collect();
    assert_eq!(rules, [RuleKind::SenderMatch, RuleKind::ExternalRecipients]);

    // Per rule: only external recipients observed; the sender rule enforces.
    let mut set = demo_set();
    set.rule_modes.insert(RuleKind::ExternalRecipients, Mode::Observe);
    let d = run(&set, &carol(), &rcpt("carol@example.com", "x@example.net"), &[]);
    assert!(d.is_accept());
    assert_eq!(d.observed[0].verdict.would(), "would_reject");
    let d = run(&set, &carol(), &rcpt("bob@example.com", "x@example.net"), &[]);
    assert_eq!(d.refusal.unwrap().rule, RuleKind::SenderMatch);

    // Per profile: a new interns profile switched on in observe mode.
    let mut set = demo_set();
    for p in set.profiles.iter_mut().filter(|p| &*p.name == "interns") {
        p.mode = Some(Mode::Observe);
    }
    let d = run(&set, &carol(), &rcpt("carol@example.com", "x@example.net"), &[]);
    assert!(d.is_accept() && d.observed.len() == 1);
    // An explicit per-rule enforce beats the profile's observe.
    set.rule_modes.insert(RuleKind::ExternalRecipients, Mode::Enforce);
    assert!(!run(&set, &carol(), &rcpt("carol@example.com", "x@example.net"), &[]).is_accept());
}

#[test]
fn client_text_carries_the_reference() {
    let mut d = run(&demo_set(), &bob(), &rcpt("alice@example.com", "carol@example.com"), &[]);
    d.reference = Some("3f9c2a7b41d0".into());
    assert_eq!(
        d.client_text().unwrap(),
        "sender <alice@example.com> not owned by bob; rule sender_match (ref 3f9c2a7b41d0)"
    );
}

fn content_decision(set: &PolicySet, who: &Identity, content: &ContentFacts) -> Decision {
    let policy = resolve(set, who);
    let sender = Sender::parse(who.primary_address.as_ref().map(|a| a.as_str()).unwrap_or(""));
    let facts = MessageFacts {
        stage: Stage::EndOfMessage,
        identity: who,
        sender: Some(&sender),
        recipient: None,
        recipient_count: 1,
        size: 100,
        content: Some(content),
    };
    evaluate(set, &policy, &facts, &[], NOW)
}

fn from_header(from: &[&str], sender: Option<&str>) -> ContentFacts {
    ContentFacts {
        senders: Some(HeaderSenders::Parsed { from: from.iter().map(|a| addr(a)).collect(), sender: sender.map(addr) }),
        attachments: None,
    }
}

#[test]
fn header_from_must_belong_to_the_login_when_required() {
    let mut set = demo_set();
    // Off by default: a foreign From passes.
    assert!(content_decision(&set, &alice(), &from_header(&["bob@example.com"], None)).is_accept());
    set.default.fields.require_header_from_match = Some(true);
    let rule = |d: Decision| d.refusal.map(|f| (f.rule, f.code.to_string(), f.text));
    assert_eq!(rule(content_decision(&set, &alice(), &from_header(&["alice@example.com"], None))), None);
    assert_eq!(rule(content_decision(&set, &alice(), &from_header(&["a.smith@EXAMPLE.com"], None))), None);
    assert_eq!(
        rule(content_decision(&set, &dave(), &from_header(&["helpdesk@example.com"], Some("dave@example.com")))),
        None
    );
    assert_eq!(
        rule(content_decision(&set, &alice(), &from_header(&["bob@example.com"], None))),
        Some((
            RuleKind::HeaderFromMatch,
            "550 5.7.1".into(),
            "header sender <bob@example.com> not owned by alice; rule header_from_match".into()
        ))
    );
    // Every mailbox counts, and Sender: too; the local part is exact.
    for c in [
        from_header(&["alice@example.com", "bob@example.com"], None),
        from_header(&["alice@example.com"], Some("bob@example.com")),
        from_header(&["Alice@example.com"], None),
        from_header(&[], None),
    ] {
        let d = content_decision(&set, &alice(), &c);
        assert_eq!(d.refusal.map(|f| f.rule), Some(RuleKind::HeaderFromMatch), "{c:?}");
    }
    for bad in [HeaderSenders::Missing, HeaderSenders::Repeated, HeaderSenders::Unparsable("<\r\n\"x".into())] {
        let c = ContentFacts { senders: Some(bad.clone()), attachments: None };
        let f = content_decision(&set, &alice(), &c).refusal.expect("refused");
        assert_eq!(f.rule, RuleKind::HeaderFromMatch, "{bad:?}");
        assert!(!f.text.contains('\r') && !f.text.contains('\n'), "{}", f.text);
    }
    // The case option applies to headers as to the envelope.
    set.local_part_match = LocalPartMatch::AsciiCaseInsensitive;
    assert!(content_decision(&set, &alice(), &from_header(&["Alice@example.com"], None)).is_accept());
    // Without content (the policy delegation front end) the rule is silent.
    let run_plain = run(&set, &alice(), &rcpt("alice@example.com", "bob@example.com"), &[]);
    assert!(run_plain.is_accept());
}

fn with_attachments(count: u32, largest: u64) -> ContentFacts {
    ContentFacts { senders: None, attachments: Some(AttachmentSummary { count, largest }) }
}

#[test]
fn attachment_rules() {
    let mut set = demo_set();
    set.default.fields.max_attachments = Some(10);
    set.default.fields.max_attachment_size = Some(1_000_000);
    let rule = |d: Decision| d.refusal.map(|f| (f.rule, f.code.to_string()));
    assert_eq!(rule(content_decision(&set, &bob(), &with_attachments(10, 1_000_000))), None);
    assert_eq!(
        rule(content_decision(&set, &bob(), &with_attachments(11, 10))),
        Some((RuleKind::MaxAttachments, "550 5.7.1".into()))
    );
    assert_eq!(
        rule(content_decision(&set, &bob(), &with_attachments(1, 1_000_001))),
        Some((RuleKind::MaxAttachmentSize, "550 5.7.1".into()))
    );
    // Interns may send none: the profile field wins over the default.
    assert_eq!(rule(content_decision(&set, &carol(), &with_attachments(0, 0))), None);
    let d = content_decision(&set, &carol(), &with_attachments(1, 10));
    let f = d.refusal.unwrap();
    assert_eq!(f.rule, RuleKind::Attachments);
    assert_eq!(f.text, "carol may not send attachments (1 found); rule attachments");
    assert_eq!(f.source.unwrap().profile.as_ref(), "interns");
    // Observe mode per rule.
    set.rule_modes.insert(RuleKind::Attachments, Mode::Observe);
    let d = content_decision(&set, &carol(), &with_attachments(1, 10));
    assert!(d.is_accept() && d.observed.len() == 1);
    // No body looked at: silent.
    let none = ContentFacts::default();
    assert!(content_decision(&set, &carol(), &none).is_accept());
}

#[test]
fn every_rule_kind_has_a_distinct_name() {
    let names: std::collections::HashSet<&str> = RuleKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), RuleKind::ALL.len());
    for k in RuleKind::ALL {
        assert_eq!(RuleKind::parse(k.as_str()), Some(k));
    }
}
