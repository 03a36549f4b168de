//! The admin pages' HTML (maud escapes every value; no inline script or
//! style, so the strict CSP holds).

use maud::{html, Markup};

use crate::policy_service::audit::AuditRecord;
use crate::policy_service::explain::PolicyReport;

/// The user page's AUTH section: the login's failure budget and the
/// Unlock form.
pub struct AuthPanel<'a> {
    /// Failures counted against the login; `None` when the store cannot
    /// answer.
    pub failures: Option<i64>,
    /// `[auth.throttle] per_login`.
    pub budget: u32,
    /// The Unlock form's CSRF token.
    pub csrf: &'a str,
}

/// One row of the group → profile table.
pub struct MappingRow {
    pub group: String,
    pub profile: String,
    pub priority: String,
    pub mode: String,
}

fn page(base: &str, title: &str, signed_in: bool, body: Markup) -> Markup {
    let main = html! {
        header {
            h1 { "mailwarrant" }
            @if signed_in {
                nav {
                    a href={ (base) "/admin" } { "Overview" }
                    a href={ (base) "/admin/user" } { "Look up a user" }
                    form.inline method="post" action={ (base) "/admin/logout" } {
                        button type="submit" id="logout" { "Sign out" }
                    }
                }
            }
        }
        (body)
    };
    crate::http::layout::page(base, "/admin/static/admin.css", title, main)
}

