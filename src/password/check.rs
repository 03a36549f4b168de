//! The verdict of every rule of a policy on one candidate.
//!
//! Each [`Verdict`] carries the requirement (shown before the user types)
//! and, when it fails, a specific message that names the rule's limit but
//! never echoes the candidate.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{history, Blocklist, Candidate, PasswordPolicy, UserContext};

/// What the engine knows besides the candidate. Everything time-related
/// comes in here: the engine never reads the clock.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub context: &'a UserContext,
    pub blocklist: &'a Blocklist,
    /// Argon2 hashes of earlier passwords, newest first. `None`: not
    /// checked (the live check, which must stay cheap and must not reveal
    /// history to whoever types a login).
    pub history: Option<&'a [String]>,
    /// When the current password was set, when known.
    pub changed_at: Option<OffsetDateTime>,
    /// The password has expired or an administrator reset it: the user
    /// must change it now, so the minimum age does not hold them back.
    pub forced: bool,
    pub now: OffsetDateTime,
}

/// One rule's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not evaluated here (history on the live check, or no candidate yet).
    NotChecked,
    /// Information, not a condition (expiry).
    Info,
}

/// A rule, what it asks, and how the candidate fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Stable id: `min_length`, `max_length`, `character_classes`,
    /// `pattern_1`…, `min_score`, `personal_info`, `blocklist`,
    /// `history`, `min_age`, `max_age`.
    pub rule: String,
    pub requirement: String,
    pub outcome: Outcome,
    /// Why it failed; `None` unless `outcome` is `Fail`.
    pub message: Option<String>,
}

/// zxcvbn's estimate and advice, for the live meter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Strength {
    /// 0 (guessable in seconds) to 4 (very hard).
    pub score: u8,
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

/// Every verdict of one policy on one candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub policy: String,
    pub verdicts: Vec<Verdict>,
    pub strength: Option<Strength>,
}

impl Report {
    /// True when no rule failed.
    pub fn accepted(&self) -> bool {
        self.verdicts.iter().all(|v| v.outcome != Outcome::Fail)
    }

    /// The failed rules, in policy order.
    pub fn failures(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.outcome == Outcome::Fail)
    }
}

/// The rules of a policy with no candidate: what the page lists before
/// the user types.
pub fn requirements(policy: &PasswordPolicy) -> Vec<Verdict> {
    let mut out = Vec::new();
    rules(policy, &mut |rule, requirement| {
        let outcome = if rule == "max_age" { Outcome::Info } else { Outcome::NotChecked };
        out.push(Verdict { rule, requirement, outcome, message: None });
    });
    out
}

/// Runs every rule of `policy` on `candidate`.
pub fn check(policy: &PasswordPolicy, candidate: Candidate<'_>, facts: &Facts<'_>) -> Report {
    let password = candidate.0;
    let chars = password.chars().count();
    let mut verdicts = Vec::new();
    let strength = strength(password, facts.context);
    rules(policy, &mut |rule, requirement| {
        let result: Option<Result<(), String>> = match rule.as_str() {
            "min_length" => Some(if chars >= policy.min_length {
                Ok(())
            } else {
                Err(format!("Too short: {chars} characters; use at least {}.", policy.min_length))
            }),
            "max_length" => policy.max_length.map(|max| {
                if chars <= max {
                    Ok(())
                } else {
                    Err(format!("Too long: {chars} characters; use at most {max}."))
                }
            }),
            "character_classes" => {
                let present: Vec<_> =
                    policy.classes.iter().filter(|c| password.chars().any(|ch| c.contains(ch))).collect();
                Some(if present.len() >= policy.min_classes {
                    Ok(())
                } else {
                    Err(format!(
                        "Uses {} of the character kinds; mix in at least {} of: {}.",
                        present.len(),
                        policy.min_classes,
                        class_list(policy)
                    ))
                })
            }
            "min_score" => policy.min_score.map(|min| {
                if strength.score >= min {
                    Ok(())
                } else {
                    Err(format!("Too easy to guess (strength {} of 4; needs {min}).", strength.score))
                }
            }),
            "personal_info" => Some(match facts.context.found_in(password) {
                None => Ok(()),
                Some(_) => Err("Contains your login, your name or your mail address.".into()),
            }),
            "blocklist" => Some(if facts.blocklist.contains(password) {
                Err("Is a common or previously breached password.".into())
            } else {
                Ok(())
            }),
            "history" => facts.history.map(|h| {
                if history::contains(h, policy.history, password) {
                    Err(format!("Was one of your last {} passwords; choose a new one.", policy.history))
                } else {
                    Ok(())
                }
            }),
            "min_age" => Some(min_age(policy, facts)),
            "max_age" => None,
            pattern => pattern_verdict(policy, pattern, password),
        };
        let (outcome, message) = match result {
            Some(Ok(())) => (Outcome::Pass, None),
            Some(Err(m)) => (Outcome::Fail, Some(m)),
            None if rule == "max_age" => (Outcome::Info, None),
            None => (Outcome::NotChecked, None),
        };
        verdicts.push(Verdict { rule, requirement, outcome, message });
    });
    Report { policy: policy.name.to_string(), verdicts, strength: Some(strength) }
}

