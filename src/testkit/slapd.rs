//! A throwaway OpenLDAP server for tests and benchmarks, built by
//! `scripts/slapd/start.sh` from `schemas/ldap/` (the demo cast of docs/design.md,
//! plus generated users on request) on a free loopback port.
//!
//! slapd runs with `-d stats` (except for benchmarks), so every operation
//! is logged to `slapd.log` in the instance folder: tests read it to prove that
//! something did *not* reach the directory. Killed on drop; the folder is
//! removed then too.

use std::fs::{self, File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{free_port, require_packages, ChildGuard};
use crate::config::{Config, DirectorySettings, LdapSettings};

/// The suffix of the seed.
pub const BASE_DN: &str = "dc=example,dc=com";
/// The rootdn (bypasses ACLs): for tests that modify data.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "Admin-Demo-2026!";
/// mailwarrant's read-only search account.
pub const SERVICE_DN: &str = "cn=mailwarrant,ou=services,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "Mailwarrant-Demo-2026!";
/// Password of the generated users `user00001`….
pub const GENERATED_PASSWORD: &str = "User-Demo-2026!";

/// How long building and starting may take (10,000 users take a few
/// seconds; a loaded machine more).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// A running slapd with the seed loaded.
pub struct Slapd {
    dir: PathBuf,
    port: u16,
    extra_users: usize,
    load_groups: bool,
    stats_log: bool,
    child: Option<ChildGuard>,
}

impl Slapd {
    /// The cast only.
    pub fn start() -> Result<Self, String> {
        Self::start_with_users(0)
    }

    /// The cast plus `n` generated users (`user00001`…, password
    /// [`GENERATED_PASSWORD`], in groups `load-NN` nested in `loadtest`).
    pub fn start_with_users(n: usize) -> Result<Self, String> {
        Self::start_inner(n, true, true)
    }

    /// Like [`Slapd::start_with_users`] but without the per-operation log,
    /// which would otherwise be what a benchmark measures.
    pub fn start_quiet_with_users(n: usize) -> Result<Self, String> {
        Self::start_inner(n, true, false)
    }

    /// `n` generated users without their load groups and without the
    /// per-operation log: large populations for scans (one offline load).
    pub fn start_quiet_with_users_only(n: usize) -> Result<Self, String> {
        Self::start_inner(n, false, false)
    }

    fn start_inner(n: usize, load_groups: bool, stats_log: bool) -> Result<Self, String> {
        require_packages(&["slapd", "ldap-utils"])?;
        let dir = fresh_dir()?;
        let mut slapd = Self { dir, port: free_port(), extra_users: n, load_groups, stats_log, child: None };
        slapd.run()?;
        Ok(slapd)
    }

    /// `ldap://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    pub fn admin(&self) -> (&'static str, &'static str) {
        (ADMIN_DN, ADMIN_PASSWORD)
    }

    pub fn service_account(&self) -> (&'static str, &'static str) {
        (SERVICE_DN, SERVICE_PASSWORD)
    }

    /// The instance folder (data, config, `slapd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What slapd logged so far (`-d stats`: one line per operation).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }

    /// The `[directory]` section mailwarrant would use for this server.
    pub fn config_toml(&self) -> String {
        format!(
            "[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nurls = [\"{url}\"]\nbind_dn = \"{SERVICE_DN}\"\n\
             bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"ou=people,{BASE_DN}\"\n\
             group_base_dn = \"ou=groups,{BASE_DN}\"\nsend_as_attribute = \"mailwarrantSendAs\"\n\
             default_password_policy_dn = \"cn=default,ou=policies,{BASE_DN}\"\n\
             connect_timeout = \"2s\"\noperation_timeout = \"3s\"\n",
            url = self.url()
        )
    }

    /// Validated settings for this server, through the real config loader.
    pub fn ldap_settings(&self) -> LdapSettings {
        let config = Config::from_toml(&self.config_toml(), &self.dir, Path::new("slapd-fixture.toml"))
            .expect("the fixture's config is valid");
        match config.directory {
            DirectorySettings::Ldap(s) => *s,
            DirectorySettings::Ldif(_) => unreachable!("the fixture config says kind = \"ldap\""),
        }
    }

    /// Stops slapd (as an outage would); the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts slapd again on the same port with the same data.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.stop();
        self.run()
    }

    fn run(&mut self) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slapd/start.sh");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("slapd.log"))
            .map_err(|e| format!("cannot open slapd.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .args(["--debug", if self.stats_log { "stats" } else { "0" }])
            .args(["--extra-users", &self.extra_users.to_string()])
            .args(if self.load_groups { &[][..] } else { &["--no-load-groups"][..] })
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = ChildGuard::spawn("slapd", &mut command)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        // Generating and loading users takes about a second per thousand.
        let deadline = START_DEADLINE + Duration::from_millis(self.extra_users as u64 * 5);
        let ready = super::wait_until(deadline, || {
            !child.is_running() || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !child.is_running() || !ready {
            let tail: String =
                self.log().lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(format!("slapd did not start on {addr} (folder {}):\n{tail}", self.dir.display()));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A new folder under the temp dir, mode 755 (see docs/testing.md, "Real parts").
fn fresh_dir() -> Result<PathBuf, String> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("mw-slapd-{}-{}-{nanos}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let _ = File::create(dir.join("slapd.log"));
    Ok(dir)
}
