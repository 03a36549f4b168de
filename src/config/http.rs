//! `[http]`: the HTTP listener (self-service page now; the JSON API and
//! admin pages extend this section).
//!
//! Links are built from `public_base_url` only, never from the `Host` or
//! `X-Forwarded-Host` headers (host-header injection, docs/threat-model.md T21).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listener::{ListenerDefaults, ListenerSettings};
use super::problems::Problems;
use super::Validate;

/// Where the self-service password page lives under `public_base_url`;
/// also the default of every link to it (`[auth]`, `[reminders]`).
pub const PASSWORD_PAGE_PATH: &str = "/password";

crate::listener_section! {
/// `listen` defaults to `127.0.0.1:8040`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// The address users reach the service at, e.g.
    /// `https://mail.example.com/account`; every link is built from it.
    pub public_base_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the real client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// Serve HTTPS with this PEM certificate chain (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// API clients: `[[http.tokens]]` with a name, the argon2 hash of the
    /// token (`mailwarrant hash-password`) and its scopes.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// Members of this directory group (direct or nested) may also sign
    /// in to the admin pages with their own login and password.
    pub admin_group: Option<String>,
    /// `/metrics` only with a bearer token of scope `lookup` (or `admin`).
    /// `/readyz` tells anonymous callers only ready or not either way;
    /// a token sees which component is down.
    #[serde(default)]
    pub ops_require_token: bool,
}
}

/// One API client.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it, for logs and the audit trail.
    pub name: String,
    /// The token's public key id: tokens are written `ID.SECRET`, and the
    /// id picks the one entry to check, so an invented token costs no
    /// hash at all. `mailwarrant new-token --id NAME` makes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `sha256:<hex>` of the whole token (from `mailwarrant new-token`;
    /// enough for a random 256-bit secret), or the argon2 PHC string of
    /// the token (`mailwarrant hash-password`), optionally
    /// `{ARGON2}`-prefixed.
    pub hash: String,
    /// `auth` (POST /v1/auth), `lookup` (identities, addresses, policy,
    /// password checks), `admin` (everything, and the admin pages).
    pub scopes: Vec<Scope>,
}

/// What a token may do. `admin` implies `lookup` and `auth`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Auth,
    Lookup,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Auth => "auth",
            Scope::Lookup => "lookup",
            Scope::Admin => "admin",
        }
    }
}

/// A validated token entry.
#[derive(Clone, Debug)]
pub struct TokenEntry {
    pub name: String,
    /// The public key id (`ID.SECRET` tokens).
    pub id: Option<String>,
    pub hash: TokenHash,
    pub scopes: Vec<Scope>,
}

/// How a token is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenHash {
    /// The PHC string, without an `{ARGON2}` prefix.
    Argon2(String),
    /// SHA-256 of the whole token.
    Sha256([u8; 32]),
}

/// Longest key id.
const MAX_TOKEN_ID: usize = 32;

/// HTTPS material.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Browsers and API clients: a request head within 10 s (slowloris,
/// docs/threat-model.md T24), keep-alive for a minute, and no client holding more
/// than a handful of the connections.
pub const HTTP_DEFAULTS: ListenerDefaults = ListenerDefaults {
    fd_name: "http",
    client: Some("nobody"),
    listen: &["127.0.0.1:8040"],
    tcp: true,
    max_connections: 512,
    max_connections_per_client: 32,
    handshake_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listener: ListenerSettings,
    /// Without a trailing slash.
    pub public_base_url: String,
    /// `scheme://host[:port]` of the base URL, for the `Origin` check.
    pub public_origin: String,
    pub trusted_proxies: Vec<IpAddr>,
    pub tls: Option<TlsFiles>,
    pub tokens: Vec<TokenEntry>,
    pub admin_group: Option<String>,
    pub ops_require_token: bool,
}

