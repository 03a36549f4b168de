//! `[http]`: the HTTP listener (self-service page now; the JSON API and
//! admin pages extend this section).
//!
//! Links are built from `public_base_url` only, never from the `Host` or
//! `X-Forwarded-Host` headers (host-header injection, RELIABILITY T21).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::Validate;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The address users reach the service at, e.g.
    /// `https://mail.example.com/account`; every link is built from it.
    pub public_base_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the real client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
}

fn default_listen() -> String {
    "127.0.0.1:8040".into()
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Without a trailing slash.
    pub public_base_url: String,
    /// `scheme://host[:port]` of the base URL, for the `Origin` check.
    pub public_origin: String,
    pub trusted_proxies: Vec<IpAddr>,
}

impl Validate for RawHttp {
    type Output = HttpSettings;

    fn validate(&self, p: &mut Problems, _: &Path) -> Option<HttpSettings> {
        let listen = p.check(
            "http.listen",
            self.listen.parse::<SocketAddr>().map_err(|e| format!("{e}: write e.g. \"127.0.0.1:8040\"")),
        );
        let base = self.public_base_url.clone().unwrap_or_else(|| format!("http://{}", self.listen));
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
        Some(HttpSettings {
            listen: listen?,
            public_base_url: base,
            public_origin: origin,
            trusted_proxies: self.trusted_proxies.clone(),
        })
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
