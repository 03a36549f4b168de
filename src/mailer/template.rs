//! Mail templates: `NAME.subject`, `NAME.txt` and `NAME.html` in the
//! configured folder, rendered with minijinja (HTML parts auto-escaped).
//!
//! Admins edit the wording without touching code; a template with a
//! syntax error is refused when the service starts, not when a mail is due.

use std::path::Path;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use super::MailerError;

/// The three parts of a rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every template in a folder, parsed once.
pub struct Templates {
    env: Environment<'static>,
}

/// The mails mailwarrant sends; each needs all three parts.
pub const NAMES: &[&str] = &["reminder", "expired", "password-changed", "admin-summary"];

impl Templates {
    /// Loads and compiles every template named in [`NAMES`].
    pub fn load(folder: &Path) -> Result<Templates, MailerError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for name in NAMES {
            for part in ["subject", "txt", "html"] {
                let file = format!("{name}.{part}");
                let path = folder.join(&file);
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| MailerError::Template(format!("{}: {e}", path.display())))?;
                env.add_template_owned(file, source)
                    .map_err(|e| MailerError::Template(format!("{}: {e}", path.display())))?;
            }
        }
        Ok(Templates { env })
    }

    /// Renders one mail; unknown variables are errors, not blanks.
    pub fn render(&self, name: &str, context: &impl Serialize) -> Result<Rendered, MailerError> {
        let part = |ext: &str| {
            let file = format!("{name}.{ext}");
            self.env
                .get_template(&file)
                .and_then(|t| t.render(context))
                .map_err(|e| MailerError::Template(format!("{file}: {e}")))
        };
        let subject = part("subject")?.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_owned();
        Ok(Rendered { subject, text: part("txt")?, html: part("html")? })
    }
}
