//! Verification of the password hashes an LDIF directory may hold:
//! `{ARGON2}` (PHC string, as OpenLDAP's argon2 module writes) and
//! `{SSHA}` (salted SHA-1, the classic `slappasswd` default).
//!
//! Cleartext values are refused: a file directory must not hold them.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The outcome of comparing a password with a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The stored value is not a hash we read; treated as a mismatch and
    /// reported to the admin at load.
    Unsupported,
}

/// Compares in constant time (per scheme) and never logs either side.
pub fn verify(stored: &str, password: &[u8]) -> Verdict {
    verify_with(stored, password, &mut Vec::new())
}

/// [`verify`] with Argon2's working memory in `blocks`, grown as needed
/// and kept by the caller, so a thread that checks many hashes allocates
/// its 19 MiB once instead of once per check (see `hasher`).
pub fn verify_with(stored: &str, password: &[u8], blocks: &mut Vec<Block>) -> Verdict {
    if let Some(phc) = strip_scheme(stored, "{ARGON2}") {
        return verify_argon2(phc, password, blocks).unwrap_or(Verdict::Unsupported);
    }
    if let Some(b64) = strip_scheme(stored, "{SSHA}") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return Verdict::Unsupported;
        };
        if raw.len() <= 20 {
            return Verdict::Unsupported;
        }
        let (digest, salt) = raw.split_at(20);
        let mut h = Sha1::new();
        h.update(password);
        h.update(salt);
        return if bool::from(h.finalize().as_slice().ct_eq(digest)) { Verdict::Match } else { Verdict::Mismatch };
    }
    Verdict::Unsupported
}

/// `None`: not a PHC string this library can check.
fn verify_argon2(phc: &str, password: &[u8], blocks: &mut Vec<Block>) -> Option<Verdict> {
    let hash = PasswordHash::new(phc).ok()?;
    let expected = hash.hash?;
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = hash.version.map_or(Some(Version::default()), |v| Version::try_from(v).ok())?;
    let params = Params::try_from(&hash).ok()?;
    let mut salt = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt).ok()?;
    blocks.resize(params.block_count(), Block::default());
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..])
        .ok()?;
    Some(if bool::from(out.as_slice().ct_eq(expected.as_bytes())) { Verdict::Match } else { Verdict::Mismatch })
}

/// True when `stored` uses a scheme [`verify`] understands.
pub fn is_supported(stored: &str) -> bool {
    strip_scheme(stored, "{ARGON2}").is_some() || strip_scheme(stored, "{SSHA}").is_some()
}

/// A new `{ARGON2}` value (argon2id, library defaults), for
/// `mailwarrant hash-password` and LDIF writes.
pub fn hash(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(format!("{{ARGON2}}{}", Argon2::default().hash_password(password, &salt)?))
}

fn strip_scheme<'a>(stored: &'a str, scheme: &str) -> Option<&'a str> {
    let head = stored.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &stored[scheme.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let stored = hash(b"Alice-Demo-2026!").unwrap();
        assert_eq!(verify(&stored, b"Alice-Demo-2026!"), Verdict::Match);
        assert_eq!(verify(&stored, b"alice-demo-2026!"), Verdict::Mismatch);
    }

    #[test]
    fn ssha_as_slappasswd_writes_it() {
        // slappasswd -s secret -h {SSHA} with salt "salt": sha1("secret"+"salt") + "salt".
        let mut h = Sha1::new();
        h.update(b"secretsalt");
        let mut raw = h.finalize().to_vec();
        raw.extend_from_slice(b"salt");
        let stored = format!("{{SSHA}}{}", base64::engine::general_purpose::STANDARD.encode(raw));
        assert_eq!(verify(&stored, b"secret"), Verdict::Match);
        assert_eq!(verify(&stored, b"Secret"), Verdict::Mismatch);
    }

    #[test]
    fn refuses_cleartext_and_garbage() {
        assert_eq!(verify("secret", b"secret"), Verdict::Unsupported);
        assert_eq!(verify("{SSHA}AAAA", b"x"), Verdict::Unsupported);
        assert_eq!(verify("{ARGON2}nonsense", b"x"), Verdict::Unsupported);
    }
}
