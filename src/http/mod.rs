//! The HTTP listener: the self-service password page now; the JSON API,
//! admin pages and metrics join the same router later.
//!
//! Every response carries `Cache-Control: no-store` and a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! framing). Links are built from `http.public_base_url`, never from the
//! `Host` header; the client address comes from `X-Forwarded-For` only
//! when the peer is a configured trusted proxy. Handlers log no form
//! field but the login.

pub mod csrf;
pub mod password_page;
mod password_view;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::auth::Authenticator;
use crate::config::HttpSettings;
use crate::password::PasswordService;
use crate::serve::{App, ServeError, Shutdown};
use crate::store::Store;

/// Form posts and JSON checks are small; anything bigger is refused.
const BODY_LIMIT: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub passwords: PasswordService,
    pub store: Arc<dyn Store>,
    pub settings: Arc<HttpSettings>,
}

impl HttpState {
    /// `auth`: the AUTH core, whose credential cache drops a login after
    /// its password changed.
    pub fn from_app(app: &App, settings: &HttpSettings, auth: Option<Arc<Authenticator>>) -> Self {
        let mut passwords = PasswordService::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.password.clone(),
            settings.public_base_url.clone(),
        )
        .with_mailer(app.mailer.clone(), app.config.reminders.clone());
        if let Some(auth) = auth {
            passwords = passwords.on_change(Arc::new(move |login| auth.forget(login)));
        }
        Self { passwords, store: app.store.clone(), settings: Arc::new(settings.clone()) }
    }

    /// The client: the peer, or the address a trusted proxy forwarded.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer.ip(), headers, &self.settings.trusted_proxies)
    }
}

/// Every route.
pub fn router(state: HttpState) -> Router {
    password_page::routes()
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Binds `[http] listen` and serves until shutdown. Registered in
/// `serve::run`.
pub async fn start(
    app: App,
    settings: HttpSettings,
    auth: Option<Arc<Authenticator>>,
    mut shutdown: Shutdown,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Listen { address: settings.listen.to_string(), source })?;
    tracing::info!(listen = %settings.listen, base = %settings.public_base_url, "HTTP listener ready");
    let state = HttpState::from_app(&app, &settings, auth);
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(|source| ServeError::Listen { address: settings.listen.to_string(), source })
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
