//! `POST /v1/passwords/check`: every password rule's verdict for a
//! candidate. The candidate is never logged and is wiped after use.
//!
//! With a `lookup` token: every rule but history (what the self-service
//! page's meter shows). With an `admin` token the user's password history
//! is checked too, as `mailwarrant password-check` does: an oracle for
//! old passwords is an administrator's tool only.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::{ApiError, ApiJson};
use super::identities::clean_login;
use super::Caller;
use crate::config::http::Scope;
use crate::http::HttpState;
use crate::password::Report;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    login: String,
    password: String,
}

pub async fn check(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<Report>, ApiError> {
    let grant = caller.require(Scope::Lookup)?;
    let PasswordBody { login, password } = body;
    let password = zeroize::Zeroizing::new(password);
    let login = clean_login(&login)?;
    if password.len() > crate::auth::MAX_PASSWORD_LEN {
        return Err(ApiError::invalid("password: at most 1024 bytes"));
    }
    let now = OffsetDateTime::now_utc();
    if grant.allows(Scope::Admin) {
        return match s.passwords.admin_check(login, &password, now).await {
            Ok(Some(report)) => Ok(Json(report)),
            Ok(None) => Err(ApiError::not_found("no such login in the directory")),
            Err(e) => Err(ApiError::unavailable("directory or store", &e)),
        };
    }
    Ok(Json(s.passwords.live_check(login, &password, now)))
}