impl Validate for RawHttp {
    type Output = HttpSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<HttpSettings> {
        let listener = self.listener().validate_as(p, base_dir, "http", &HTTP_DEFAULTS);
        let first = listener.as_ref().and_then(|l| l.tcp.first().copied());
        let base = self
            .public_base_url
            .clone()
            .unwrap_or_else(|| first.map(|a| format!("http://{a}")).unwrap_or_else(|| "http://localhost".into()));
        let base = base.trim_end_matches('/').to_owned();
        let origin = match origin_of(&base) {
            Some(o) => o,
            None => {
                p.error("http.public_base_url", "must be an absolute http:// or https:// URL");
                return None;
            }
        };
        if self.public_base_url.is_none() {
            p.warn("http.public_base_url", "not set; links in mails use the listen address");
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: base_dir.join(cert), key: base_dir.join(key) }),
            (None, None) => None,
            _ => {
                p.error("http.tls_cert", "tls_cert and tls_key go together");
                None
            }
        };
        let mut tokens = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("http.tokens[{i}]");
            if t.name.trim().is_empty() || self.tokens[..i].iter().any(|o| o.name == t.name) {
                p.error(format!("{at}.name"), "must be set and unique");
            }
            let hash = match t.hash.strip_prefix("sha256:") {
                Some(hex) => match decode_hex32(hex) {
                    Some(digest) => Some(TokenHash::Sha256(digest)),
                    None => {
                        p.error(format!("{at}.hash"), "sha256: must be followed by 64 hex digits");
                        None
                    }
                },
                None => {
                    let phc = t.hash.strip_prefix("{ARGON2}").unwrap_or(&t.hash).to_owned();
                    match argon2::PasswordHash::new(&phc) {
                        Ok(h) if h.algorithm.as_str().starts_with("argon2") => Some(TokenHash::Argon2(phc)),
                        _ => {
                            p.error(
                                format!("{at}.hash"),
                                "must be sha256:<hex> (mailwarrant new-token) or an argon2 PHC string",
                            );
                            None
                        }
                    }
                }
            };
            match &t.id {
                Some(id)
                    if id.is_empty()
                        || id.len() > MAX_TOKEN_ID
                        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    p.error(format!("{at}.id"), "1 to 32 letters, digits, '-' or '_'")
                }
                Some(id) if self.tokens[..i].iter().any(|o| o.id.as_ref() == Some(id)) => {
                    p.error(format!("{at}.id"), "must be unique")
                }
                Some(_) => {}
                None => p.warn(
                    format!("{at}.id"),
                    "not set: every invented token is then checked against this entry with argon2; \
                     issue a token with `mailwarrant new-token --id NAME` and replace this entry",
                ),
            }
            if matches!(hash, Some(TokenHash::Sha256(_))) && t.id.is_none() {
                p.error(format!("{at}.id"), "a sha256 token needs its id (tokens are written ID.SECRET)");
            }
            if t.scopes.is_empty() {
                p.error(format!("{at}.scopes"), "name at least one of auth, lookup, admin");
            }
            if let Some(hash) = hash {
                tokens.push(TokenEntry { name: t.name.clone(), id: t.id.clone(), hash, scopes: t.scopes.clone() });
            }
        }
        Some(HttpSettings {
            listener: listener?,
            public_base_url: base,
            public_origin: origin,
            trusted_proxies: self.trusted_proxies.clone(),
            tls,
            tokens,
            admin_group: self.admin_group.clone().filter(|g| !g.trim().is_empty()),
            ops_require_token: self.ops_require_token,
        })
    }
}

/// 32 bytes from 64 hex digits.
fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl HttpSettings {
    /// The settings of an absent `[http]` (the `[ops]` listener without
    /// the pages and the API): defaults, no tokens.
    pub fn defaults() -> HttpSettings {
        let raw: RawHttp = toml::from_str("public_base_url = \"http://localhost\"").expect("an empty [http] parses");
        raw.validate(&mut Problems::default(), Path::new(".")).expect("the [http] defaults are valid")
    }
}

/// `https://host:port` of an absolute URL, lowercased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().filter(|h| !h.is_empty() && !h.contains('@'))?;
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        assert_eq!(super::origin_of("https://Mail.Example.com/account").as_deref(), Some("https://mail.example.com"));
        assert_eq!(super::origin_of("http://127.0.0.1:8040").as_deref(), Some("http://127.0.0.1:8040"));
        assert_eq!(super::origin_of("ftp://x"), None);
        assert_eq!(super::origin_of("https://user@evil"), None);
        assert_eq!(super::origin_of("mail.example.com"), None);
    }
}
