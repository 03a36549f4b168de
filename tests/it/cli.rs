//! The built binary, as an admin runs it.

use std::process::Command;

fn mailwarrant(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"missing.ldif\"\npassword_max_age = \"ninety\"\n\
         [identity]\nnegative_ttl = \"-1\"\n",
    )
    .unwrap();
    let out = mailwarrant(&["check-config", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for key in ["directory.ldif.path", "directory.ldif.password_max_age", "identity.negative_ttl"] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let out = mailwarrant(&["check-config", "--config", "config/demo.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("kind = \"ldif\"") && printed.contains("cache_ttl = \"5m\""), "{printed}");
}

#[test]
fn lookup_on_the_demo_directory_needs_no_server() {
    let out = mailwarrant(&["lookup", "--config", "config/demo.toml", "alice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["login"], "alice");
    let groups: Vec<&str> = v["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(groups.contains(&"sales") && groups.contains(&"staff"), "{groups:?}");

    let out = mailwarrant(&["lookup", "--config", "config/demo.toml", "*"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version_is_printed() {
    let out = mailwarrant(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mailwarrant "));
}

#[test]
fn serve_starts_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let ldif = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-directory.ldif");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!("[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = {ldif:?}\n[store]\npath = \"state.sqlite\"\n[auth.dovecot]\nlisten = [\"127.0.0.1:0\"]\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("mailwarrant ready"));
    assert!(ready, "serve never said it was ready");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("state.sqlite").exists(), "the store was opened");
}
