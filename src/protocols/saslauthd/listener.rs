//! The saslauthd socket: one task per connection, one request each,
//! through the shared accept loop (its cap, deadlines and drain).

use std::sync::Arc;

use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{decode, encode_reply, DecodeError, MAX_REQUEST};
use crate::auth::{AuthRequest, Authenticator, Protocol};
use crate::protocols::accept::{self, Limits};
use crate::protocols::bind::Bound;
use crate::serve::Shutdown;

const MALFORMED_TEXT: &str = "Malformed request";

pub struct SaslauthdServer {
    auth: Arc<Authenticator>,
}

impl SaslauthdServer {
    pub fn new(auth: Arc<Authenticator>) -> Arc<Self> {
        Arc::new(Self { auth })
    }

    /// Serves `bound` until shutdown and the drain after it.
    pub async fn serve(self: Arc<Self>, bound: Bound, limits: Arc<Limits>, shutdown: Shutdown) {
        accept::serve(bound, limits, shutdown, "saslauthd", move |conn| {
            let this = self.clone();
            let (stream, shutdown) = conn.timed();
            async move { this.serve_connection(stream, shutdown).await }
        })
        .await
    }

    /// Reads one request, answers, closes. A client that has sent nothing
    /// when shutdown comes is closed; a request begun is answered.
    pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, mut shutdown: Shutdown) {
        let mut buf = Vec::with_capacity(256);
        let request = loop {
            match decode(&buf) {
                Ok((request, _)) => break Some(request),
                Err(DecodeError::TooLarge) => break None,
                Err(DecodeError::Incomplete) if buf.len() >= MAX_REQUEST => break None,
                Err(DecodeError::Incomplete) => {}
            }
            let mut chunk = [0u8; 2048];
            let read = if buf.is_empty() {
                tokio::select! {
                    r = stream.read(&mut chunk) => r,
                    _ = shutdown.wait() => return,
                }
            } else {
                stream.read(&mut chunk).await
            };
            match read {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        zeroize::Zeroize::zeroize(&mut buf);
        let reply = match request {
            None => encode_reply(false, MALFORMED_TEXT),
            Some(r) => {
                let login = typed_login(&r.login, &r.realm);
                let password = String::from_utf8(r.password.to_vec()).unwrap_or_default();
                let client = r.remote.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse().ok());
                let request = AuthRequest {
                    login,
                    authzid: None,
                    password: SecretString::from(password),
                    client,
                    protocol: Protocol::Saslauthd,
                };
                let started = std::time::Instant::now();
                let decision = self.auth.authenticate(request).await;
                crate::metrics::observe_request(crate::metrics::SASLAUTHD, started.elapsed());
                decision.wait().await;
                encode_reply(decision.is_accepted(), &decision.reply_text)
            }
        };
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    }
}

/// `login@realm` when a realm is given and the login has none; a login
/// that is not UTF-8 becomes empty (refused by the core).
fn typed_login(login: &[u8], realm: &[u8]) -> String {
    let login = std::str::from_utf8(login).unwrap_or_default();
    match std::str::from_utf8(realm) {
        Ok(realm) if !realm.is_empty() && !login.is_empty() && !login.contains('@') => format!("{login}@{realm}"),
        _ => login.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::typed_login;

    #[test]
    fn realm_is_appended_only_when_missing() {
        assert_eq!(typed_login(b"alice", b""), "alice");
        assert_eq!(typed_login(b"alice", b"example.com"), "alice@example.com");
        assert_eq!(typed_login(b"alice@example.com", b"other.org"), "alice@example.com");
        assert_eq!(typed_login(b"\xff", b"example.com"), "");
    }
}