pub fn login(base: &str, token: &str, error: Option<&str>, directory: bool) -> Markup {
    page(
        base,
        "Admin sign-in",
        false,
        html! {
            h2 { "Sign in" }
            @if let Some(e) = error {
                div id="notice" class="notice" role="alert" { (e) }
            }
            form method="post" action={ (base) "/admin/login" } id="signin" {
                input type="hidden" name="csrf" value=(token);
                label for="token" { "Admin API token" }
                input type="password" id="token" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
            @if directory {
                h2 { "Or with your directory account" }
                form method="post" action={ (base) "/admin/login" } id="directory-signin" {
                    input type="hidden" name="csrf" value=(token);
                    label for="login" { "Login" }
                    input type="text" id="login" name="login" autocomplete="username" required;
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub fn overview(base: &str, mapping: &[MappingRow], refusals: &[AuditRecord], policy: bool) -> Markup {
    page(
        base,
        "Overview",
        true,
        html! {
            (lookup_form(base, ""))
            h2 { "Groups and profiles" }
            @if !policy {
                p.muted { "No [policy] section is configured." }
            } @else {
                p.muted { "From the configuration file; change it there and reload (SIGHUP)." }
                table id="mapping" {
                    thead { tr { th { "Group" } th { "Profile" } th { "Priority" } th { "Mode" } } }
                    tbody {
                        @for r in mapping {
                            tr { td { (r.group) } td { (r.profile) } td.num { (r.priority) } td { (r.mode) } }
                        }
                    }
                }
            }
            h2 { "Recent refusals" }
            (decisions(base, refusals, "refusals"))
        },
    )
}

fn decisions(base: &str, records: &[AuditRecord], id: &str) -> Markup {
    html! {
        @if records.is_empty() {
            p.muted id=(id) { "None recorded." }
        } @else {
            table id=(id) {
                thead { tr { th { "Time" } th { "Login" } th { "Stage" } th { "Rule" } th { "Reply" } th { "Reference" } } }
                tbody {
                    @for r in records {
                        tr {
                            td { (r.at) }
                            td {
                                @if let Some(l) = &r.login {
                                    a href={ (base) "/admin/user?login=" (urlencode(l)) } { (l) }
                                }
                            }
                            td { (r.stage) }
                            td class=@if r.rule != "accepted" { "refused" } { (r.rule) }
                            td { (r.reply) }
                            td { code { (r.reference) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn user_form(base: &str, login: &str, error: Option<&str>) -> Markup {
    page(
        base,
        "Look up a user",
        true,
        html! {
            (lookup_form(base, login))
            @if let Some(e) = error {
                div id="notice" class="notice" role="alert" { (e) }
            }
        },
    )
}

fn lookup_form(base: &str, login: &str) -> Markup {
    html! {
        form method="get" action={ (base) "/admin/user" } id="lookup" {
            label for="login" { "Login" }
            input type="text" id="login" name="login" value=(login) autocomplete="off" required;
            button type="submit" { "Show" }
        }
    }
}

pub fn user(
    base: &str,
    report: &PolicyReport,
    recent: &[AuditRecord],
    auth: Option<AuthPanel<'_>>,
    notice: Option<&str>,
) -> Markup {
    page(
        base,
        &format!("{} — policy", report.login),
        true,
        html! {
            (lookup_form(base, &report.login))
            @if let Some(n) = notice {
                div id="done" class="done" role="status" { (n) }
            }
            h2 id="user" { (report.login) }
            p { "Groups: " (if report.groups.is_empty() { "(none)".to_owned() } else { report.groups.join(", ") }) }
            p { "Profiles, first wins: " (report.profiles.join(" > ")) }
            @if let Some(a) = auth {
                (auth_panel(base, &report.login, &a))
            }
            h2 { "Resolved policy" }
            table id="policy" {
                thead { tr { th { "Field" } th { "Value" } th { "Profile" } th { "Group" } } }
                tbody {
                    @for f in &report.fields {
                        tr { td { (f.field) } td { (f.value) } td { (f.profile) } td { (f.group.as_deref().unwrap_or("—")) } }
                    }
                }
            }
            h2 { "Usage" }
            @if report.counters.is_empty() {
                p.muted id="usage" { "No rate limits apply." }
            } @else {
                table id="usage" {
                    thead { tr { th { "Limit" } th { "Used" } th { "Of" } th { "Resets" } } }
                    tbody {
                        @for c in &report.counters {
                            tr {
                                td { (c.name) }
                                td.num { (c.used) }
                                td.num { (c.limit) }
                                td { (c.resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            h2 { "Recent recorded decisions" }
            p.muted { "Refusals and observe-mode findings from the policy audit trail." }
            (decisions(base, recent, "recent"))
        },
    )
}

/// A user's page when no `[policy]` is configured: the AUTH section only.
pub fn user_auth_only(base: &str, login: &str, auth: Option<AuthPanel<'_>>, notice: Option<&str>) -> Markup {
    page(
        base,
        login,
        true,
        html! {
            (lookup_form(base, login))
            @if let Some(n) = notice {
                div id="done" class="done" role="status" { (n) }
            }
            h2 id="user" { (login) }
            p.muted { "No [policy] section is configured." }
            @if let Some(a) = auth {
                (auth_panel(base, login, &a))
            }
        },
    )
}

fn auth_panel(base: &str, login: &str, a: &AuthPanel<'_>) -> Markup {
    let spent = a.failures.is_some_and(|f| f >= i64::from(a.budget));
    html! {
        h2 { "SMTP AUTH" }
        p id="auth-failures" {
            "Failed passwords counted: "
            @match a.failures {
                Some(f) => { strong { (f) } " of " (a.budget) }
                None => { "unknown (the store cannot answer)" }
            }
            @if spent {
                span.refused { " — spent: every password not known to be right gets “try later”." }
            }
        }
        p.muted { "Unlock forgets them on every instance; the directory is asked again at the next AUTH." }
        form method="post" action={ (base) "/admin/user/unlock" } id="unlock" {
            input type="hidden" name="csrf" value=(a.csrf);
            input type="hidden" name="login" value=(login);
            button type="submit" { "Unlock" }
        }
    }
}

pub fn plain(base: &str, title: &str, text: &str) -> Markup {
    page(base, title, false, html! { h2 { (title) } p id="notice" { (text) } })
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
