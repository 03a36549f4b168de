//! Secrets in config: inline, from a file, or from an environment variable;
//! never printed.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::problems::Problems;

/// A secret as written in the file. `Debug` and `Serialize` redact it, so
/// `check-config` can print the effective config safely.
#[derive(Clone, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(transparent)]
pub struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Redacted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// Resolves the `<name>`, `<name>_file`, `<name>_env` triple into one
/// secret. Exactly one must be set; a file's trailing newline is dropped.
pub fn resolve(
    problems: &mut Problems,
    path: &str,
    inline: Option<&Redacted>,
    file: Option<&Path>,
    env: Option<&str>,
    base_dir: &Path,
) -> Option<SecretString> {
    let given = [inline.is_some(), file.is_some(), env.is_some()].iter().filter(|x| **x).count();
    if given != 1 {
        problems.error(path, format!("set exactly one of `{path}`, `{path}_file` or `{path}_env` (found {given})"));
        return None;
    }
    let value = if let Some(Redacted(v)) = inline {
        problems.inline_secrets.push(path.to_owned());
        v.clone()
    } else if let Some(file) = file {
        let full: PathBuf = base_dir.join(file);
        match std::fs::read_to_string(&full) {
            Ok(v) => v.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => {
                problems.error(format!("{path}_file"), format!("cannot read {}: {e}", full.display()));
                return None;
            }
        }
    } else {
        let name = env.unwrap_or_default();
        match std::env::var(name) {
            Ok(v) => v,
            Err(_) => {
                problems.error(format!("{path}_env"), format!("environment variable {name} is not set"));
                return None;
            }
        }
    };
    if value.is_empty() {
        problems.error(path, "the secret is empty; an empty bind password is an anonymous bind");
        return None;
    }
    Some(SecretString::from(value))
}
