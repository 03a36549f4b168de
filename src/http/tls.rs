//! HTTPS for the HTTP listener: rustls 0.23 (ring) through tokio-rustls,
//! HTTP/1.1 through hyper, the same router, accept loop and deadlines as
//! plain HTTP ([`super::connection`]). Certificates are read once at start
//! (a restart picks up a renewed one).

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::http::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}: no certificate in the file")]
    NoCertificate(String),
    #[error("{0}: no private key in the file")]
    NoKey(String),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// The acceptor for `[http] tls_cert` / `tls_key`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
    };
    let cert_pem = read(&files.cert)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .map_err(|source| TlsError::Read { path: files.cert.display().to_string(), source })?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.display().to_string()));
    }
    let key_pem = read(&files.key)?;
    let mut reader = key_pem.as_slice();
    let mut key = None;
    while let Ok(Some(item)) = rustls_pemfile::read_one(&mut reader) {
        key = match item {
            rustls_pemfile::Item::PKCS8Key(k) => Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k))),
            rustls_pemfile::Item::RSAKey(k) => Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(k))),
            rustls_pemfile::Item::ECKey(k) => Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(k))),
            _ => continue,
        };
        break;
    }
    let key = key.ok_or_else(|| TlsError::NoKey(files.key.display().to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
