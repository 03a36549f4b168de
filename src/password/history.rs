//! Password history: the last N passwords of a user, kept as argon2id
//! hashes (PHC strings) so the store never holds a reusable secret.
//!
//! Pure: hashing takes its salt from the OS RNG but does no I/O; the
//! store read and write happen in the change flow. Checking costs one
//! argon2 verification per entry (tens of milliseconds each), so it runs
//! when a change is submitted, never on the live strength check.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The store key of a user's history, a JSON array, newest first.
pub fn store_key(login: &str) -> String {
    format!("password:history:{}", login.to_ascii_lowercase())
}

/// A new history entry for `password`.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// True when `password` is one of the first `depth` entries. Unreadable
/// entries are ignored (they can match nothing).
pub fn contains(entries: &[String], depth: usize, password: &str) -> bool {
    entries.iter().take(depth).any(|stored| {
        PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
}

/// The history after a change: the new entry first, at most `keep` kept.
pub fn push(mut entries: Vec<String>, new_entry: String, keep: usize) -> Vec<String> {
    entries.insert(0, new_entry);
    entries.truncate(keep);
    entries
}

/// Decodes the stored JSON; a damaged value reads as empty history.
pub fn decode(bytes: &[u8]) -> Vec<String> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

pub fn encode(entries: &[String]) -> Vec<u8> {
    serde_json::to_vec(entries).unwrap_or_else(|_| b"[]".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_n_as_hashes() {
        let mut h = Vec::new();
        for pw in ["first-pw", "second-pw", "third-pw"] {
            h = push(h, hash(pw).unwrap(), 2);
        }
        assert_eq!(h.len(), 2);
        assert!(h.iter().all(|e| e.starts_with("$argon2id$") && !e.contains("second") && !e.contains("third")));
        assert!(contains(&h, 2, "third-pw") && contains(&h, 2, "second-pw"));
        assert!(!contains(&h, 2, "first-pw"), "dropped beyond the depth");
        assert!(!contains(&h, 1, "second-pw"), "depth limits the check");
        assert_eq!(decode(&encode(&h)), h);
        assert!(decode(b"not json").is_empty());
        assert!(!contains(&["garbage".into()], 5, "x"));
    }
}
