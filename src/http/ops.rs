//! Operations: `/healthz` (the process answers), `/readyz` (the directory
//! and the store answer), `/metrics` (Prometheus). Served on `[http]`, or
//! on an `[ops]` listener of their own.
//!
//! `/readyz` asks the directory and the store at most once a second
//! whatever the request rate (a flood of probes does not become a flood
//! of LDAP searches), and tells anonymous callers only ready or not; a
//! bearer token with the `lookup` scope sees which component failed.
//! `/metrics` needs that token with `[http] ops_require_token`. `/readyz`
//! also sets the `mailwarrant_up{component}` gauges, and a background
//! check every [`CHECK_EVERY`] keeps them current between scrapes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;

use super::{HttpState, Peer};
use crate::directory::Directory;
use crate::serve::Shutdown;
use crate::store::Store;

/// Longest a health check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the gauges are refreshed without a `/readyz` call.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// A readiness answer is reused this long.
pub const READY_REUSE: Duration = Duration::from_secs(1);

/// Every operations route: method, path, handler (see `api::table`).
pub fn table() -> Vec<(&'static str, &'static str, MethodRouter<HttpState>)> {
    vec![
        ("GET", "/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) })),
        ("GET", "/readyz", get(readyz)),
        ("GET", "/metrics", get(metrics)),
    ]
}

pub fn routes() -> Router<HttpState> {
    table().into_iter().fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
}

#[derive(Clone, Serialize)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `ok`, or why the component failed.
    pub directory: String,
    pub store: String,
}

/// Asks both components at once and records the gauges.
pub async fn check(directory: &Arc<dyn Directory>, store: &Arc<dyn Store>) -> Readiness {
    let (d, s) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, directory.check_health()),
        tokio::time::timeout(CHECK_TIMEOUT, store.check_health())
    );
    let word = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => format!("error: no answer within {CHECK_TIMEOUT:?}"),
    };
    let directory = word(d.map(|r| r.map_err(|e| e.to_string())));
    let store = word(s.map(|r| r.map_err(|e| e.to_string())));
    crate::metrics::set_health("directory", directory == "ok");
    crate::metrics::set_health("store", store == "ok");
    let status = if directory == "ok" && store == "ok" { "ok" } else { "unavailable" };
    Readiness { status, directory, store }
}

/// The last readiness answer, shared by every `/readyz` caller.
#[derive(Default)]
pub struct ReadyCache(tokio::sync::Mutex<Option<(Instant, Readiness)>>);

impl ReadyCache {
    /// The answer of at most [`READY_REUSE`] ago, else a fresh one (one
    /// check at a time; the others wait for it).
    pub async fn get(&self, directory: &Arc<dyn Directory>, store: &Arc<dyn Store>) -> Readiness {
        let mut last = self.0.lock().await;
        if let Some((_, r)) = last.as_ref().filter(|(at, _)| at.elapsed() < READY_REUSE) {
            return r.clone();
        }
        let fresh = check(directory, store).await;
        *last = Some((Instant::now(), fresh.clone()));
        fresh
    }
}

/// Whether the caller shows a token with the `lookup` scope.
async fn with_token(s: &HttpState, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let grant = s.tokens.verify(token.trim(), s.client(peer, headers)).await;
    grant.is_some_and(|g| g.allows(crate::config::http::Scope::Lookup))
}

async fn readyz(State(s): State<HttpState>, Peer(peer): Peer, headers: HeaderMap) -> Response {
    let r = s.ready.get(s.identities.directory(), &s.store).await;
    let code = if r.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if with_token(&s, peer, &headers).await {
        (code, Json(r)).into_response()
    } else {
        (code, Json(serde_json::json!({"status": r.status}))).into_response()
    }
}

async fn metrics(State(s): State<HttpState>, Peer(peer): Peer, headers: HeaderMap) -> Response {
    if s.settings.ops_require_token && !with_token(&s, peer, &headers).await {
        let mut refused =
            (StatusCode::UNAUTHORIZED, "send Authorization: Bearer <token with the lookup scope>\n").into_response();
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return refused;
    }
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render()).into_response()
}

/// Keeps the health gauges current until shutdown.
pub async fn watch_health(directory: Arc<dyn Directory>, store: Arc<dyn Store>, mut shutdown: Shutdown) {
    loop {
        check(&directory, &store).await;
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.wait() => return,
        }
    }
}
