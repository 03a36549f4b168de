//! What the password must not contain: the user's own login, names and
//! mailbox names. Also fed to zxcvbn as its "user inputs", so a password
//! built from them scores low.

use crate::identity::Identity;

/// Fragments shorter than this are too common to refuse (`li`, `jo`).
const MIN_FRAGMENT: usize = 3;

/// The personal words of one user, lowercased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserContext {
    pub words: Vec<String>,
}

impl UserContext {
    /// Only what was typed as a login: for unknown users, so the page
    /// behaves the same whether or not the login exists.
    pub fn from_login(login: &str) -> Self {
        let mut c = Self::default();
        c.add(login);
        c
    }

    /// The login, each part of the display name, and the local part of
    /// every address of the user.
    pub fn from_identity(who: &Identity) -> Self {
        let mut c = Self::from_login(who.login.as_str());
        for part in who.display_name.split(|ch: char| !ch.is_alphanumeric()) {
            c.add(part);
        }
        for a in who.primary_address.iter().chain(&who.aliases) {
            let local = a.as_str().split('@').next().unwrap_or_default();
            c.add(local);
            for part in local.split(|ch: char| !ch.is_alphanumeric()) {
                c.add(part);
            }
        }
        c
    }

    fn add(&mut self, word: &str) {
        let w = word.trim().to_lowercase();
        if w.chars().count() >= MIN_FRAGMENT && !self.words.contains(&w) {
            self.words.push(w);
        }
    }

    /// The first personal word found inside the password, case-insensitively.
    pub fn found_in(&self, password: &str) -> Option<&str> {
        let lower = password.to_lowercase();
        self.words.iter().find(|w| lower.contains(w.as_str())).map(String::as_str)
    }
}
