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
pub mod connection;
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
use crate::config::listener::ListenerSettings;
use crate::config::HttpSettings;
use crate::identity::IdentityCache;
use crate::password::PasswordService;
use crate::policy_service::PolicyService;
use crate::protocols::accept::{self, Limits};
use crate::protocols::bind::Bound;
use crate::serve::activation::Inherited;
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
    /// The shared `/readyz` answer.
    pub ready: Arc<ops::ReadyCache>,
    /// False when an `[ops]` listener serves the operations routes.
    pub serve_ops: bool,
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
            ready: Arc::new(ops::ReadyCache::default()),
            serve_ops: app.config.ops.is_none(),
        }
    }

    /// The client: the peer, or the address a trusted proxy forwarded.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer.ip(), headers, &self.settings.trusted_proxies)
    }
}

/// The connection's peer: the address hyper was given, or loopback when
/// the router is driven without a socket (tests, benchmarks).
pub struct Peer(pub SocketAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let found = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Peer(found.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))))
    }
}

/// Every route (the operations routes unless `[ops]` serves them).
pub fn router(state: HttpState) -> Router {
    let ops = if state.serve_ops { ops::routes() } else { Router::new() };
    password_page::routes()
        .merge(api::routes())
        .merge(ops)
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

/// The HTTP (or HTTPS) front end, its sockets bound. Started in
/// `serve::run`.
pub struct HttpServer {
    bound: Bound,
    limits: Arc<Limits>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The HTTPS pair, reloaded on SIGHUP.
    certificate: Option<Arc<tls::Certificate>>,
    router: Router,
    app: App,
    /// Whether this listener serves `/readyz`, and so keeps the health
    /// gauges current.
    watch_health: bool,
}

impl HttpServer {
    /// Reads the certificate (HTTPS), binds `listener` (or takes the
    /// sockets systemd passed as `http`) and builds the router.
    pub fn open(
        app: &App,
        settings: &HttpSettings,
        listener: &ListenerSettings,
        inherited: &mut Inherited,
        auth: Option<Arc<Authenticator>>,
    ) -> Result<Self, ServeError> {
        let (tls, certificate) = match &settings.tls {
            Some(files) => {
                let (acceptor, certificate) = tls::acceptor(files).map_err(|e| ServeError::Listen {
                    address: files.cert.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                (Some(acceptor), Some(certificate))
            }
            None => (None, None),
        };
        let bound = Bound::open(listener, inherited)?;
        tracing::info!(base = %settings.public_base_url, tls = tls.is_some(), "HTTP listener ready");
        // Connections of trusted proxies carry many clients: no per-client cap.
        let limits = Limits::new(listener, settings.trusted_proxies.clone());
        let router = router(HttpState::from_app(app, settings, auth));
        Ok(Self { bound, limits, tls, certificate, router, app: app.clone(), watch_health: app.config.ops.is_none() })
    }

    /// The `[ops]` listener: `/healthz`, `/readyz`, `/metrics` only, with
    /// the tokens of `[http]` when there is one.
    pub fn open_ops(app: &App, listener: &ListenerSettings, inherited: &mut Inherited) -> Result<Self, ServeError> {
        let settings = app.config.http.clone().unwrap_or_else(HttpSettings::defaults);
        let bound = Bound::open(listener, inherited)?;
        let limits = Limits::new(listener, settings.trusted_proxies.clone());
        let router = ops::routes()
            .fallback(not_found)
            .layer(middleware::from_fn(security_headers))
            .with_state(HttpState::from_app(app, &settings, None));
        Ok(Self { bound, limits, tls: None, certificate: None, router, app: app.clone(), watch_health: true })
    }

    /// The HTTPS certificate and key, for the SIGHUP reload.
    pub fn certificate(&self) -> Option<Arc<tls::Certificate>> {
        self.certificate.clone()
    }

    /// The TCP address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.local_addr()
    }

    /// Serves until shutdown, then lets requests in flight finish.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ServeError> {
        if self.watch_health {
            tokio::spawn(ops::watch_health(self.app.directory.clone(), self.app.store.clone(), shutdown.clone()));
        }
        let (tls, router) = (self.tls, self.router);
        accept::serve(self.bound, self.limits, shutdown, "http", move |conn| {
            connection::serve(conn, tls.clone(), router.clone())
        })
        .await;
        Ok(())
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
