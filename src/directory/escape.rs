//! Escaping of values substituted into LDAP filters (RFC 4515) and DNs
//! (RFC 4514).
//!
//! Every value that comes from a client goes through here before it
//! reaches the directory: an unescaped `*` or `)` in a login is an LDAP
//! injection.

use std::fmt::Write;

/// Escapes a filter assertion value: `*`, `(`, `)`, `\` and NUL become
/// `\2a`, `\28`, `\29`, `\5c`, `\00` (RFC 4515 §3). Non-ASCII stays UTF-8,
/// which the RFC allows.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => {
                let _ = write!(out, "\\{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes an RDN attribute value (RFC 4514 §2.4): the specials
/// `" + , ; < > \` and `=` anywhere, `#` and space at the start, space at
/// the end, and NUL as `\00`.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filter_specials_are_hex_escaped() {
        assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(filter_value("a\\b\0"), "a\\5cb\\00");
        assert_eq!(filter_value("Jürgen"), "Jürgen");
    }

    #[test]
    fn dn_specials_are_backslash_escaped() {
        assert_eq!(dn_value("Smith, John"), "Smith\\, John");
        assert_eq!(dn_value("#lead and trail "), "\\#lead and trail\\ ");
        assert_eq!(dn_value(" x=y+z"), "\\ x\\=y\\+z");
    }

    /// Decodes an escaped filter value back, failing on any unescaped
    /// special: the property is that escaping round-trips and leaves none.
    fn unescape_filter(s: &str) -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                }
                b'*' | b'(' | b')' | 0 => return None,
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }

    proptest! {
        #[test]
        fn filter_escape_round_trips(s in ".*") {
            prop_assert_eq!(unescape_filter(&filter_value(&s)), Some(s));
        }
    }
}
