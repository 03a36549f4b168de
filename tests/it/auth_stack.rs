//! mailwarrant's AUTH front ends running in-process on free loopback
//! ports, for the tests that put real clients (Postfix, Exim,
//! testsaslauthd) in front of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailwarrant::config::Config;
use mailwarrant::serve::{self, App, ShutdownTrigger};
use mailwarrant::testkit::{free_port, wait_for_port, wait_until};

/// The `[directory]` section for the demo cast in the LDIF file.
pub fn demo_ldif_directory() -> String {
    let ldif = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-directory.ldif");
    format!("[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = {ldif:?}\npassword_max_age = \"90d\"\n")
}

/// A running mailwarrant; stops (and drains) when dropped.
pub struct Stack {
    _dir: tempfile::TempDir,
    pub dovecot_port: u16,
    pub saslauthd_socket: PathBuf,
    pub dovecot_socket: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    trigger: Option<ShutdownTrigger>,
}

impl Stack {
    /// Starts with the given `[directory]` section and extra `[auth]` lines.
    pub fn start(directory: &str, auth_extra: &str) -> Stack {
        Stack::start_with_store(directory, "[store]\npath = \"state.sqlite\"\n", auth_extra)
    }

    /// The same with the given `[store]` section (Redis, to share budgets).
    pub fn start_with_store(directory: &str, store: &str, auth_extra: &str) -> Stack {
        let dir = tempfile::Builder::new().prefix("mailwarrant-auth").tempdir().unwrap();
        // Exim and Postfix daemons drop privileges and must reach sockets.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = free_port();
        let saslauthd_socket = dir.path().join("saslauthd/mux");
        let dovecot_socket = dir.path().join("auth-client");
        // A test may set its own delay in `auth_extra`.
        let delay = if auth_extra.contains("failure_delay") { "" } else { "failure_delay = \"300ms\"\n" };
        let text = format!(
            "{directory}\n{store}[auth]\n{delay}\
             self_service_url = \"https://mail.example.com/password\"\n{auth_extra}\n\
             [auth.dovecot]\nlisten = [\"127.0.0.1:{port}\"]\nunix_socket = {dovecot_socket:?}\nsocket_mode = \"0666\"\n\
             [auth.saslauthd]\nunix_socket = {saslauthd_socket:?}\nsocket_mode = \"0666\"\n"
        );
        let file = dir.path().join("mailwarrant.toml");
        std::fs::write(&file, &text).unwrap();
        let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let app = runtime.block_on(App::build(config)).expect("mailwarrant builds");
        let (trigger, shutdown) = serve::shutdown::channel();
        runtime.spawn(async move {
            if let Err(e) = serve::run(app, shutdown).await {
                eprintln!("serve ended: {e}");
            }
        });
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10)).unwrap();
        let sockets_ready = wait_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&saslauthd_socket).is_ok()
                && std::os::unix::net::UnixStream::connect(&dovecot_socket).is_ok()
        });
        assert!(sockets_ready, "UNIX sockets never accepted");
        Stack {
            _dir: dir,
            dovecot_port: port,
            saslauthd_socket,
            dovecot_socket,
            runtime: Some(runtime),
            trigger: Some(trigger),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(t) = self.trigger.take() {
            t.fire();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// What swaks printed, and whether it succeeded.
pub fn transcript(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One message through `postfix` with SMTP AUTH (`mech`), from alice to an
/// outside address: whether swaks succeeded, and its transcript.
pub fn swaks_auth(
    postfix: &mailwarrant::testkit::postfix::Postfix,
    mech: &str,
    user: &str,
    password: &str,
) -> (bool, String) {
    let out = postfix.swaks(&[
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        "alice@example.com",
        "--to",
        "someone@example.org",
    ]);
    (out.status.success(), transcript(&out))
}
