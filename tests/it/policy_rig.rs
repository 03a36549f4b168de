//! A private Postfix with `check_policy_service` in its recipient, data
//! and end-of-data restrictions, in front of the real `mailwarrant serve`
//! binary reading the test slapd (the demo cast). Postfix authenticates clients itself through Cyrus SASL with a
//! sasldb (the demo cast's passwords), so policy requests carry a real
//! `sasl_username`; unauthenticated clients take the `by_sender` path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailwarrant::testkit::postfix::Postfix;
use mailwarrant::testkit::slapd::Slapd;
use mailwarrant::testkit::{free_port, require_package, wait_for_port, ChildGuard};

/// The demo cast and their demo passwords (docs/design.md).
const CAST: &[(&str, &str)] = &[
    ("alice", "Alice-Demo-2026!"),
    ("bob", "Bob-Demo-2026!"),
    ("carol", "Carol-Demo-2026!"),
    ("dave", "Dave-Demo-2026!"),
];
/// Cyrus realm of the sasldb entries; Postfix passes it as the user realm.
const REALM: &str = "mx.example.com";

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub policy_port: u16,
    mailwarrant: Option<ChildGuard>,
    pub postfix: Postfix,
    _slapd: Slapd,
}

/// What the SMTP client saw.
pub struct Sent {
    pub queued: bool,
    pub transcript: String,
}

/// Who checks SMTP AUTH passwords for Postfix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SaslVia {
    /// Postfix's Cyrus SASL with a sasldb of the cast.
    Cyrus,
    /// mailwarrant's own Dovecot auth listener, binding to the test slapd.
    Mailwarrant,
}

impl Rig {
    /// Starts mailwarrant with the demo profiles plus `default_extra` lines
    /// in `[policy.profiles.default]`, then Postfix in front of it
    /// (authenticating through Cyrus SASL).
    pub fn start(default_extra: &str) -> Rig {
        Self::start_with(default_extra, SaslVia::Cyrus)
    }

    pub fn start_with(default_extra: &str, sasl: SaslVia) -> Rig {
        Self::build(default_extra, sasl, None)
    }

    /// [`start`](Self::start) plus mailwarrant's milter on `milter_port`,
    /// named in Postfix's `smtpd_milters` (protocol 6, tempfail when down).
    pub fn start_milter(default_extra: &str, milter_port: u16) -> Rig {
        Self::build(default_extra, SaslVia::Cyrus, Some(milter_port))
    }

    fn build(default_extra: &str, sasl: SaslVia, milter_port: Option<u16>) -> Rig {
        require_package("sasl2-bin").unwrap();
        let dir = tempfile::Builder::new().prefix("mailwarrant-policy-rig").tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let policy_port = free_port();
        let auth_port = free_port();
        let slapd = Slapd::start().unwrap();
        let config = dir.path().join("mailwarrant.toml");
        let auth_listen = match sasl {
            SaslVia::Cyrus => String::new(),
            SaslVia::Mailwarrant => format!("\"127.0.0.1:{auth_port}\""),
        };
        let mut text = config_text(&slapd.config_toml(), policy_port, &auth_listen, default_extra);
        if let Some(port) = milter_port {
            text.push_str(&format!("[milter]\nlisten = \"127.0.0.1:{port}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        if sasl == SaslVia::Mailwarrant {
            // smtpd gives up for good when the auth server is not there at
            // its start: mailwarrant first.
            let mut early = Rig::spawn(&dir, &config, policy_port);
            wait_for_port(SocketAddr::from(([127, 0, 0, 1], auth_port)), Duration::from_secs(20)).unwrap();
            let mut settings = postfix_settings(policy_port, milter_port);
            settings.retain(|(k, _)| !k.starts_with("smtpd_sasl"));
            settings.extend([
                ("smtpd_sasl_auth_enable", "yes".to_owned()),
                ("smtpd_sasl_type", "dovecot".to_owned()),
                ("smtpd_sasl_path", format!("inet:127.0.0.1:{auth_port}")),
            ]);
            let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let postfix = Postfix::start(&settings).unwrap();
            let mailwarrant = early.take();
            return Rig { config, policy_port, mailwarrant, postfix, _slapd: slapd, dir };
        }
        let settings = postfix_settings(policy_port, milter_port);
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let postfix = Postfix::start(&settings).unwrap();
        // Debian's Postfix reads Cyrus SASL settings from
        // `$config_directory/sasl/smtpd.conf` only (not
        // `cyrus_sasl_config_path`): write it, reload, and wait until AUTH
        // works.
        sasl_dir(dir.path(), &postfix.config_dir().join("sasl"));
        let reload = Command::new("postfix").arg("-c").arg(postfix.config_dir()).arg("reload").output().unwrap();
        assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
        // With a milter, Postfix refuses every session while it is down
        // (milter_default_action = tempfail): mailwarrant first.
        let early = milter_port.and_then(|_| Rig::spawn(&dir, &config, policy_port));
        let authenticated = mailwarrant::testkit::wait_until(Duration::from_secs(20), || {
            let out = postfix.swaks(&[
                "--quit-after",
                "AUTH",
                "--auth",
                "PLAIN",
                "--auth-user",
                CAST[0].0,
                "--auth-password",
                CAST[0].1,
            ]);
            String::from_utf8_lossy(&out.stdout).contains("235 ")
        });
        assert!(authenticated, "Postfix SASL never worked:\n{}", postfix.maillog());
        let mut rig = Rig { config, policy_port, mailwarrant: early, postfix, _slapd: slapd, dir };
        if rig.mailwarrant.is_none() {
            rig.start_mailwarrant();
        }
        rig
    }

    /// Starts the binary and waits for its policy port.
    fn spawn(dir: &tempfile::TempDir, config: &Path, policy_port: u16) -> Option<ChildGuard> {
        let log_path = dir.path().join("mailwarrant.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let child = ChildGuard::spawn(
            "mailwarrant",
            Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
                .args(["serve", "--config"])
                .arg(config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap();
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], policy_port)), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log_path).unwrap_or_default()));
        Some(child)
    }

    pub fn start_mailwarrant(&mut self) {
        self.mailwarrant = Rig::spawn(&self.dir, &self.config, self.policy_port);
    }

    /// Stops mailwarrant (SIGTERM, then waits) and starts it again on the
    /// same store.
    pub fn restart_mailwarrant(&mut self) {
        if let Some(mut m) = self.mailwarrant.take() {
            m.signal("TERM").unwrap();
            assert!(
                mailwarrant::testkit::wait_until(Duration::from_secs(10), || !m.is_running()),
                "mailwarrant did not stop"
            );
        }
        self.start_mailwarrant();
    }

    /// Sends a signal (`HUP`, `TERM`) to the running mailwarrant.
    pub fn signal_mailwarrant(&self, signal: &str) {
        self.mailwarrant.as_ref().expect("mailwarrant runs").signal(signal).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mailwarrant.log")).unwrap_or_default()
    }

    /// Sends one message as `login` (authenticated) or unauthenticated.
    pub fn send(&self, login: Option<&str>, from: &str, to: &[&str], extra: &[&str]) -> Sent {
        let to = to.join(",");
        let mut args = vec!["--from", from, "--to", &to];
        let password;
        if let Some(login) = login {
            password = CAST.iter().find(|(l, _)| *l == login).map(|(_, p)| *p).unwrap_or("wrong");
            args.extend(["--auth", "PLAIN", "--auth-user", login, "--auth-password", password]);
        }
        args.extend(extra);
        let out = self.postfix.swaks(&args);
        let transcript = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        Sent { queued: transcript.contains("250 2.0.0 Ok: queued as"), transcript }
    }

    /// Runs the CLI against the rig's config.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        cli_at(&self.config, args)
    }
}

