//! `GET /v1/identities/{login}`: who a login is, from the identity cache.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use time::OffsetDateTime;

use super::error::{ApiError, ApiPath};
use super::Caller;
use crate::config::http::Scope;
use crate::http::HttpState;
use crate::identity::{AccountStatus, Address, GroupRef, Identity};

#[derive(Serialize)]
pub struct IdentityView<'a> {
    pub login: &'a str,
    pub dn: &'a str,
    pub display_name: &'a str,
    pub primary_address: Option<&'a Address>,
    pub aliases: &'a [Address],
    pub send_as: &'a [Address],
    /// Direct groups first, then nested ones (`direct: false`).
    pub groups: &'a [GroupRef],
    pub account: AccountView,
}

#[derive(Serialize)]
pub struct AccountView {
    pub status: AccountStatus,
    pub enabled: bool,
    pub locked: bool,
    pub must_change: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_changed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_expires_at: Option<OffsetDateTime>,
    /// Whole days until the password expires; negative once it has.
    pub days_left: Option<i64>,
}

impl<'a> IdentityView<'a> {
    pub fn of(i: &'a Identity, now: OffsetDateTime) -> Self {
        let a = &i.account;
        IdentityView {
            login: i.login.as_str(),
            dn: &i.dn,
            display_name: &i.display_name,
            primary_address: i.primary_address.as_ref(),
            aliases: &i.aliases,
            send_as: &i.send_as,
            groups: &i.groups,
            account: AccountView {
                status: a.status(now),
                enabled: a.enabled,
                locked: a.locked,
                must_change: a.must_change,
                password_changed_at: a.password_changed_at,
                password_expires_at: a.password_expires_at,
                days_left: a.days_left(now),
            },
        }
    }
}

/// Rejects what cannot be a login before it reaches the directory.
pub fn clean_login(typed: &str) -> Result<&str, ApiError> {
    let t = typed.trim();
    if t.is_empty() || t.len() > crate::auth::MAX_LOGIN_LEN || t.chars().any(char::is_control) {
        return Err(ApiError::invalid("login: 1 to 256 printable characters"));
    }
    Ok(t)
}

pub async fn show(
    State(s): State<HttpState>,
    caller: Caller,
    ApiPath(login): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Scope::Lookup)?;
    let login = clean_login(&login)?;
    match s.identities.get(login).await {
        Ok(Some(identity)) => Ok(axum::response::IntoResponse::into_response(Json(IdentityView::of(
            &identity,
            OffsetDateTime::now_utc(),
        )))),
        Ok(None) => Err(ApiError::not_found("no such login in the directory")),
        Err(e) => Err(ApiError::unavailable("directory", &e)),
    }
}
