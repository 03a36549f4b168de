//! `From:` and `Sender:` as the policy's header spoof check sees them.
//!
//! The milter hands over every header (name and unfolded value); the
//! [`SenderHeaders`] collector keeps only `From:` and `Sender:`, bounded,
//! and [`SenderHeaders::finish`] turns them into
//! [`HeaderSenders`](crate::policy::HeaderSenders):
//!
//! - the mailboxes of every `From:` address, display names dropped (they
//!   may be RFC 2047 encoded words: an encoded word is an atom of the
//!   phrase, never an address, so it needs no decoding to be skipped),
//!   group syntax flattened (`team: a@x, b@x;`), comments removed;
//! - no `From:` → `Missing`; two `From:` or two `Sender:` → `Repeated`;
//!   anything that does not parse into addresses → `Unparsable`.
//!
//! Parsing is `mailparse::addrparse` (0BSD) after our own comment
//! stripping: its comment support covers trailing comments only.

use crate::identity::Address;
use crate::policy::HeaderSenders;

/// The longest `From:`/`Sender:` value kept; longer is unparsable (RFC
/// 5322 lines are at most 998 bytes; folding allows more, not this much).
pub const MAX_VALUE: usize = 16 * 1024;

/// `From:` and `Sender:` values seen so far in one message.
#[derive(Debug, Default, Clone)]
pub struct SenderHeaders {
    from: Vec<String>,
    sender: Vec<String>,
}

impl SenderHeaders {
    /// Looks at one header; ignores all but `From` and `Sender`. Keeps at
    /// most two of each (two already mean `Repeated`).
    pub fn add(&mut self, name: &str, value: &str) {
        let slot = if name.eq_ignore_ascii_case("from") {
            &mut self.from
        } else if name.eq_ignore_ascii_case("sender") {
            &mut self.sender
        } else {
            return;
        };
        if slot.len() < 2 {
            let cut = floor_char_boundary(value, MAX_VALUE + 1);
            slot.push(value[..cut].to_owned());
        }
    }

    pub fn finish(&self) -> HeaderSenders {
        if self.from.len() > 1 || self.sender.len() > 1 {
            return HeaderSenders::Repeated;
        }
        let Some(from) = self.from.first() else {
            return HeaderSenders::Missing;
        };
        let from = match mailboxes(from) {
            Ok(list) => list,
            Err(NotMailboxes) => return HeaderSenders::Unparsable(shorten(from)),
        };
        let sender = match self.sender.first() {
            None => None,
            Some(raw) => match mailboxes(raw).as_deref() {
                Ok([one]) => Some(one.clone()),
                _ => return HeaderSenders::Unparsable(shorten(raw)),
            },
        };
        HeaderSenders::Parsed { from, sender }
    }
}

/// An address-list header value that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a list of mailboxes")]
pub struct NotMailboxes;

/// Every mailbox of an address-list header value.
pub fn mailboxes(value: &str) -> Result<Vec<Address>, NotMailboxes> {
    if value.len() > MAX_VALUE {
        return Err(NotMailboxes);
    }
    let unfolded: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let cleaned = strip_comments(&unfolded).ok_or(NotMailboxes)?;
    if cleaned.trim().is_empty() {
        return Err(NotMailboxes);
    }
    let list = mailparse::addrparse(&cleaned).map_err(|_| NotMailboxes)?;
    let mut out = Vec::new();
    for entry in list.iter() {
        match entry {
            mailparse::MailAddr::Single(s) => out.push(address(&s.addr)?),
            mailparse::MailAddr::Group(g) => {
                for s in &g.addrs {
                    out.push(address(&s.addr)?);
                }
            }
        }
    }
    Ok(out)
}

fn address(raw: &str) -> Result<Address, NotMailboxes> {
    let raw = raw.trim();
    // An address mailparse took from a malformed header may still carry
    // angle brackets or quotes; those are not mailboxes.
    if raw.contains(['<', '>', ',', ';', ':', '"', '(', ')']) {
        return Err(NotMailboxes);
    }
    Address::parse(raw).map_err(|_| NotMailboxes)
}

