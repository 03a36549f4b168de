//! A private Exim 4 daemon on loopback, the second real client of the
//! Dovecot auth front end in tests.
//!
//! Debian's exim4 packages conflict with postfix, so
//! `scripts/setup/exim.sh` unpacks `exim4-daemon-heavy` (the build with
//! the dovecot authenticator) into a folder; this runs
//! `exim4 -C FILE -bdf` with a private config: spool and log in a temp
//! folder, one loopback port, PLAIN and LOGIN through `driver = dovecot`,
//! and accepted mail thrown away.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_program, wait_for_port, ChildGuard};

/// Where `scripts/setup/exim.sh` unpacks Exim.
pub fn exim_binary() -> PathBuf {
    let dir = std::env::var("MAILWARRANT_EXIM_DIR").unwrap_or_else(|_| "/opt/mailwarrant-test/exim4".into());
    Path::new(&dir).join("usr/sbin/exim4")
}

pub struct Exim {
    dir: tempfile::TempDir,
    pub port: u16,
    _daemon: ChildGuard,
}

impl Exim {
    /// Starts Exim with dovecot authenticators on `auth_socket`.
    pub fn start(auth_socket: &Path) -> Result<Exim, String> {
        let s = auth_socket.display();
        let authenticators = format!(
            "dovecot_plain:
  driver = dovecot
  public_name = PLAIN
  server_socket = {s}
  server_set_id = $auth1
dovecot_login:
  driver = dovecot
  public_name = LOGIN
  server_socket = {s}
  server_set_id = $auth1
"
        );
        let acl = "acl_check_rcpt:\n  accept authenticated = *\n  deny message = authentication required\n";
        Self::start_with_sections("acl_smtp_rcpt = acl_check_rcpt\n", acl, &authenticators)
    }

    /// Starts Exim with the given lines in the main section, the `acl`
    /// section and the `authenticators` section, as an administrator
    /// pastes them (the recipes' test loads the documented snippets this
    /// way); spool, log, port and a router that discards are the kit's.
    pub fn start_with_sections(main: &str, acl: &str, authenticators: &str) -> Result<Exim, String> {
        let binary = exim_binary();
        require_program(binary.to_str().unwrap_or_default(), "exim4-daemon-heavy (scripts/setup/exim.sh)")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-exim").tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        for sub in ["spool", "log"] {
            std::fs::create_dir(root.join(sub)).map_err(|e| e.to_string())?;
        }
        let port = free_port();
        let config = root.join("exim.conf");
        std::fs::write(&config, exim_conf(root, port, main, acl, authenticators)).map_err(|e| e.to_string())?;
        let daemon = ChildGuard::spawn(
            "exim4",
            Command::new(&binary).arg("-C").arg(&config).arg("-bdf").stdout(Stdio::null()).stderr(Stdio::null()),
        )?;
        let exim = Exim { dir, port, _daemon: daemon };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(15))
            .map_err(|e| format!("{e}; exim log:\n{}", exim.log()))?;
        Ok(exim)
    }

    /// Exim's main and panic logs so far.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default();
        format!("{}{}", read("mainlog"), read("paniclog"))
    }
}

fn exim_conf(root: &Path, port: u16, main: &str, acl: &str, authenticators: &str) -> String {
    let d = root.display();
    format!(
        "primary_hostname = mx.example.com
exim_user = root
exim_group = root
never_users =
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
keep_environment =
tls_advertise_hosts =
auth_advertise_hosts = *
host_lookup =
rfc1413_hosts =
{main}
begin acl
{acl}
begin routers
discard:
  driver = redirect
  data = :blackhole:

begin authenticators
{authenticators}"
    )
}
