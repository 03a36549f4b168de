//! Common and breached passwords, one per line, looked up in O(log n).
//!
//! Lists run to millions of lines (the benchmark uses 1,000,000),
//! so entries are kept as a sorted `Vec<u64>` of 64-bit hashes of the
//! lowercased line: 8 bytes per entry, no per-string allocation, and a
//! binary search per lookup. A false positive needs a 64-bit collision
//! (about 1 in 10^13 for a million entries), and would only refuse a
//! password, never accept one. Comparison is case-insensitive, so
//! `Password1` is refused when `password1` is listed.

use std::hash::{Hash, Hasher};
use std::path::Path;

/// The loaded list.
#[derive(Clone, Debug, Default)]
pub struct Blocklist {
    hashes: Vec<u64>,
}

/// The file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the password blocklist {path}: {source}")]
pub struct BlocklistError {
    pub path: String,
    pub source: std::io::Error,
}

impl Blocklist {
    /// Reads a file of one password per line; blank lines and lines
    /// starting with `#` are skipped. Invalid UTF-8 is read lossily.
    pub fn load(path: &Path) -> Result<Self, BlocklistError> {
        use std::io::BufRead;
        let fail = |source| BlocklistError { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(fail)?;
        // Streamed line by line: the file is never held whole in memory.
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let mut hashes = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(fail)? == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(entry) = entry(&text) {
                hashes.push(key(entry));
            }
        }
        Ok(Self::from_hashes(hashes))
    }

    /// Builds the list from text, one password per line.
    pub fn from_text(text: &str) -> Self {
        Self::from_hashes(text.lines().filter_map(entry).map(key).collect())
    }

    fn from_hashes(mut hashes: Vec<u64>) -> Self {
        hashes.sort_unstable();
        hashes.dedup();
        hashes.shrink_to_fit();
        Self { hashes }
    }

    /// True when the password (case-insensitively) is on the list.
    pub fn contains(&self, password: &str) -> bool {
        self.hashes.binary_search(&key(password)).is_ok()
    }

    /// Distinct entries.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Heap bytes held, for the start-up log and the benchmark.
    pub fn memory_bytes(&self) -> usize {
        self.hashes.capacity() * std::mem::size_of::<u64>()
    }
}

/// The password on one line, if the line holds one.
fn entry(line: &str) -> Option<&str> {
    let l = line.trim_end_matches(['\r', '\n']);
    (!l.is_empty() && !l.starts_with('#')).then_some(l)
}

/// `DefaultHasher::new()` uses fixed keys: stable within a process,
/// which is all a list built at start-up needs.
fn key(password: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    if password.is_ascii() {
        password.to_ascii_lowercase().hash(&mut h);
    } else {
        password.to_lowercase().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_entries_case_insensitively_and_skips_comments() {
        let list = Blocklist::from_text("# top passwords\npassword\r\n123456\n\nPassw0rd\nÜberpasswort\npassword\n");
        assert_eq!(list.len(), 4);
        for hit in ["password", "PASSWORD", "123456", "passw0rd", "überpasswort"] {
            assert!(list.contains(hit), "{hit}");
        }
        for miss in ["passwor", "password ", "# top passwords", ""] {
            assert!(!list.contains(miss), "{miss:?}");
        }
    }

    #[test]
    fn a_million_lines_take_eight_megabytes() {
        let text: String = (0..1_000_000).map(|i| format!("pw{i}\n")).collect();
        let list = Blocklist::from_text(&text);
        assert_eq!(list.len(), 1_000_000);
        assert!(list.memory_bytes() <= 8_000_000);
        assert!(list.contains("pw999999") && !list.contains("pw1000000"));
    }

    #[test]
    fn a_file_loads_like_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, b"# c\r\npassword\r\nqwerty\n\xff\xfeodd\nlast-without-newline").unwrap();
        let list = Blocklist::load(&path).unwrap();
        assert_eq!(list.len(), 4);
        assert!(
            list.contains("Password") && list.contains("last-without-newline") && list.contains("\u{fffd}\u{fffd}odd")
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Blocklist::load(Path::new("/nonexistent/blocklist.txt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/blocklist.txt"));
    }
}
