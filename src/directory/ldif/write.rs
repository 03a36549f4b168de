//! Writing a new password into the LDIF file, atomically.
//!
//! The file is edited as text so comments, order and folding of every
//! other line survive: only the changed entry's `userPassword`,
//! `pwdChangedTime`, `pwdReset` lines are replaced. The new file is
//! written to a temporary file in the same folder, flushed to disk, then
//! renamed over the old one, so a reader (or a crash) sees either the old
//! file or the new one, never half of each.

use std::io::Write;
use std::path::Path;

use base64::Engine;

/// Attributes a password change rewrites.
const REWRITTEN: [&str; 3] = ["userpassword", "pwdchangedtime", "pwdreset"];

/// Why the edit failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no entry {0} in the file")]
    NoSuchEntry(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The file text with the entry `dn` given a new password hash and
/// change time (GeneralizedTime), and its `pwdReset` removed.
pub fn with_new_password(text: &str, dn: &str, hash: &str, changed_at: &str) -> Result<String, WriteError> {
    let want = super::dn_key(dn);
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = false;
    for record in records(text) {
        let is_target = !found && record_dn(&record).is_some_and(|d| super::dn_key(&d) == want);
        if !is_target {
            for line in &record {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        found = true;
        let mut skipping = false;
        let mut last_content = 0;
        let mut kept: Vec<&str> = Vec::new();
        for line in &record {
            if let Some(_cont) = line.strip_prefix(' ') {
                if !skipping {
                    kept.push(line);
                }
                continue;
            }
            let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            skipping = !line.starts_with('#') && REWRITTEN.contains(&name.as_str());
            if !skipping {
                kept.push(line);
                if !line.is_empty() {
                    last_content = kept.len();
                }
            }
        }
        // New attributes go after the entry's last attribute, before any
        // trailing blank lines.
        for line in &kept[..last_content] {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("userPassword: {hash}\npwdChangedTime: {changed_at}\n"));
        for line in &kept[last_content..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    if found {
        Ok(out)
    } else {
        Err(WriteError::NoSuchEntry(dn.to_owned()))
    }
}

/// Replaces `path` with `text`: temp file in the same folder, fsync,
/// rename, fsync of the folder. Keeps the old file's permissions.
pub fn replace_file(path: &Path, text: &str) -> Result<(), WriteError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".mailwarrant-").suffix(".ldif.tmp").tempfile_in(dir)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Records as raw lines: each record runs up to and including the blank
/// lines after it, so joining them gives the text back.
fn records(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut in_blank = false;
    for line in text.lines() {
        let blank = line.trim_end_matches('\r').is_empty();
        if !blank && in_blank {
            out.push(std::mem::take(&mut current));
        }
        in_blank = blank;
        current.push(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The (unfolded) DN of a record, if it has one.
fn record_dn(record: &[&str]) -> Option<String> {
    let start = record.iter().position(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("dn:")
    })?;
    let mut value = record[start][3..].to_owned();
    for cont in record[start + 1..].iter().map_while(|l| l.strip_prefix(' ')) {
        value.push_str(cont);
    }
    if let Some(b64) = value.strip_prefix(':') {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        return String::from_utf8(bytes).ok();
    }
    Some(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "version: 1\n# the cast\n\ndn: uid=alice,ou=people,dc=example,dc=com\nuid: alice\nuserPassword: {SSHA}old\n  continued\n\
pwdReset: TRUE\nmail: alice@example.com\n\n# bob next\ndn: uid=bob,ou=people,\n dc=example,dc=com\nuid: bob\nuserPassword: {SSHA}bob\n";

    #[test]
    fn rewrites_only_the_target_entry() {
        let out = with_new_password(TEXT, "UID=Alice, ou=people,dc=example,dc=com", "{ARGON2}new", "20261127120000Z")
            .unwrap();
        assert!(out.contains("uid: alice\nmail: alice@example.com\nuserPassword: {ARGON2}new\npwdChangedTime: 20261127120000Z\n\n# bob next\n"));
        assert!(!out.contains("{SSHA}old") && !out.contains("continued") && !out.contains("pwdReset"));
        assert!(out.contains("# the cast\n") && out.contains("userPassword: {SSHA}bob\n"));
        let entries = super::super::parse::parse(&out).unwrap();
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn finds_folded_dns_and_refuses_unknown_ones() {
        let out =
            with_new_password(TEXT, "uid=bob,ou=people,dc=example,dc=com", "{ARGON2}b", "20261127120000Z").unwrap();
        assert!(out.ends_with("uid: bob\nuserPassword: {ARGON2}b\npwdChangedTime: 20261127120000Z\n"));
        assert!(matches!(with_new_password(TEXT, "uid=eve,dc=x", "h", "t"), Err(WriteError::NoSuchEntry(_))));
    }

    #[test]
    fn replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.ldif");
        std::fs::write(&path, "old").unwrap();
        replace_file(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }
}
