//! `/password`: the self-service change page and its live check endpoint.
//!
//! - `GET /password` asks for the login; `GET /password?login=alice`
//!   shows the form (with a fresh CSRF token) and the default rules, the
//!   same for every login: nothing about alice is shown before her
//!   current password is proven.
//! - `POST /password` (form): Origin check, CSRF token, then the change
//!   flow of [`crate::password::change`]. An unknown login, a wrong current
//!   password and a disabled or locked account get the same message,
//!   status and delay.
//! - `POST /password/check` (JSON `{login, password}`): every rule's
//!   verdict and zxcvbn's advice, for the live meter. The body is never
//!   logged; the endpoint is rate limited per client.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use super::password_view::{self as view, FormView, Notice};
use super::{csrf, HttpState};
use crate::config::http::PASSWORD_PAGE_PATH;
use crate::http::layout::respond as html;
use crate::password::{ChangeRequest, ChangeResult, Refusal, Report};

/// Longest login accepted; anything longer is nobody.
const MAX_LOGIN: usize = 256;
/// Live checks per client per minute.
const CHECKS_PER_MINUTE: i64 = 300;
/// Page views per client per minute (each stores a CSRF token).
const PAGES_PER_MINUTE: i64 = 120;

const JS: &str = include_str!("assets/password.js");
const CSS: &str = include_str!("assets/password.css");

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(PASSWORD_PAGE_PATH, get(show).post(submit))
        .route("/password/check", post(live_check))
        .route(
            "/password/static/password.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }),
        )
        .route(
            "/password/static/password.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
}

#[derive(Deserialize)]
struct ShowQuery {
    #[serde(default)]
    login: String,
}

async fn show(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ShowQuery>,
) -> Response {
    let client = s.client(peer, &headers);
    match s.store.incr(&format!("password:page:client:{client}"), 1, std::time::Duration::from_secs(60)).await {
        Ok(n) if n > PAGES_PER_MINUTE => {
            let text = "Too many requests from your address. Wait a minute, then try again.";
            return html(StatusCode::TOO_MANY_REQUESTS, view::plain(base(&s), "Too many requests", text));
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "store unavailable; cannot count page views");
            return unavailable(&s);
        }
    }
    let login = clean_login(&q.login);
    if login.is_empty() {
        return html(StatusCode::OK, view::login_step(base(&s), None));
    }
    form_page(&s, StatusCode::OK, login, None, None).await
}

/// The change form with a fresh token; `verdicts` replaces the plain
/// rule list after a refused attempt.
async fn form_page(
    s: &HttpState,
    status: StatusCode,
    login: &str,
    verdicts: Option<Report>,
    notice: Option<Notice<'_>>,
) -> Response {
    let token = match csrf::issue(&s.store).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "store unavailable; cannot issue a CSRF token");
            return unavailable(s);
        }
    };
    // The user's own rules only in the answer to a proven submission.
    let (policy, shown) = match verdicts {
        Some(report) => (report.policy, report.verdicts),
        None => {
            let rules = s.passwords.rules();
            (rules.policy, rules.rules)
        }
    };
    let markup =
        view::change_form(&FormView { base: base(s), token: &token, login, policy: &policy, rules: &shown, notice });
    let secure = s.settings.public_base_url.starts_with("https://");
    let mut response = html(status, markup);
    if let Ok(v) = csrf::set_cookie(&token, secure).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    login: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

