//! mailwarrant's own outgoing mail (reminders, change confirmations, admin
//! reports) over SMTP with lettre.
//!
//! Only this module imports lettre. STARTTLS, when configured, is
//! required: a server that does not offer it gets no mail (and no
//! password). Every mail carries `Auto-Submitted: auto-generated`
//! (RFC 3834) so auto-responders stay quiet.

pub mod template;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::mailer::{MailSecurity, Mailbox};
use crate::config::MailerSettings;
use crate::identity::Address;
pub use template::{Rendered, Templates};

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("mail template: {0}")]
    Template(String),
    #[error("cannot build the mail: {0}")]
    Build(String),
    #[error("SMTP server {server}: {reason}")]
    Transport { server: String, reason: String },
}

/// A configured SMTP client with its templates.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: LettreMailbox,
    reply_to: Option<LettreMailbox>,
    templates: Templates,
}

impl Mailer {
    pub fn new(settings: &MailerSettings) -> Result<Mailer, MailerError> {
        let server = format!("{}:{}", settings.host, settings.port);
        let transport_error = |e: lettre::transport::smtp::Error| MailerError::Transport {
            server: server.clone(),
            reason: e.to_string(),
        };
        let tls = match settings.security {
            MailSecurity::None => Tls::None,
            security => {
                let mut params = TlsParameters::builder(settings.host.clone());
                if let Some(ca) = &settings.ca_file {
                    let pem = std::fs::read(ca)
                        .map_err(|e| MailerError::Build(format!("mailer.ca_file {}: {e}", ca.display())))?;
                    params = params.add_root_certificate(Certificate::from_pem(&pem).map_err(transport_error)?);
                }
                let params = params.build_rustls().map_err(transport_error)?;
                // Required, never opportunistic: no fallback to cleartext.
                if security == MailSecurity::Starttls {
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .tls(tls)
            .port(settings.port)
            .timeout(Some(settings.timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
        }
        Ok(Mailer {
            transport: builder.build(),
            server,
            from: lettre_mailbox(&settings.from)?,
            reply_to: settings.reply_to.as_ref().map(lettre_mailbox).transpose()?,
            templates: Templates::load(&settings.templates)?,
        })
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Renders template `name` with `context` and sends it to one person.
    pub async fn send(
        &self,
        to: &Address,
        to_name: Option<&str>,
        name: &str,
        context: &impl Serialize,
    ) -> Result<(), MailerError> {
        let rendered = self.templates.render(name, context)?;
        let message = self.build(to, to_name, &rendered)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| MailerError::Transport { server: self.server.clone(), reason: e.to_string() })
    }

    fn build(&self, to: &Address, to_name: Option<&str>, mail: &Rendered) -> Result<Message, MailerError> {
        let to = LettreMailbox::new(
            to_name.map(str::to_owned),
            to.as_str().parse().map_err(|e| MailerError::Build(format!("{to}: {e}")))?,
        );
        let mut builder = Message::builder().from(self.from.clone()).to(to).subject(&mail.subject);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .header(AutoSubmitted)
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| MailerError::Build(e.to_string()))
    }
}

fn lettre_mailbox(m: &Mailbox) -> Result<LettreMailbox, MailerError> {
    let address = m.address.as_str().parse().map_err(|e| MailerError::Build(format!("{}: {e}", m.address)))?;
    Ok(LettreMailbox::new(m.name.clone(), address))
}

/// `Auto-Submitted: auto-generated` (RFC 3834).
#[derive(Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}
