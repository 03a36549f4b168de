//! `POST /v1/identities/{login}/unlock`: an administrator clears a login's
//! AUTH failure budget, for the helpdesk whose user was throttled by a
//! phone with a stale password. Through the store, so every instance
//! sharing it checks the login's passwords again at once.

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, ApiPath};
use super::identities::clean_login;
use super::{Caller, Code};
use crate::auth::unlock::{self, Surface, Unlocked};
use crate::config::http::Scope;
use crate::http::HttpState;

pub async fn unlock(
    State(s): State<HttpState>,
    caller: Caller,
    ApiPath(login): ApiPath<String>,
) -> Result<Json<Unlocked>, ApiError> {
    let grant = caller.require(Scope::Admin)?;
    let login = clean_login(&login)?;
    let Some(auth) = &s.auth else {
        return Err(ApiError::new(Code::NotConfigured, "the AUTH core is not running"));
    };
    let by = format!("token:{}", grant.name);
    match unlock::unlock(auth, login, &by, Surface::Api).await {
        Ok(done) => Ok(Json(done)),
        Err(e) => Err(ApiError::unavailable("store", &e)),
    }
}
