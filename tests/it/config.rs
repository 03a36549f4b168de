//! Example configs load cleanly; bad configs name every problem; the
//! committed JSON Schema matches the types.

use std::path::{Path, PathBuf};

use mailwarrant::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_example_config_loads_without_warnings() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.warnings.is_empty(), "{}: {:?}", path.display(), config.warnings);
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example configs found");
}

#[test]
fn three_mistakes_are_all_named() {
    let text = r#"
        [directory]
        kind = "ldap"
        [directory.ldap]
        urls = ["ldap://127.0.0.1:389"]
        bind_dn = "cn=svc,dc=example,dc=com"
        base_dn = "dc=example,dc=com"
        user_filter = "(uid={user})"
        operation_timeout = "soon"
        [identity]
        cache_ttl = "5m"
    "#;
    let err = Config::from_toml(text, Path::new("."), Path::new("bad.toml")).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["directory.ldap.bind_password", "directory.ldap.user_filter", "directory.ldap.operation_timeout"],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("bind_password_file"), "says what to do: {text}");
    assert!(text.contains("{user}"), "{text}");
}

#[test]
fn unknown_keys_are_refused_in_every_section_at_once() {
    let text = "[directory]\nkind = \"ldif\"\ncolour = \"blue\"\n[identity]\ncache_tl = \"1m\"\n[extra]\n";
    let err = Config::from_toml(text, Path::new("."), Path::new("bad.toml")).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("colour") && all.contains("cache_tl") && all.contains("extra"), "{all}");
}

#[test]
fn secrets_never_print() {
    let text = r#"
        [directory]
        kind = "ldap"
        [directory.ldap]
        urls = ["ldap://127.0.0.1:389"]
        bind_dn = "cn=svc,dc=example,dc=com"
        bind_password = "Pw-SENTINEL-77"
        base_dn = "dc=example,dc=com"
    "#;
    let config = Config::from_toml(text, Path::new("."), Path::new("ok.toml")).unwrap();
    assert!(!format!("{config:?}").contains("SENTINEL"));
    assert!(!config.redacted_toml().contains("SENTINEL"));
    assert!(config.redacted_toml().contains("[redacted]"));
}

#[test]
fn committed_schema_matches_the_types() {
    let committed = std::fs::read_to_string(repo("schemas/config.schema.json")).unwrap_or_default();
    assert!(
        committed == mailwarrant::config::json_schema(),
        "schemas/config.schema.json is stale: run `cargo run -q -- config-schema > schemas/config.schema.json`"
    );
}
