//! The HTML of the self-service page (maud: every value is escaped).
//!
//! Works without JavaScript: step one asks for the login, step two shows
//! the rules of *that* user's policy and the change form. `password.js`
//! only adds the live per-rule feedback and the strength meter. Every
//! field has a `<label>`, messages use `role="alert"`, and the layout is a
//! single column that fits a phone.

use maud::{html, Markup};

use crate::config::http::PASSWORD_PAGE_PATH;
use crate::password::{Outcome, Verdict};

/// A notice above the form.
pub struct Notice<'a> {
    pub success: bool,
    pub text: &'a str,
}

/// Step two: the change form.
pub struct FormView<'a> {
    pub base: &'a str,
    pub token: &'a str,
    pub login: &'a str,
    pub policy: &'a str,
    pub rules: &'a [Verdict],
    pub notice: Option<Notice<'a>>,
}

fn page(base: &str, title: &str, body: Markup) -> Markup {
    super::layout::page(base, "/password/static/password.css", title, body)
}

fn notice(n: &Option<Notice<'_>>) -> Markup {
    html! {
        @if let Some(n) = n {
            div id="notice" class={ "notice " @if n.success { "success" } @else { "error" } } role="alert" tabindex="-1" {
                (n.text)
            }
        }
    }
}

/// Step one: whose password.
pub fn login_step(base: &str, n: Option<Notice<'_>>) -> Markup {
    page(
        base,
        "Change your mail password",
        html! {
            h1 { "Change your mail password" }
            (notice(&n))
            form method="get" action={ (base) (PASSWORD_PAGE_PATH) } {
                label for="login" { "Login or mail address" }
                input id="login" name="login" type="text" autocomplete="username" autocapitalize="none"
                    spellcheck="false" required autofocus;
                button type="submit" { "Continue" }
            }
        },
    )
}

/// Step two: rules and the change form.
pub fn change_form(v: &FormView<'_>) -> Markup {
    page(
        v.base,
        "Change your mail password",
        html! {
            h1 { "Change your mail password" }
            (notice(&v.notice))
            form id="change" method="post" action={ (v.base) (PASSWORD_PAGE_PATH) }
                data-check-url={ (v.base) "/password/check" } {
                input type="hidden" name="csrf" value=(v.token);
                label for="login" { "Login or mail address" }
                input id="login" name="login" type="text" autocomplete="username" autocapitalize="none"
                    spellcheck="false" required value=(v.login);
                label for="current" { "Current password" }
                input id="current" name="current" type="password" autocomplete="current-password" required;
                label for="new" { "New password" }
                input id="new" name="new" type="password" autocomplete="new-password" required
                    aria-describedby="rules-title strength-text";
                section aria-labelledby="rules-title" {
                    h2 id="rules-title" { "Your new password must meet these rules" }
                    p class="policy" { "Policy: " span id="policy" { (v.policy) } }
                    (rules_list(v.rules))
                    div class="strength" {
                        meter id="strength" min="0" max="4" low="2" high="3" optimum="4" value="0" hidden {}
                        p id="strength-text" aria-live="polite" {}
                    }
                }
                label for="confirm" { "New password again" }
                input id="confirm" name="confirm" type="password" autocomplete="new-password" required;
                p id="confirm-text" aria-live="polite" {}
                button type="submit" { "Change password" }
            }
            p { a href={ (v.base) (PASSWORD_PAGE_PATH) } { "Another login" } }
            script src={ (v.base) "/password/static/password.js" } {}
        },
    )
}

/// The rule list; failed rules carry their message.
pub fn rules_list(rules: &[Verdict]) -> Markup {
    html! {
        ul id="rules" {
            @for r in rules {
                li data-rule=(r.rule) class=(outcome_class(r.outcome)) {
                    span class="mark" aria-hidden="true" { (mark(r.outcome)) }
                    span class="requirement" { (r.requirement) }
                    @if let Some(m) = &r.message {
                        " " span class="why" { (m) }
                    }
                }
            }
        }
    }
}

/// After a successful change. `confirms`: a mailer is configured, so a
/// confirmation goes out (the page must not promise one that never comes).
pub fn changed(base: &str, login: &str, confirms: bool) -> Markup {
    page(
        base,
        "Password changed",
        html! {
            h1 { "Password changed" }
            div id="notice" class="notice success" role="alert" {
                "The password of " strong { (login) } " was changed. "
                "Use the new password in your mail program now."
                @if confirms { " A confirmation mail is on its way." }
            }
            p { a href={ (base) (PASSWORD_PAGE_PATH) } { "Change another password" } }
        },
    )
}

/// A refusal with no form (CSRF, wrong origin, outage).
pub fn plain(base: &str, title: &str, text: &str) -> Markup {
    page(
        base,
        title,
        html! {
            h1 { (title) }
            div id="notice" class="notice error" role="alert" { (text) }
            p { a href={ (base) (PASSWORD_PAGE_PATH) } { "Open the page again" } }
        },
    )
}

fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "rule pass",
        Outcome::Fail => "rule fail",
        Outcome::NotChecked => "rule unchecked",
        Outcome::Info => "rule info",
    }
}

fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "✓",
        Outcome::Fail => "✗",
        Outcome::NotChecked => "•",
        Outcome::Info => "ℹ",
    }
}
