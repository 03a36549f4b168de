//! `/admin`: pages for administrators. The config file stays the source
//! of truth; nothing here writes policy. The one action is Unlock on a
//! user's page (a CSRF-checked form post): it clears the login's AUTH
//! failure budget, audited like the CLI and API unlocks.
//!
//! Sign-in takes an API token with the `admin` scope (a form with a CSRF
//! token, as the password page does) and sets a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` behind an
//! https base URL). The session lives in the store under the SHA-256 of
//! its id, so reading the store yields no usable cookie. A request with
//! `Authorization: Bearer <admin token>` works without a session (for
//! scripts). With `[http] admin_group`, members of that directory group
//! (direct or nested) may sign in with their own login and password,
//! checked by the AUTH core (same throttle, failure delay and audit line
//! as every other AUTH).

mod view;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use rand::{RngCore, TryRngCore};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{csrf, HttpState, Peer};
use crate::auth::{AuthRequest, Protocol};
use crate::config::http::Scope;
use crate::http::layout::respond as html;
use crate::policy_service::explain::{self, ExplainError};
use view::MappingRow;

pub const COOKIE: &str = "mw_admin";
/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const CSS: &str = include_str!("../assets/admin.css");
/// Decisions shown per table.
const SHOWN: usize = 50;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/user", get(user))
        .route("/admin/user/unlock", post(unlock))
        .route("/admin/static/admin.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
}

fn session_key(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("admin:session:{hex}")
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Who is signed in: the token name, or `None`.
async fn signed_in(s: &HttpState, headers: &HeaderMap, peer: SocketAddr) -> Result<Option<String>, Response> {
    if let Some(token) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Ok(match s.tokens.verify(token.trim(), s.client(peer, headers)).await {
            Some(g) if g.allows(Scope::Admin) => Some(g.name.clone()),
            _ => None,
        });
    }
    let Some(id) = cookie_value(headers, COOKIE).filter(|v| !v.is_empty() && v.len() <= 64) else {
        return Ok(None);
    };
    match s.store.get(&session_key(id)).await {
        Ok(Some(name)) => Ok(Some(String::from_utf8_lossy(&name).into_owned())),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "store unavailable; cannot check the admin session");
            Err(html(StatusCode::SERVICE_UNAVAILABLE, view::plain(base(s), "Unavailable", "The store cannot answer.")))
        }
    }
}

/// The page, or the way to the sign-in form.
macro_rules! require_admin {
    ($s:expr, $headers:expr, $peer:expr) => {
        match signed_in(&$s, &$headers, $peer).await {
            Ok(Some(name)) => name,
            Ok(None) => return Redirect::to(&format!("{}/admin/login", base(&$s))).into_response(),
            Err(r) => return r,
        }
    };
}

async fn overview(State(s): State<HttpState>, Peer(peer): Peer, headers: HeaderMap) -> Response {
    require_admin!(s, headers, peer);
    let mut rows = Vec::new();
    if let Some(policy) = &s.policy {
        let settings = policy.settings();
        let set = &settings.set;
        for (group, profile) in &set.group_profiles {
            let p = set.profiles.iter().find(|p| p.name == *profile);
            rows.push(MappingRow {
                group: group.clone(),
                profile: profile.to_string(),
                priority: p.map(|p| p.priority.to_string()).unwrap_or_default(),
                mode: p
                    .and_then(|p| p.mode)
                    .map(|m| format!("{m:?}"))
                    .unwrap_or_else(|| format!("{:?} (global)", set.mode)),
            });
        }
        rows.push(MappingRow {
            group: "(everyone else)".into(),
            profile: set.default.name.to_string(),
            priority: "last".into(),
            mode: format!("{:?} (global)", set.mode),
        });
    }
    let refusals = match s.policy {
        Some(_) => match super::api::policy::recent(&s, SHOWN, None).await {
            Ok(r) => r.into_iter().filter(|r| r.rule != "accepted").collect(),
            Err(_) => return unavailable(&s),
        },
        None => Vec::new(),
    };
    html(StatusCode::OK, view::overview(base(&s), &rows, &refusals, s.policy.is_some()))
}

#[derive(Deserialize)]
struct UserQuery {
    #[serde(default)]
    login: String,
}

async fn user(
    State(s): State<HttpState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<UserQuery>,
) -> Response {
    require_admin!(s, headers, peer);
    let typed = q.login.trim();
    if typed.is_empty() {
        return html(StatusCode::OK, view::user_form(base(&s), "", None));
    }
    if !is_login(typed) {
        return html(StatusCode::BAD_REQUEST, view::user_form(base(&s), "", Some("That is not a login.")));
    }
    user_page(&s, typed, None).await
}

