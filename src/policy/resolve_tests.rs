use std::sync::Arc;

use super::*;
use crate::policy::fixtures::*;
use crate::policy::{Mode, Profile, ProfileFields};

/// (field, expected value, expected profile, expected group) for one user.
fn check(set: &PolicySet, who: &Identity, expected: &[(&str, String, &str, Option<&str>)]) {
    let r = resolve(set, who);
    for (field, value, profile, group) in expected {
        let got: Option<(String, &Source)> = match *field {
            "may_send_to_lists" => r.may_send_to_lists.as_ref().map(|s| (s.value.to_string(), &s.source)),
            "may_send_external" => r.may_send_external.as_ref().map(|s| (s.value.to_string(), &s.source)),
            "max_recipients" => r.max_recipients.as_ref().map(|s| (s.value.to_string(), &s.source)),
            "max_message_size" => r.max_message_size.as_ref().map(|s| (s.value.to_string(), &s.source)),
            other => panic!("no such field in the table: {other}"),
        };
        let (v, source) = got.unwrap_or_else(|| panic!("{}: {field} unset", who.login));
        assert_eq!(&v, value, "{}: {field}", who.login);
        assert_eq!(&*source.profile, *profile, "{}: {field} profile", who.login);
        assert_eq!(source.group.as_deref(), *group, "{}: {field} group", who.login);
    }
}

fn row(
    field: &'static str,
    v: impl ToString,
    p: &'static str,
    g: Option<&'static str>,
) -> (&'static str, String, &'static str, Option<&'static str>) {
    (field, v.to_string(), p, g)
}

#[test]
fn demo_profiles_resolve_with_provenance() {
    let set = demo_set();
    check(
        &set,
        &alice(),
        &[
            row("may_send_to_lists", true, "sales", Some("sales")),
            row("may_send_external", true, "default", None),
            row("max_recipients", 100, "default", None),
        ],
    );
    check(&set, &bob(), &[row("may_send_to_lists", false, "default", None)]);
    check(
        &set,
        &carol(),
        &[
            row("may_send_to_lists", false, "interns", Some("interns")),
            row("may_send_external", false, "interns", Some("interns")),
        ],
    );
    let r = resolve(&set, &alice());
    let names: Vec<&str> = r.profiles.iter().map(|s| &*s.profile).collect();
    assert_eq!(names, ["sales", "default"]);
    assert_eq!(r.primary_profile(), Some("sales"));
}

#[test]
fn higher_priority_wins_regardless_of_group_order() {
    let mut set = demo_set();
    // A user in both interns and sales: interns (priority 20) decides lists.
    let both = user("zoe", &[("sales", true), ("interns", true)]);
    check(&set, &both, &[row("may_send_to_lists", false, "interns", Some("interns"))]);
    // Raise sales above interns: now sales decides.
    for p in set.profiles.iter_mut().filter(|p| &*p.name == "sales") {
        p.priority = 30;
    }
    set.profiles.sort_by_key(|p| std::cmp::Reverse(p.priority));
    check(&set, &both, &[row("may_send_to_lists", true, "sales", Some("sales"))]);
}

#[test]
fn nested_group_membership_brings_the_profile() {
    let mut set = demo_set();
    set.add_profile(Profile {
        name: Arc::from("staff"),
        priority: 5,
        mode: Some(Mode::Observe),
        fields: ProfileFields { max_message_size: Some(10_000_000), ..ProfileFields::default() },
    });
    set.map_group("staff", "staff");
    // alice is in staff only through sales (direct = false).
    check(&set, &alice(), &[row("max_message_size", 10_000_000, "staff", Some("staff"))]);
    let r = resolve(&set, &alice());
    assert_eq!(r.max_message_size.unwrap().source.mode, Some(Mode::Observe));
    // carol is not in staff at all.
    assert!(resolve(&set, &carol()).max_message_size.is_none());
}

#[test]
fn group_names_match_ascii_case_insensitively_only() {
    let mut set = demo_set();
    set.group_profiles.clear();
    set.map_group("SALES", "sales");
    check(&set, &alice(), &[row("may_send_to_lists", true, "sales", Some("sales"))]);
    set.group_profiles.clear();
    set.map_group("sa\u{212a}es", "sales"); // Kelvin sign, not a K
    check(&set, &alice(), &[row("may_send_to_lists", false, "default", None)]);
}

#[test]
fn unmapped_user_gets_only_the_default() {
    let r = resolve(&demo_set(), &user("nobody", &[]));
    assert_eq!(r.profiles.len(), 1);
    assert_eq!(r.limits().len(), 1);
    assert_eq!(r.rate_limits.unwrap().source.profile.as_ref(), "default");
}
