//! Mail addresses with the comparison rules the directory implies.
//!
//! The local part is kept exactly as given (the directory's stored value is
//! the canonical one); the domain is lower-cased (ASCII) because DNS names
//! are case-insensitive. Nothing here folds non-ASCII characters: `mıke`
//! must never become `mike`.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a string is not an address we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address has no '@'")]
    MissingAt,
    #[error("address has an empty local part")]
    EmptyLocalPart,
    #[error("address has an empty domain")]
    EmptyDomain,
    #[error("address contains a control character or space")]
    ForbiddenCharacter,
    #[error("address is longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
}

/// RFC 5321 caps a path at 256 octets including the angle brackets.
pub const MAX_ADDRESS_LEN: usize = 254;

/// A mail address: `local@domain`, domain lower-cased.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    at: usize,
}

impl Address {
    /// Parses an addr-spec (no display name, no angle brackets).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if input.chars().any(|c| c.is_control() || c == ' ') {
            return Err(AddressError::ForbiddenCharacter);
        }
        let at = input.rfind('@').ok_or(AddressError::MissingAt)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart);
        }
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        let mut full = String::with_capacity(input.len());
        full.push_str(local);
        full.push('@');
        full.push_str(&domain.to_ascii_lowercase());
        Ok(Self { full, at })
    }

    pub fn local_part(&self) -> &str {
        &self.full[..self.at]
    }

    /// The domain, ASCII lower-case.
    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Same mailbox when local parts match ignoring ASCII case: directories
    /// store `mail` with a case-insensitive matching rule, so `Alice@` and
    /// `alice@` reach the same entry there too.
    pub fn same_mailbox(&self, other: &Address) -> bool {
        self.domain() == other.domain() && self.local_part().eq_ignore_ascii_case(other.local_part())
    }

    /// The address without a `+tag` (or other configured delimiter) suffix.
    pub fn without_subaddress(&self, delimiters: &str) -> Address {
        match self.local_part().find(|c| delimiters.contains(c)) {
            Some(cut) if cut > 0 => {
                Address { full: format!("{}@{}", &self.local_part()[..cut], self.domain()), at: cut }
            }
            _ => self.clone(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.full)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.full)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, AddressError>) {
        assert_eq!(Address::parse(input).as_ref().map(Address::as_str), expected.as_ref().map(|s| *s), "{input:?}");
    }

    #[test]
    fn parses_and_normalises_the_domain_only() {
        check("Alice@Example.COM", Ok("Alice@example.com"));
        check("a.smith@example.com.", Ok("a.smith@example.com"));
        check("\"odd@local\"@example.com", Ok("\"odd@local\"@example.com"));
        check("alice", Err(AddressError::MissingAt));
        check("@example.com", Err(AddressError::EmptyLocalPart));
        check("alice@", Err(AddressError::EmptyDomain));
        check("al ice@example.com", Err(AddressError::ForbiddenCharacter));
        check("alice\0@example.com", Err(AddressError::ForbiddenCharacter));
        check(&format!("{}@example.com", "a".repeat(300)), Err(AddressError::TooLong));
    }

    #[test]
    fn mailbox_comparison_folds_ascii_only() {
        let a = Address::parse("alice@example.com").unwrap();
        assert!(a.same_mailbox(&Address::parse("ALICE@EXAMPLE.COM").unwrap()));
        assert!(!Address::parse("mike@example.com")
            .unwrap()
            .same_mailbox(&Address::parse("mıke@example.com").unwrap()));
    }

    #[test]
    fn subaddress_is_cut_at_the_first_delimiter() {
        let a = Address::parse("alice+news@example.com").unwrap();
        assert_eq!(a.without_subaddress("+").as_str(), "alice@example.com");
        let b = Address::parse("+x@example.com").unwrap();
        assert_eq!(b.without_subaddress("+").as_str(), "+x@example.com");
    }
}
