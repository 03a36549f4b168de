//! A private Postfix instance on loopback, the real client of the AUTH,
//! policy and milter front ends in tests.
//!
//! `postfix -c DIR start-fg` with its own config, queue and data folders
//! (mode 755: Postfix's daemons drop to the `postfix` user), one smtpd on
//! a free port, and `smtp-sink` as the relay host that accepts whatever
//! Postfix delivers. Traps (docs/testing.md, "Real parts"): set both `maillog_file`
//! and `maillog_file_prefixes` (no syslog here), and stop with
//! `postfix stop` so smtpd children do not keep the port.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, require_packages, wait_for_port, wait_until, ChildGuard};

/// The services a relay-only instance needs, besides the smtpd line.
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       -       0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A running private Postfix and its sink.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// The smtpd port clients submit to.
    pub port: u16,
    /// Where Postfix relays accepted mail (smtp-sink).
    pub sink_port: u16,
    master: ChildGuard,
    _sink: ChildGuard,
}

impl Postfix {
    /// Starts an instance whose `main.cf` gets `extra` settings after the
    /// defaults (later lines win in Postfix), e.g.
    /// `("smtpd_sasl_type", "dovecot")`.
    pub fn start(extra: &[(&str, &str)]) -> Result<Postfix, String> {
        Self::start_with(extra, "", "")
    }

    /// Like [`start`](Self::start), with `main_text` appended to `main.cf`
    /// and `master_text` (more services) to `master.cf`, as an
    /// administrator pastes them: the recipes' test loads the documented
    /// snippets this way.
    pub fn start_with(extra: &[(&str, &str)], main_text: &str, master_text: &str) -> Result<Postfix, String> {
        require_packages(&["postfix", "swaks"])?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-postfix").tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        let io = |e: std::io::Error| format!("preparing {}: {e}", root.display());
        set_mode(root, 0o755).map_err(io)?;
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir(root.join(sub)).map_err(io)?;
        }
        run(Command::new("chown").arg("postfix").arg(root.join("data")))?;
        let (port, sink_port) = (free_port(), free_port());
        let main = format!("{}{main_text}", main_cf(root, sink_port, extra));
        std::fs::write(root.join("etc/main.cf"), main).map_err(io)?;
        let master = format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF}{master_text}");
        std::fs::write(root.join("etc/master.cf"), master).map_err(io)?;
        let conf = root.join("etc");
        run(Command::new("postfix").arg("-c").arg(&conf).arg("set-permissions"))?;
        run(Command::new("postfix").arg("-c").arg(&conf).arg("check"))?;

        let sink = ChildGuard::spawn(
            "smtp-sink",
            Command::new("smtp-sink")
                .args(["-u", "postfix", "-c"])
                .arg(format!("127.0.0.1:{sink_port}"))
                .arg("256")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let master = ChildGuard::spawn(
            "postfix",
            Command::new("postfix").arg("-c").arg(&conf).arg("start-fg").stdout(Stdio::null()).stderr(Stdio::null()),
        )?;
        let postfix = Postfix { dir, port, sink_port, master, _sink: sink };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(15))
            .map_err(|e| format!("{e}; maillog:\n{}", postfix.maillog()))?;
        Ok(postfix)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// The instance's mail log so far.
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Polls the mail log for a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> bool {
        wait_until(deadline, || self.maillog().contains(needle))
    }

    /// Runs swaks against the instance with the given extra arguments
    /// (`--from`, `--to`, `--auth`, ...).
    pub fn swaks(&self, args: &[&str]) -> Output {
        self.swaks_at(self.port, args)
    }

    /// The same against another smtpd service of the instance.
    pub fn swaks_at(&self, port: u16, args: &[&str]) -> Output {
        Command::new("swaks")
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--timeout", "30", "--helo", "client.example.com"])
            .args(args)
            .output()
            .expect("swaks runs (scripts/test.sh installs it)")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.config_dir())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let stopped = wait_until(Duration::from_secs(5), || !self.master.is_running());
        if !stopped {
            self.master.kill();
        }
    }
}

fn main_cf(root: &Path, sink_port: u16, extra: &[(&str, &str)]) -> String {
    let d = root.display();
    let mut cf = format!(
        "compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.com
mydomain = example.com
myorigin = example.com
mydestination =
relayhost = [127.0.0.1]:{sink_port}
smtp_dns_support_level = disabled
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
"
    );
    for (key, value) in extra {
        let _ = writeln!(cf, "{key} = {value}");
    }
    cf
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