/// What can be a login: the checks the API applies, before the directory.
fn is_login(typed: &str) -> bool {
    !typed.is_empty() && typed.len() <= crate::auth::MAX_LOGIN_LEN && !typed.chars().any(char::is_control)
}

/// One user's page; `notice` reports an action just done. Carries a fresh
/// CSRF token for the Unlock form.
async fn user_page(s: &HttpState, typed: &str, notice: Option<&str>) -> Response {
    let Some(policy) = &s.policy else {
        return auth_only_page(s, typed, notice).await;
    };
    match explain::policy_report(policy, typed, None, OffsetDateTime::now_utc()).await {
        Ok(report) => {
            let recent = match super::api::policy::recent(s, SHOWN, Some(&report.login)).await {
                Ok(r) => r,
                Err(_) => return unavailable(s),
            };
            let token = match csrf::issue(&s.store).await {
                Ok(t) => t,
                Err(_) => return unavailable(s),
            };
            let auth = auth_panel(s, &report.login, &token).await;
            with_csrf_cookie(s, &token, html(StatusCode::OK, view::user(base(s), &report, &recent, auth, notice)))
        }
        Err(ExplainError::UnknownUser(_)) => not_in_directory(s, typed),
        Err(e) => {
            tracing::warn!(error = %e, "admin page: lookup failed");
            unavailable(s)
        }
    }
}

/// Without `[policy]` there is no policy to show, but a throttled login
/// still needs its failure count and Unlock.
async fn auth_only_page(s: &HttpState, typed: &str, notice: Option<&str>) -> Response {
    let login = match s.identities.get(typed).await {
        Ok(Some(identity)) => identity.login.as_str().to_owned(),
        Ok(None) => return not_in_directory(s, typed),
        Err(e) => {
            tracing::warn!(error = %e, "admin page: lookup failed");
            return unavailable(s);
        }
    };
    let token = match csrf::issue(&s.store).await {
        Ok(t) => t,
        Err(_) => return unavailable(s),
    };
    let auth = auth_panel(s, &login, &token).await;
    with_csrf_cookie(s, &token, html(StatusCode::OK, view::user_auth_only(base(s), &login, auth, notice)))
}

/// The login's failure budget and the Unlock form, when the AUTH core
/// runs in this process.
async fn auth_panel<'a>(s: &HttpState, login: &str, csrf: &'a str) -> Option<view::AuthPanel<'a>> {
    let auth = s.auth.as_ref()?;
    Some(view::AuthPanel { failures: auth.login_failures(login).await.ok(), budget: auth.login_budget(), csrf })
}

fn not_in_directory(s: &HttpState, typed: &str) -> Response {
    html(StatusCode::NOT_FOUND, view::user_form(base(s), typed, Some("No such login in the directory.")))
}

#[derive(Deserialize)]
struct UnlockForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    login: String,
}

/// The Unlock button: clears the login's failure budget in the store (so
/// on every instance), audited with who pressed it, then shows the page
/// again with the outcome.
async fn unlock(
    State(s): State<HttpState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<UnlockForm>,
) -> Response {
    if let Some(refused) = refuse_bad_form(&s, form.csrf.as_deref(), &headers).await {
        return refused;
    }
    let who = require_admin!(s, headers, peer);
    let typed = form.login.trim();
    if !is_login(typed) {
        return html(StatusCode::BAD_REQUEST, view::user_form(base(&s), "", Some("That is not a login.")));
    }
    let Some(auth) = &s.auth else {
        let text = "The AUTH core is not running in this process; there is nothing to unlock.";
        return html(StatusCode::NOT_IMPLEMENTED, view::plain(base(&s), "Not available", text));
    };
    match crate::auth::unlock::unlock(auth, typed, &who, crate::auth::unlock::Surface::AdminPage).await {
        Ok(done) => {
            let notice = if done.budget_live {
                format!("Unlocked {}: its failed passwords are forgotten on every instance.", done.login)
            } else {
                format!("{} had no failed passwords counted; nothing to clear.", done.login)
            };
            user_page(&s, typed, Some(&notice)).await
        }
        Err(e) => {
            tracing::error!(error = %e, "admin unlock: store unavailable");
            unavailable(&s)
        }
    }
}

