//! `[mailer]`: how mailwarrant sends its own mail (reminders, change
//! confirmations, admin reports).

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::secret::{self, Redacted};
use super::{duration, Validate};
use crate::identity::Address;

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMailer {
    /// The submission server's host name (certificates are checked against it).
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (required, never falls back), `tls` (implicit), or `none`.
    #[serde(default)]
    pub security: MailSecurity,
    /// PEM file of the CA that signed the server's certificate, when it is
    /// not in the system store.
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user; leave out to send without AUTH.
    pub username: Option<String>,
    pub password: Option<Redacted>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// `From:` of every mail, e.g. `"IT Service Desk <it@example.com>"`.
    pub from: String,
    pub reply_to: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Folder of the mail templates, relative to the config file.
    #[serde(default = "default_templates")]
    pub templates: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MailSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

fn default_timeout() -> String {
    "30s".into()
}
fn default_templates() -> PathBuf {
    "templates".into()
}

/// A mailbox with an optional display name, as written in `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Address,
}

impl Mailbox {
    /// Reads `addr@domain` or `Display Name <addr@domain>`.
    pub fn parse(text: &str) -> Result<Mailbox, String> {
        let text = text.trim();
        let (name, addr) = match (text.rfind('<'), text.strip_suffix('>')) {
            (Some(open), Some(_)) => {
                let name = text[..open].trim().trim_matches('"').trim();
                (Some(name.to_owned()).filter(|n| !n.is_empty()), &text[open + 1..text.len() - 1])
            }
            _ => (None, text),
        };
        let address = Address::parse(addr.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Mailbox { name, address })
    }
}

#[derive(Debug, Clone)]
pub struct MailerSettings {
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<(String, SecretString)>,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub timeout: Duration,
    pub templates: PathBuf,
}

impl Validate for RawMailer {
    type Output = MailerSettings;

    fn validate(&self, p: &mut Problems, base_dir: &Path) -> Option<MailerSettings> {
        if self.host.trim().is_empty() {
            p.error("mailer.host", "set the SMTP server that relays mailwarrant's mail");
        }
        let credentials = match &self.username {
            Some(user) => secret::resolve(
                p,
                "mailer.password",
                self.password.as_ref(),
                self.password_file.as_deref(),
                self.password_env.as_deref(),
                base_dir,
            )
            .map(|pw| Some((user.clone(), pw))),
            None => {
                if self.password.is_some() || self.password_file.is_some() || self.password_env.is_some() {
                    p.error("mailer.username", "a password is set but no username: set both or neither");
                }
                Some(None)
            }
        };
        if self.security == MailSecurity::None && credentials.as_ref().is_some_and(Option::is_some) {
            p.warn("mailer.security", "SMTP AUTH without TLS sends the password in cleartext");
        }
        let from = p.check("mailer.from", Mailbox::parse(&self.from));
        let reply_to = self.reply_to.as_deref().map(|r| p.check("mailer.reply_to", Mailbox::parse(r)));
        let timeout = duration::parse(p, "mailer.timeout", &self.timeout);
        let templates = base_dir.join(&self.templates);
        if !templates.is_dir() {
            p.error("mailer.templates", format!("{} is not a folder of templates", templates.display()));
        }
        let ca_file = self.ca_file.as_ref().map(|f| base_dir.join(f));
        if let Some(ca) = &ca_file {
            if !ca.is_file() {
                p.error("mailer.ca_file", format!("{} is not a readable file", ca.display()));
            }
            if self.security == MailSecurity::None {
                p.warn("mailer.ca_file", "ignored because security = \"none\"");
            }
        }
        let port = self.port.unwrap_or(match self.security {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
            MailSecurity::None => 25,
        });
        Some(MailerSettings {
            host: self.host.clone(),
            port,
            security: self.security,
            ca_file,
            credentials: credentials?,
            from: from?,
            reply_to: reply_to.map(|r| r.ok_or(())).transpose().ok()?,
            timeout: timeout?,
            templates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_with_and_without_names() {
        let m = Mailbox::parse("\"IT Desk\" <it@Example.com>").unwrap();
        assert_eq!((m.name.as_deref(), m.address.as_str()), (Some("IT Desk"), "it@example.com"));
        let m = Mailbox::parse("it@example.com").unwrap();
        assert_eq!(m.name, None);
        assert!(Mailbox::parse("IT Desk").is_err());
    }
}
