//! Operations: `/healthz` (the process answers), `/readyz` (the directory
//! and the store answer), `/metrics` (Prometheus). No token: bind the
//! listener where only the monitoring and the proxies reach it.
//!
//! `/readyz` also sets the `mailwarrant_up{component}` gauges, and a
//! background check every [`CHECK_EVERY`] keeps them current between
//! scrapes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;

use super::HttpState;
use crate::directory::Directory;
use crate::serve::Shutdown;
use crate::store::Store;

/// Longest a health check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the gauges are refreshed without a `/readyz` call.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

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

#[derive(Serialize)]
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

async fn readyz(State(s): State<HttpState>) -> Response {
    let r = check(s.identities.directory(), &s.store).await;
    let code = if r.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r)).into_response()
}

async fn metrics() -> Response {
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
