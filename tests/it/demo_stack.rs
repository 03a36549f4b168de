//! `config/demo.toml` itself, served by the real binary on free loopback
//! ports: the recipes and the README's walk-through are tested against
//! the configuration a newcomer runs, not a copy that could drift.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailwarrant::testkit::{free_port, wait_for_port, ChildGuard};

pub struct DemoStack {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub auth_port: u16,
    pub policy_port: u16,
    pub milter_port: u16,
    /// `[auth.dovecot] unix_socket`, added for Exim's dovecot authenticator.
    pub auth_socket: PathBuf,
    _mailwarrant: ChildGuard,
}

/// Replaces `from` in `text`, failing when the demo config no longer
/// holds it (so this rig follows `config/demo.toml` or breaks loudly).
pub fn swap(text: &mut String, from: &str, to: &str) {
    assert!(text.contains(from), "config/demo.toml no longer holds {from:?}");
    *text = text.replacen(from, to, 1);
}

impl DemoStack {
    /// The demo config with its ports, sockets and files moved to a temp
    /// folder, and `edit` applied (e.g. a tighter rate limit).
    pub fn start(edit: impl FnOnce(&mut String)) -> DemoStack {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut text = std::fs::read_to_string(root.join("demo.toml")).unwrap();
        let dir = tempfile::Builder::new().prefix("mailwarrant-demo").tempdir().unwrap();
        // Postfix and Exim daemons drop privileges and must reach the sockets.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (auth_port, policy_port, milter_port, http_port) = (free_port(), free_port(), free_port(), free_port());
        let auth_socket = dir.path().join("auth");
        swap(
            &mut text,
            "listen = [\"127.0.0.1:10030\"]\n",
            &format!("listen = [\"127.0.0.1:{auth_port}\"]\nunix_socket = {auth_socket:?}\nsocket_mode = \"0666\"\n"),
        );
        swap(&mut text, "\"127.0.0.1:10040\"", &format!("\"127.0.0.1:{policy_port}\""));
        swap(&mut text, "\"127.0.0.1:10050\"", &format!("\"127.0.0.1:{milter_port}\""));
        swap(&mut text, "listen = \"127.0.0.1:8040\"", &format!("listen = \"127.0.0.1:{http_port}\""));
        swap(&mut text, "\"../demo/saslauthd/mux\"", "\"saslauthd/mux\"");
        swap(&mut text, "port = 2525", &format!("port = {}", free_port()));
        for file in ["demo-directory.ldif", "templates", "password-blocklist.txt"] {
            swap(&mut text, &format!("\"{file}\""), &format!("{:?}", root.join(file)));
        }
        edit(&mut text);
        let config = dir.path().join("demo.toml");
        std::fs::write(&config, &text).unwrap();
        let log = std::fs::File::create(dir.path().join("mailwarrant.log")).unwrap();
        let child = ChildGuard::spawn(
            "mailwarrant",
            Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
                .args(["serve", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap();
        let stack = DemoStack { dir, config, auth_port, policy_port, milter_port, auth_socket, _mailwarrant: child };
        for port in [auth_port, policy_port, milter_port, http_port] {
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{e}\n{}", stack.log()));
        }
        stack
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mailwarrant.log")).unwrap_or_default()
    }

    /// Runs the CLI against the served config.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        crate::policy_rig::cli_at(&self.config, args)
    }
}