async fn submit(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<ChangeForm>,
) -> Response {
    let client = s.client(peer, &headers);
    let ChangeForm { csrf: token, login, current, new, confirm } = form;
    let (current, new) = (SecretString::from(current), SecretString::from(new));
    let confirm_matches = {
        use secrecy::ExposeSecret;
        let matches = new.expose_secret() == confirm;
        drop(zeroize::Zeroizing::new(confirm));
        matches
    };
    match csrf::check_form(&s.store, &s.settings.public_origin, token.as_deref(), &headers).await {
        Ok(csrf::FormCheck::Valid) => {}
        Ok(csrf::FormCheck::CrossOrigin) => {
            tracing::warn!(target: "audit", event = "password.forbidden", %client, reason = "cross_origin");
            return forbidden(&s);
        }
        Ok(csrf::FormCheck::BadToken) => {
            tracing::warn!(target: "audit", event = "password.forbidden", %client, reason = "csrf");
            return forbidden(&s);
        }
        Err(e) => {
            tracing::error!(error = %e, "store unavailable; cannot check the CSRF token");
            return unavailable(&s);
        }
    }
    let login = clean_login(&login).to_owned();
    if login.is_empty() {
        return html(StatusCode::UNPROCESSABLE_ENTITY, view::login_step(base(&s), Some(error("Enter your login."))));
    }
    if !confirm_matches {
        let n = error("The two new passwords differ; type the same new password twice.");
        return form_page(&s, StatusCode::UNPROCESSABLE_ENTITY, &login, None, Some(n)).await;
    }
    let request = ChangeRequest { login: &login, current: &current, new: &new, client: Some(client) };
    match s.passwords.change(&request, OffsetDateTime::now_utc()).await {
        Ok(ChangeResult::Changed) => {
            html(StatusCode::OK, view::changed(base(&s), &login, s.passwords.sends_confirmations()))
        }
        Ok(ChangeResult::Refused(refusal)) => {
            let (status, text, verdicts) = match refusal {
                Refusal::Throttled => {
                    (StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait an hour, then try again.".to_owned(), None)
                }
                Refusal::WrongCredentials => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The login or the current password is not right.".to_owned(),
                    None,
                ),
                Refusal::Policy(report) => {
                    let first = report.failures().filter_map(|v| v.message.clone()).collect::<Vec<_>>().join(" ");
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("The new password was not accepted. {first}"),
                        Some(report),
                    )
                }
                Refusal::Directory(reason) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, reason.user_message().to_owned(), None)
                }
            };
            form_page(&s, status, &login, verdicts, Some(error(&text))).await
        }
        Err(e) => {
            tracing::error!(error = %e, login = %login, "password change could not run");
            unavailable(&s)
        }
    }
}

#[derive(Deserialize)]
struct CheckBody {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

async fn live_check(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<CheckBody>,
) -> Response {
    let CheckBody { login, password } = body;
    let password = zeroize::Zeroizing::new(password);
    let client = s.client(peer, &headers);
    let key = format!("password:check:client:{client}");
    match s.store.incr(&key, 1, std::time::Duration::from_secs(60)).await {
        Ok(n) if n > CHECKS_PER_MINUTE => return StatusCode::TOO_MANY_REQUESTS.into_response(),
        Ok(_) => {}
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
    let login = clean_login(&login);
    if password.is_empty() {
        let rules = s.passwords.rules();
        let report = crate::password::Report { policy: rules.policy, verdicts: rules.rules, strength: None };
        return Json(report).into_response();
    }
    Json(s.passwords.live_check(login, &password, OffsetDateTime::now_utc())).into_response()
}

fn clean_login(typed: &str) -> &str {
    let t = typed.trim();
    if t.len() > MAX_LOGIN || t.chars().any(char::is_control) {
        ""
    } else {
        t
    }
}

fn error(text: &str) -> Notice<'_> {
    Notice { success: false, text }
}

fn base(s: &HttpState) -> &str {
    &s.settings.public_base_url
}

fn forbidden(s: &HttpState) -> Response {
    let text = "This form has expired or was not sent from this page. Open the page again and retry.";
    html(StatusCode::FORBIDDEN, view::plain(base(s), "Request refused", text))
}

fn unavailable(s: &HttpState) -> Response {
    let text = "The service cannot reach the directory right now; nothing was changed. Try again in a few minutes.";
    html(StatusCode::SERVICE_UNAVAILABLE, view::plain(base(s), "Temporarily unavailable", text))
}
