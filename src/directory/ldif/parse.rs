//! A small LDIF (RFC 2849) reader: content records only, enough for a
//! directory kept in a file.
//!
//! Handles comments, folded lines, `attr:: base64` values and blank-line
//! separated entries. Change records are refused: this file is data, not
//! a script.

use std::collections::HashMap;

use base64::Engine;

/// One entry: its DN and attributes keyed by lower-cased name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attributes: HashMap<String, Vec<String>>,
}

impl Entry {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.attributes.get(&name.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.attributes.get(&name.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn has_object_class(&self, class: &str) -> bool {
        self.all("objectClass").iter().any(|c| c.eq_ignore_ascii_case(class))
    }
}

/// Where and why an LDIF file is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole LDIF document.
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for (line_no, line) in unfold(text) {
        let fail = |message: &str| ParseError { line: line_no, message: message.to_owned() };
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let colon = line.find(':').ok_or_else(|| fail("expected `attribute: value`"))?;
        let name = line[..colon].trim();
        let rest = &line[colon + 1..];
        let value = if let Some(b64) = rest.strip_prefix(':') {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| fail("invalid base64 value"))?;
            String::from_utf8(bytes).map_err(|_| fail("base64 value is not UTF-8"))?
        } else if rest.starts_with('<') {
            return Err(fail("URL values are not supported"));
        } else {
            rest.trim_start().to_owned()
        };
        if name.eq_ignore_ascii_case("version") && current.is_none() {
            continue;
        }
        if name.eq_ignore_ascii_case("changetype") {
            return Err(fail("change records are not supported; write plain entries"));
        }
        match current.as_mut() {
            None if name.eq_ignore_ascii_case("dn") => {
                current = Some(Entry { dn: value, attributes: HashMap::new() });
            }
            None => return Err(fail("an entry must start with `dn:`")),
            Some(entry) => entry.attributes.entry(name.to_ascii_lowercase()).or_default().push(value),
        }
    }
    entries.extend(current);
    Ok(entries)
}

/// Joins folded lines (a line starting with one space continues the
/// previous one) and yields each logical line with its first line number.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix(' '), out.last_mut()) {
            (Some(cont), Some((_, prev))) if !prev.is_empty() => prev.push_str(cont),
            _ => out.push((i + 1, raw.to_owned())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_folds_and_base64() {
        let text = "version: 1\n# people\ndn: uid=alice,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n\
                    cn: Alice\n  Smith\nsn:: R3Jvw58=\n\ndn: cn=staff,ou=groups,dc=example,dc=com\nmember: x\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].first("cn"), Some("Alice Smith"));
        assert_eq!(entries[0].first("SN"), Some("Groß"));
        assert!(entries[0].has_object_class("INETORGPERSON"));
        assert_eq!(entries[1].all("member"), ["x"]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(parse("cn: x\n").unwrap_err().line, 1);
        assert!(parse("dn: x\nchangetype: add\n").is_err());
        assert!(parse("dn: x\ncn:: !!!\n").is_err());
        assert!(parse("dn: x\nnocolon\n").is_err());
    }
}