/// Removes RFC 5322 comments (nested, with quoted pairs) outside quoted
/// strings. `None` when a comment or quoted string is not closed.
fn strip_comments(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted || depth > 0 => {
                let next = chars.next()?;
                if depth == 0 {
                    out.push(c);
                    out.push(next);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            // Dropped without a space: a comment may sit inside an address
            // (`alice(x)@example.com`, obsolete but legal).
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    (depth == 0 && !quoted).then_some(out)
}

fn shorten(raw: &str) -> String {
    raw.chars().take(120).collect()
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(from: &[&str]) -> HeaderSenders {
        HeaderSenders::Parsed { from: from.iter().map(|a| Address::parse(a).unwrap()).collect(), sender: None }
    }

    fn senders(headers: &[(&str, &str)]) -> HeaderSenders {
        let mut h = SenderHeaders::default();
        for (n, v) in headers {
            h.add(n, v);
        }
        h.finish()
    }

    #[test]
    fn from_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("alice@example.com", &["alice@example.com"]),
            ("Alice Smith <alice@example.com>", &["alice@example.com"]),
            ("\"Smith, Alice\" <alice@example.com>", &["alice@example.com"]),
            ("=?UTF-8?Q?Al=C3=AFce_Sm=C3=AFth?= <alice@example.com>", &["alice@example.com"]),
            ("=?utf-8?B?w4FsaWNl?= <alice@EXAMPLE.COM>", &["alice@example.com"]),
            ("alice@example.com (Alice (the boss))", &["alice@example.com"]),
            ("(c) Alice <alice(x)@example.com>", &["alice@example.com"]),
            ("alice@example.com, Bob <bob@example.com>", &["alice@example.com", "bob@example.com"]),
            ("team: alice@example.com, bob@example.com;", &["alice@example.com", "bob@example.com"]),
            ("Alice\r\n <alice@example.com>", &["alice@example.com"]),
            // A display name that looks like an address is only a name.
            ("\"bob@example.com\" <alice@example.com>", &["alice@example.com"]),
            ("undisclosed:;", &[]),
        ];
        for (value, want) in cases {
            assert_eq!(senders(&[("From", value)]), parsed(want), "{value}");
        }
        // The local part keeps its case: the policy decides how to compare.
        assert_eq!(senders(&[("from", "Alice@Example.com")]), parsed(&["Alice@example.com"]));
    }

    #[test]
    fn refused_forms() {
        assert_eq!(senders(&[("Subject", "x")]), HeaderSenders::Missing);
        assert_eq!(senders(&[("From", "a@example.com"), ("FROM", "a@example.com")]), HeaderSenders::Repeated);
        assert_eq!(
            senders(&[("From", "a@example.com"), ("Sender", "a@example.com"), ("Sender", "b@example.com")]),
            HeaderSenders::Repeated
        );
        for bad in ["", "   ", "Alice", "<alice@example.com", "\"Alice <alice@example.com>", "(Alice <a@x>", "a@"] {
            assert!(matches!(senders(&[("From", bad)]), HeaderSenders::Unparsable(_)), "{bad:?}");
        }
        let huge = format!("{}@example.com", "a".repeat(MAX_VALUE));
        assert!(matches!(senders(&[("From", &huge)]), HeaderSenders::Unparsable(s) if s.len() <= 120));
        // Sender: must be one mailbox.
        assert!(matches!(
            senders(&[("From", "a@example.com"), ("Sender", "a@example.com, b@example.com")]),
            HeaderSenders::Unparsable(_)
        ));
    }

    #[test]
    fn sender_header_is_reported() {
        assert_eq!(
            senders(&[("From", "helpdesk@example.com"), ("Sender", "Dave <dave@example.com>")]),
            HeaderSenders::Parsed {
                from: vec![Address::parse("helpdesk@example.com").unwrap()],
                sender: Some(Address::parse("dave@example.com").unwrap())
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn any_value_is_handled(value in "\\PC{0,200}") {
            let _ = senders(&[("From", &value)]);
        }
    }
}
