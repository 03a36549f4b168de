//! LDAP filter templates, compiled once when the config loads.
//!
//! A template such as `(|(uid={login})(mail={login}))` is split into
//! literal text and placeholders; rendering escapes every substituted value
//! (RFC 4515), so no client input is ever interpreted as filter syntax.

use super::escape;

/// Why a filter template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template never uses {{{0}}}")]
    MissingPlaceholder(&'static str),
    #[error("unknown placeholder {{{0}}}; the only one here is {{{1}}}")]
    UnknownPlaceholder(String, &'static str),
    #[error("an unclosed '{{'")]
    Unclosed,
    #[error("unbalanced parentheses")]
    Unbalanced,
    #[error("a filter must start with '(' and end with ')'")]
    NotParenthesised,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value,
}

/// A compiled filter with one named placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterTemplate {
    source: String,
    pieces: Vec<Piece>,
}

impl FilterTemplate {
    /// Compiles `source`, which must use `{placeholder}` at least once.
    pub fn compile(source: &str, placeholder: &'static str) -> Result<Self, TemplateError> {
        let trimmed = source.trim();
        if !(trimmed.starts_with('(') && trimmed.ends_with(')')) {
            return Err(TemplateError::NotParenthesised);
        }
        let mut depth = 0i32;
        for c in trimmed.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return Err(TemplateError::Unbalanced);
            }
        }
        if depth != 0 {
            return Err(TemplateError::Unbalanced);
        }
        let mut pieces = Vec::new();
        let mut rest = trimmed;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
            let name = &rest[open + 1..close];
            if name != placeholder {
                return Err(TemplateError::UnknownPlaceholder(name.to_owned(), placeholder));
            }
            pieces.push(Piece::Value);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        if !pieces.contains(&Piece::Value) {
            return Err(TemplateError::MissingPlaceholder(placeholder));
        }
        Ok(Self { source: trimmed.to_owned(), pieces })
    }

    /// The filter with `value` escaped into every placeholder.
    pub fn render(&self, value: &str) -> String {
        let escaped = escape::filter_value(value);
        let mut out = String::with_capacity(self.source.len() + escaped.len() * 2);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value => out.push_str(&escaped),
            }
        }
        out
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_values() {
        let t = FilterTemplate::compile("(|(uid={login})(mail={login}))", "login").unwrap();
        assert_eq!(t.render("alice"), "(|(uid=alice)(mail=alice))");
        assert_eq!(t.render("*)(uid=*"), "(|(uid=\\2a\\29\\28uid=\\2a)(mail=\\2a\\29\\28uid=\\2a))");
    }

    #[test]
    fn rejects_bad_templates() {
        let check = |s: &str, e: TemplateError| assert_eq!(FilterTemplate::compile(s, "login"), Err(e), "{s}");
        check("(uid=alice)", TemplateError::MissingPlaceholder("login"));
        check("(uid={user})", TemplateError::UnknownPlaceholder("user".into(), "login"));
        check("((uid={login})", TemplateError::Unbalanced);
        check("uid={login}", TemplateError::NotParenthesised);
        check("(uid={login)", TemplateError::Unclosed);
    }
}
