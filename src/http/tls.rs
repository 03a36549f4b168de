//! HTTPS for the HTTP listener: rustls 0.23 (ring) through tokio-rustls,
//! HTTP/1.1 through hyper, the same router, accept loop and deadlines as
//! plain HTTP ([`super::connection`]).
//!
//! The certificate and key are read at start and again on SIGHUP
//! ([`Certificate::reload`]), so a renewed certificate (certbot, an
//! internal CA's short-lived ones) is served without a restart and without
//! closing a connection. A renewal that cannot be read, or whose key does
//! not match, leaves the running pair in place.

use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
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
    #[error("{path}: not PEM as expected: {source}")]
    Pem { path: String, source: pem::Error },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// The certificate and key served, swapped whole on reload.
#[derive(Debug)]
pub struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the pair once; an error names the file.
    fn load(files: &TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let current = RwLock::new(Arc::new(certified_key(files, &provider)?));
        Ok(Self { files: files.clone(), provider, current })
    }

    /// Reads the files again and serves the new pair to the next
    /// handshakes; on error the running pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.files, &self.provider)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate file, for log lines.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.files.cert
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The acceptor for `[http] tls_cert` / `tls_key`, and the handle that
/// reloads its pair.
pub fn acceptor(files: &TlsFiles) -> Result<(TlsAcceptor, Arc<Certificate>), TlsError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let certificate = Arc::new(Certificate::load(files, provider.clone())?);
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}

/// Reads and checks one pair: the chain, the first key in the key file,
/// and that the key belongs to the certificate.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
    };
    let bad_pem = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| TlsError::Pem { path, source }
    };
    let cert_pem = read(&files.cert)?;
    let certs =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().map_err(bad_pem(&files.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.display().to_string()));
    }
    let key_pem = read(&files.key)?;
    // The first key of any kind (PKCS#8, PKCS#1 RSA, SEC1 EC) in the file.
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(files.key.display().to_string())),
        other => other.map_err(bad_pem(&files.key))?,
    };
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}
