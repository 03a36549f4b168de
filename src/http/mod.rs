//! The HTTP listener: the self-service password page, the JSON API under
//! `/v1` ([`api`]), the read-only admin pages under `/admin` ([`admin`]),
//! and `/healthz`, `/readyz`, `/metrics` ([`ops`]). HTTPS when
//! `[http] tls_cert` and `tls_key` are set ([`tls`]).
//!
//! Every response carries `Cache-Control: no-store` and a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! framing). Links are built from `http.public_base_url`, never from the
//! `Host` header; the client address comes from `X-Forwarded-For` only
//! when the peer is a configured trusted proxy. Handlers log no form
//! field but the login.

pub mod admin;
pub mod api;
pub mod csrf;
mod layout;
pub mod ops;
pub mod password_page;
mod password_view;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::auth::Authenticator;
use crate::config::HttpSettings;
use crate::identity::IdentityCache;
use crate::password::PasswordService;
use crate::policy_service::PolicyService;
use crate::serve::{App, ServeError, Shutdown};
use crate::store::Store;
use api::tokens::TokenVerifier;

/// Form posts and JSON checks are small; anything bigger is refused.
pub const BODY_LIMIT: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub passwords: PasswordService,
    pub store: Arc<dyn Store>,
    pub settings: Arc<HttpSettings>,
    /// The AUTH core (`POST /v1/auth`).
    pub auth: Option<Arc<Authenticator>>,
    pub identities: IdentityCache,
    /// The send-policy service, when `[policy]` is configured.
    pub policy: Option<PolicyService>,
    pub tokens: Arc<TokenVerifier>,
}

impl HttpState {
    /// `auth`: the AUTH core, whose credential cache drops a login after
    /// its password changed.
    pub fn from_app(app: &App, settings: &HttpSettings, auth: Option<Arc<Authenticator>>) -> Self {
        // The page proves current passwords through the AUTH core; without
        // the running one (tests of the page alone), one over the same store.
        let prover = auth.clone().unwrap_or_else(|| {
            Arc::new(Authenticator::new(app.identities.clone(), app.store.clone(), app.config.auth.clone()))
        });
        let forget = prover.clone();
        let passwords = PasswordService::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.password.clone(),
            settings.public_base_url.clone(),
            prover,
        )
        .with_mailer(app.mailer.clone(), app.config.reminders.clone())
        .on_change(Arc::new(move |login| forget.forget(login)));
        Self {
            passwords,
            store: app.store.clone(),
            settings: Arc::new(settings.clone()),
            auth,
            identities: app.identities.clone(),
            policy: app.policy.clone(),
            tokens: Arc::new(TokenVerifier::new(settings.tokens.clone())),
        }
    }

    /// The client: the peer, or the address a trusted proxy forwarded.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer.ip(), headers, &self.settings.trusted_proxies)
    }
}

/// Every route.
pub fn router(state: HttpState) -> Router {
    password_page::routes()
        .merge(api::routes())
        .merge(ops::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(timing))
        .with_state(state)
}

/// API paths answer in the API's error shape; pages in plain text.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        return api::not_found().await.into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        return api::ApiError::new(api::Code::MethodNotAllowed, "method not allowed on this route").into_response();
    }
    (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response()
}

/// The `http` latency histogram, for every request.
async fn timing(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    crate::metrics::observe_request(crate::metrics::HTTP, started.elapsed());
    response
}

/// Binds `[http] listen` and serves until shutdown. Registered in
/// `serve::run`.
pub async fn start(
    app: App,
    settings: HttpSettings,
    auth: Option<Arc<Authenticator>>,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    let listen_error = |source| ServeError::Listen { address: settings.listen.to_string(), source };
    let tls = match &settings.tls {
        Some(files) => Some(tls::acceptor(files).map_err(|e| listen_error(std::io::Error::other(e.to_string())))?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen).await.map_err(listen_error)?;
    tracing::info!(listen = %settings.listen, base = %settings.public_base_url, tls = tls.is_some(), "HTTP listener ready");
    let state = HttpState::from_app(&app, &settings, auth);
    tokio::spawn(ops::watch_health(app.directory.clone(), app.store.clone(), shutdown.clone()));
    let app = router(state);
    match tls {
        Some(acceptor) => {
            tls::serve(listener, acceptor, app, shutdown).await;
            Ok(())
        }
        None => axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .map_err(listen_error),
    }
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CACHE_CONTROL, "no-store, max-age=0");
    set(h, header::PRAGMA, "no-cache");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // `no-referrer` would make browsers send `Origin: null` on form posts.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    response
}

/// The rightmost `X-Forwarded-For` hop that is not a trusted proxy, when
/// the peer itself is one; otherwise the peer.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    hops.into_iter().rev().find(|ip| !trusted.contains(ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 192.0.2.9"));
        assert_eq!(client_address(proxy, &h, &[proxy]), "192.0.2.9".parse::<IpAddr>().unwrap());
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(stranger, &h, &[proxy]), stranger, "spoofed header ignored");
        assert_eq!(client_address(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }
}