/// Runs the built CLI with `--config config`: whether it succeeded, and
/// what it printed (stdout, then stderr).
pub fn cli_at(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailwarrant")).args(args).arg("--config").arg(config).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn config_text(directory: &str, port: u16, auth_listen: &str, default_extra: &str) -> String {
    format!(
        r#"{directory}
# Off when Postfix authenticates through Cyrus, so parallel rigs never
# fight over the default port.
[auth.dovecot]
listen = [{auth_listen}]
[store]
kind = "sqlite"
path = "state.sqlite"
[policy]
listen = "127.0.0.1:{port}"
organisation_domains = ["example.com"]
unauthenticated = "by_sender"
prepend_header = true
# A zone without DST and a half-hour offset: refusals must say IST.
time_zone = "Asia/Kolkata"
[policy.groups]
sales = "sales"
interns = "interns"
[policy.profiles.default]
allowed_sender_domains = ["example.com"]
require_sender_match = true
max_recipients = 100
may_send_external = true
may_send_to_lists = false
{default_extra}
[policy.profiles.sales]
priority = 10
may_send_to_lists = true
[policy.profiles.interns]
priority = 20
may_send_external = false
may_send_to_lists = false
may_send_attachments = false
"#
    )
}

fn postfix_settings(port: u16, milter_port: Option<u16>) -> Vec<(&'static str, String)> {
    let policy = format!("check_policy_service inet:127.0.0.1:{port}");
    let mut settings = milter_port
        .map(|p| {
            vec![
                ("smtpd_milters", format!("inet:127.0.0.1:{p}")),
                ("milter_protocol", "6".to_owned()),
                ("milter_default_action", "tempfail".to_owned()),
            ]
        })
        .unwrap_or_default();
    settings.extend([
        ("mynetworks", "127.0.0.0/8".into()),
        ("smtpd_recipient_restrictions", format!("{policy}, permit")),
        ("smtpd_data_restrictions", format!("{policy}, permit")),
        ("smtpd_end_of_data_restrictions", format!("{policy}, permit")),
        ("smtpd_sasl_auth_enable", "yes".into()),
        ("smtpd_sasl_type", "cyrus".into()),
        ("smtpd_sasl_path", "smtpd".into()),
        ("smtpd_sasl_security_options", "noanonymous".into()),
        ("smtpd_tls_auth_only", "no".into()),
        ("smtpd_policy_service_retry_delay", "100ms".into()),
    ]);
    settings
}

/// `smtpd.conf` in `conf_dir` and a sasldb in `root` holding the cast,
/// readable by `postfix`.
fn sasl_dir(root: &Path, conf_dir: &Path) {
    std::fs::create_dir_all(conf_dir).unwrap();
    set_mode(conf_dir, 0o755);
    let db = root.join("sasldb2");
    std::fs::write(
        conf_dir.join("smtpd.conf"),
        format!(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {}\nmech_list: PLAIN LOGIN\n",
            db.display()
        ),
    )
    .unwrap();
    for (login, password) in CAST {
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-f"])
            .arg(&db)
            .args(["-u", REALM, login])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "saslpasswd2 failed for {login}");
    }
    set_mode(&db, 0o644);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
