//! Support for tests and benchmarks that run the real parts (slapd,
//! Postfix, Redis) on loopback: free ports, process guards, readiness
//! polling.
//!
//! Lives in the library (not `tests/`) so integration tests, benchmarks
//! and `scripts/` helpers share one way of starting a part. Nothing here is
//! used by `serve`, so it is compiled only with the `testkit` feature,
//! which tests and benches turn on through the crate's dev-dependency on
//! itself: `cargo build` (the package, the fuzz targets) leaves it out.

pub mod dovecot_client;
pub mod exim;
mod packages;
pub mod postfix;
pub mod redis;
pub mod samba;
pub mod samba_autogen;
pub mod slapd;
pub mod smtp_server;

pub use packages::{require_package, require_packages};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; races are
/// possible but rare, and a part that fails to bind fails loudly).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("loopback is available")
}

/// Polls until something accepts TCP connections at `addr`.
pub fn wait_for_port(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("nothing listens on {addr} after {deadline:?}"))
}

/// Polls `ready` until it returns true or the deadline passes.
pub fn wait_until(deadline: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, command: &mut Command) -> Result<Self, String> {
        let child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self { name, child: Some(child) })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process now; the guard then does nothing more.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.id().ok_or_else(|| format!("{} is not running", self.name))?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        match status {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("kill -{signal} {pid} failed: {other:?}")),
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `binary serve --config config` with warnings only, its log to
/// `log` (or nowhere), for benchmarks that measure the release binary as
/// a process of its own (its RSS and CPU are then its own).
pub fn spawn_serve(binary: &Path, config: &Path, log: Option<std::fs::File>) -> Result<ChildGuard, String> {
    let stderr = log.map_or_else(std::process::Stdio::null, std::process::Stdio::from);
    ChildGuard::spawn(
        "mailwarrant",
        Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(stderr),
    )
}

/// Fails with the set-up command when a program outside the test list is
/// missing (Exim, unpacked by its own script; the benchmarks' extra
/// tools), so a test never silently skips. Parts on the list use
/// [`require_package`].
pub fn require_program(path: &str, package: &str) -> Result<(), String> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(format!("{path} is missing: run scripts/test.sh (it installs Debian's `{package}`)"))
    }
}