/// Calls `f(rule id, requirement)` for every rule the policy has,
/// in the order users read them.
fn rules(policy: &PasswordPolicy, f: &mut dyn FnMut(String, String)) {
    f("min_length".into(), format!("At least {} characters", policy.min_length));
    if let Some(max) = policy.max_length {
        f("max_length".into(), format!("At most {max} characters"));
    }
    if policy.min_classes > 0 {
        f("character_classes".into(), format!("At least {} of: {}", policy.min_classes, class_list(policy)));
    }
    for (i, p) in policy.patterns.iter().enumerate() {
        f(format!("pattern_{}", i + 1), p.message.clone());
    }
    if let Some(min) = policy.min_score {
        f("min_score".into(), format!("Hard to guess (strength at least {min} of 4)"));
    }
    if policy.reject_personal_info {
        f("personal_info".into(), "Does not contain your login, your name or your mail address".into());
    }
    if policy.use_blocklist {
        f("blocklist".into(), "Is not a common or previously breached password".into());
    }
    if policy.history > 0 {
        f("history".into(), format!("Is not one of your last {} passwords", policy.history));
    }
    if let Some(age) = policy.min_age {
        f("min_age".into(), format!("Can be changed again {} after a change", human(age)));
    }
    if let Some(age) = policy.max_age {
        f("max_age".into(), format!("Expires {} after it is set", human(age)));
    }
}

fn pattern_verdict(policy: &PasswordPolicy, rule: &str, password: &str) -> Option<Result<(), String>> {
    let index: usize = rule.strip_prefix("pattern_")?.parse().ok()?;
    let p = policy.patterns.get(index.checked_sub(1)?)?;
    Some(if p.regex.is_match(password) == p.must_match { Ok(()) } else { Err(p.message.clone()) })
}

fn min_age(policy: &PasswordPolicy, facts: &Facts<'_>) -> Result<(), String> {
    let (Some(age), Some(changed)) = (policy.min_age, facts.changed_at) else { return Ok(()) };
    if facts.forced {
        return Ok(());
    }
    let next = changed + age;
    if facts.now >= next {
        Ok(())
    } else {
        let wait = Duration::try_from(next - facts.now).unwrap_or_default();
        Err(format!("Was changed too recently; you can change it again in {}.", human(round_up(wait))))
    }
}

/// zxcvbn with the user's personal words; it reads at most the first
/// 100 characters, which bounds its cost.
fn strength(password: &str, context: &UserContext) -> Strength {
    let words: Vec<&str> = context.words.iter().map(String::as_str).collect();
    let entropy = zxcvbn::zxcvbn(password, &words);
    let feedback = entropy.feedback();
    Strength {
        score: u8::from(entropy.score()),
        warning: feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
        suggestions: feedback.map(|f| f.suggestions().iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
    }
}

fn class_list(policy: &PasswordPolicy) -> String {
    policy.classes.iter().map(|c| c.label()).collect::<Vec<_>>().join(", ")
}

fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().div_ceil(60).max(1) * 60)
}

/// "90 days", "12 hours", "30 minutes": what users read.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 86_400 && s % 86_400 == 0 {
        (s / 86_400, "day")
    } else if s >= 3_600 && s % 3_600 == 0 {
        (s / 3_600, "hour")
    } else if s >= 60 {
        (s.div_ceil(60), "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