/// The CSRF check every admin form post passes first: `Some` is the
/// refusal to send.
async fn refuse_bad_form(s: &HttpState, token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    match csrf::check_form(&s.store, &s.settings.public_origin, token, headers).await {
        Ok(csrf::FormCheck::Valid) => None,
        Ok(_) => {
            tracing::warn!(target: "audit", event = "admin.forbidden", reason = "csrf");
            let text = "This form has expired or was not sent from this page. Open the page again and retry.";
            Some(html(StatusCode::FORBIDDEN, view::plain(base(s), "Request refused", text)))
        }
        Err(_) => Some(unavailable(s)),
    }
}

/// Sets the CSRF cookie that goes with a form's token.
fn with_csrf_cookie(s: &HttpState, token: &str, mut response: Response) -> Response {
    if let Ok(v) = csrf::set_cookie(token, secure(s)).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn login_form(State(s): State<HttpState>) -> Response {
    form_page(&s, StatusCode::OK, None).await
}

async fn form_page(s: &HttpState, status: StatusCode, error: Option<&str>) -> Response {
    let token = match csrf::issue(&s.store).await {
        Ok(t) => t,
        Err(_) => return unavailable(s),
    };
    let directory = s.settings.admin_group.is_some() && s.auth.is_some();
    with_csrf_cookie(s, &token, html(status, view::login(base(s), &token, error, directory)))
}

/// The sign-in form as posted (public for the `http_form` fuzz target).
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub login: String,
    #[serde(default)]
    pub password: String,
}

async fn login(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let LoginForm { csrf: csrf_token, token, login, password } = form;
    let token = zeroize::Zeroizing::new(token);
    let password = SecretString::from(password);
    if let Some(refused) = refuse_bad_form(&s, csrf_token.as_deref(), &headers).await {
        return refused;
    }
    let who = if !login.trim().is_empty() {
        match directory_admin(&s, login, password, s.client(peer, &headers)).await {
            Some(name) => name,
            None => {
                tracing::warn!(target: "audit", event = "admin.sign_in_refused", method = "directory");
                return form_page(&s, StatusCode::UNAUTHORIZED, Some("Sign-in refused.")).await;
            }
        }
    } else {
        let grant = s.tokens.verify(token.trim(), s.client(peer, &headers)).await;
        let Some(grant) = grant.filter(|g| g.allows(Scope::Admin)) else {
            tracing::warn!(target: "audit", event = "admin.sign_in_refused", method = "token");
            return form_page(&s, StatusCode::UNAUTHORIZED, Some("That is not an admin token.")).await;
        };
        format!("token:{}", grant.name)
    };
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut bytes);
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    if s.store.set(&session_key(&id), who.as_bytes(), Some(SESSION_LIFETIME)).await.is_err() {
        return unavailable(&s);
    }
    tracing::info!(target: "audit", event = "admin.signed_in", who = %who);
    let mut response = Redirect::to(&format!("{}/admin", base(&s))).into_response();
    let cookie = format!(
        "{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure(&s) { "; Secure" } else { "" }
    );
    if let Ok(v) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// A directory sign-in: the AUTH core accepts the password and the user
/// is in `admin_group`. Refusals are generic and wait out the AUTH
/// failure delay.
async fn directory_admin(s: &HttpState, login: String, password: SecretString, client: IpAddr) -> Option<String> {
    let group = s.settings.admin_group.as_deref()?;
    let auth = s.auth.as_ref()?;
    let request = AuthRequest { login, authzid: None, password, client: Some(client), protocol: Protocol::Http };
    let decision = auth.authenticate(request).await;
    let member = match (decision.is_accepted(), &decision.login) {
        (true, Some(login)) => match s.identities.get(login.as_str()).await {
            Ok(Some(identity)) => identity.in_group(group),
            _ => false,
        },
        _ => false,
    };
    if !member {
        // A right password of a non-member waits like a wrong one.
        match decision.not_before {
            Some(_) => decision.wait().await,
            None => tokio::time::sleep(auth.settings_failure_delay()).await,
        }
        return None;
    }
    decision.login.map(|l| format!("user:{l}"))
}

async fn logout(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers, COOKIE).filter(|v| !v.is_empty() && v.len() <= 64) {
        let _ = s.store.delete(&session_key(id)).await;
    }
    let mut response = Redirect::to(&format!("{}/admin/login", base(&s))).into_response();
    if let Ok(v) = format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0").parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn secure(s: &HttpState) -> bool {
    s.settings.public_base_url.starts_with("https://")
}

fn base(s: &HttpState) -> &str {
    &s.settings.public_base_url
}

fn unavailable(s: &HttpState) -> Response {
    let text = "The directory or the store cannot answer right now. Try again in a few minutes.";
    html(StatusCode::SERVICE_UNAVAILABLE, view::plain(base(s), "Temporarily unavailable", text))
}
