//! The Debian packages the test suite runs, read from the one list that
//! `scripts/test.sh` installs from (`scripts/test-packages.txt`), so a test
//! that finds its part missing names the package to install, and the list
//! and the checks cannot drift apart.

use std::fs;
use std::path::{Path, PathBuf};

const LIST: &str = include_str!("../../scripts/test-packages.txt");

/// The packages on the list with the file that proves each installed.
pub fn listed() -> impl Iterator<Item = (&'static str, &'static str)> {
    LIST.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words = line.split_whitespace();
        Some((words.next()?, words.next()?))
    })
}

/// Fails, naming the package and the command that installs it, when the
/// listed package's proof file is missing. Panics on a name that is not on
/// the list: that is a bug in the test, not a missing install.
pub fn require_package(package: &str) -> Result<PathBuf, String> {
    let (_, proof) = listed()
        .find(|(name, _)| *name == package)
        .unwrap_or_else(|| panic!("{package} is not in scripts/test-packages.txt"));
    check(package, proof)
}

fn check(package: &str, proof: &str) -> Result<PathBuf, String> {
    find(proof).ok_or_else(|| {
        format!("{proof} is missing: Debian's `{package}` is not installed (scripts/test.sh installs it)")
    })
}

/// The same for several packages, all reported at once.
pub fn require_packages(packages: &[&str]) -> Result<(), String> {
    let missing: Vec<String> = packages.iter().filter_map(|p| require_package(p).err()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

/// Resolves a proof path in which a `*` component matches any one name
/// (the multiarch triplet under /usr/lib).
pub fn find(pattern: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/")];
    for component in Path::new(pattern).components().skip(1) {
        let part = component.as_os_str();
        let mut next = Vec::new();
        for base in candidates {
            if part == "*" {
                if let Ok(entries) = fs::read_dir(&base) {
                    next.extend(entries.flatten().map(|e| e.path()));
                }
            } else {
                next.push(base.join(part));
            }
        }
        candidates = next;
    }
    candidates.into_iter().find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_names_a_package_and_an_absolute_file() {
        let all: Vec<_> = listed().collect();
        assert!(all.len() >= 15, "{all:?}");
        for (package, proof) in all {
            assert!(proof.starts_with('/'), "{package}: {proof}");
        }
    }

    #[test]
    fn a_star_matches_one_component() {
        assert_eq!(find("/*/passwd"), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(find("/*/no-such-file-here"), None);
    }

    #[test]
    fn a_missing_file_names_its_package() {
        let e = check("samba-ad-provision", "/*/no-such-schema.ldf").unwrap_err();
        assert!(e.contains("`samba-ad-provision`") && e.contains("scripts/test.sh"), "{e}");
    }
}
