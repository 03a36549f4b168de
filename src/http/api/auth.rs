//! `POST /v1/auth`: the AUTH decision over HTTP. The same core as the
//! Dovecot and saslauthd front ends: same throttle, credential cache,
//! failure delay and audit line.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson};
use super::Caller;
use crate::auth::{AuthRequest, Protocol};
use crate::config::http::Scope;
use crate::http::HttpState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthBody {
    login: String,
    password: String,
    /// The end user's address, for the per-client throttle.
    #[serde(default)]
    client_address: Option<String>,
    /// What the caller authenticates for (`smtp`, `imap`…), for logs.
    #[serde(default)]
    service: Option<String>,
}

#[derive(Serialize)]
pub struct AuthAnswer {
    /// `accepted`, `refused`, `password_expired`, `disabled`,
    /// `authz_refused`, `temporary`.
    pub outcome: &'static str,
    /// The canonical login when accepted (or a right password on a
    /// refused account).
    pub login: Option<String>,
    /// What to show the end user (empty when accepted).
    pub message: String,
}

pub async fn authenticate(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(body): ApiJson<AuthBody>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Auth)?;
    let AuthBody { login, password, client_address, service } = body;
    let password = SecretString::from(password);
    let client = match client_address.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(a.parse().map_err(|_| ApiError::invalid("client_address is not an IP address"))?),
    };
    if service.as_ref().is_some_and(|s| s.len() > 64 || s.chars().any(char::is_control)) {
        return Err(ApiError::invalid("service: at most 64 printable characters"));
    }
    let Some(auth) = &s.auth else {
        return Err(ApiError::new(super::Code::NotConfigured, "the AUTH core is not running"));
    };
    let request = AuthRequest { login, authzid: None, password, client, protocol: Protocol::Http };
    let decision = auth.authenticate(request).await;
    decision.wait().await;
    let answer = Json(AuthAnswer {
        outcome: decision.kind.as_str(),
        login: decision.login.as_ref().map(|l| l.to_string()),
        message: decision.reply_text.clone(),
    });
    // "Try later" is a 503 with Retry-After, so a caller that only looks
    // at the status never takes it for a wrong password.
    Ok(match decision.retry_after() {
        Some(after) => {
            let seconds = after.as_secs().to_string();
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, seconds)], answer).into_response()
        }
        None => answer.into_response(),
    })
}
