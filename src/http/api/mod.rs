//! The JSON API under `/v1`, for submission servers, webmails, helpdesk
//! scripts and monitoring. Described by `schemas/openapi.json` (a test
//! holds the document and the router to the same routes).
//!
//! Every handler parses, asks a core (`auth`, `identity`, `directory`,
//! `policy_service`, `password`) and formats; none holds a rule. Callers
//! present `Authorization: Bearer <token>`; each route names the scope it
//! needs ([`Caller::require`]).

pub mod addresses;
pub mod auth;
pub mod error;
pub mod identities;
pub mod passwords;
pub mod policy;
pub mod tokens;
pub mod unlock;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use super::HttpState;
use crate::config::http::Scope;
pub use error::{ApiError, Code};
use tokens::Grant;

/// Every `/v1` route: method, path, handler. The router is built from
/// this table and the OpenAPI test compares `schemas/openapi.json` with it.
pub fn table() -> Vec<(&'static str, &'static str, MethodRouter<HttpState>)> {
    vec![
        ("POST", "/v1/auth", post(auth::authenticate)),
        ("GET", "/v1/identities/{login}", get(identities::show)),
        ("GET", "/v1/identities/{login}/policy", get(policy::show)),
        ("POST", "/v1/identities/{login}/unlock", post(unlock::unlock)),
        ("GET", "/v1/addresses/{address}", get(addresses::show)),
        ("POST", "/v1/policy/check", post(policy::check)),
        ("POST", "/v1/passwords/check", post(passwords::check)),
        ("GET", "/v1/refusals", get(policy::refusals)),
    ]
}

pub fn routes() -> Router<HttpState> {
    table().into_iter().fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
}

/// Unknown `/v1` paths get the error shape too.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A caller with a valid token.
pub struct Caller(pub Arc<Grant>);

impl Caller {
    /// Refuses with 403 unless the token has `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<&Grant, ApiError> {
        if self.0.allows(scope) {
            Ok(&self.0)
        } else {
            tracing::warn!(token = %self.0.name, scope = scope.as_str(), "API call refused: scope missing");
            Err(ApiError::new(Code::Forbidden, format!("this token lacks the {} scope", scope.as_str())))
        }
    }
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        let Ok(super::Peer(peer)) = super::Peer::from_request_parts(parts, state).await;
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let Some(token) = presented else {
            return Err(ApiError::new(Code::Unauthenticated, "send Authorization: Bearer <token>"));
        };
        match state.tokens.verify(token, state.client(peer, &parts.headers)).await {
            Some(grant) => Ok(Caller(grant)),
            None => Err(ApiError::new(Code::Unauthenticated, "unknown token")),
        }
    }
}
